"""Render a suite's prompt for one row: system message, few-shot turns, then the question."""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Any

from evalflow.config import Generation, ModelSpec, Prompt, Suite
from evalflow.dataset import Row
from evalflow.errors import ConfigError


def placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def check_prompt(prompt: Prompt, input_fields: list[str]) -> None:
    """Every placeholder of the user template must be an input field of the dataset (or
    `choices`, for multiple choice: DatasetSpec.prompt_fields)."""
    unknown = placeholders(prompt.user) - set(input_fields)
    if unknown:
        raise ConfigError(
            f"prompt.user uses {', '.join(sorted(unknown))}, which are not input fields "
            f"(input fields: {', '.join(input_fields)})"
        )


def render_messages(prompt: Prompt, inputs: dict[str, Any]) -> list[dict[str, str]]:
    messages: list[dict[str, str]] = []
    if prompt.system:
        messages.append({"role": "system", "content": prompt.system})
    for question, answer in prompt.examples:
        messages.append({"role": "user", "content": question})
        messages.append({"role": "assistant", "content": answer})
    messages.append({"role": "user", "content": prompt.user.format_map(inputs)})
    return messages


def render_row(prompt: Prompt, row: Row) -> list[dict[str, str]]:
    """The messages sent for a row; a multiple-choice row's choices fill `{choices}`, or follow
    the question when the template has no such placeholder."""
    messages = render_messages(prompt, row.inputs)
    if row.choices and "choices" not in placeholders(prompt.user):
        last = messages[-1]
        messages[-1] = {**last, "content": f"{last['content']}\n{row.inputs['choices']}"}
    return messages


@dataclass(frozen=True)
class ChunkRequests:
    """What a chunk sends to one model: each row once per epoch of the suite, in that order."""

    asked: list[Row]
    epochs: list[int]
    messages: list[list[dict[str, str]]]
    generation: Generation


def chunk_requests(rows: list[Row], suite: Suite, spec: ModelSpec) -> ChunkRequests:
    """The requests of a chunk of rows for the model `spec` (the flow's infer-chunk task and
    the answers asked before the flow starts build them alike)."""
    asked = [row for _ in range(suite.epochs) for row in rows]
    return ChunkRequests(
        asked=asked,
        epochs=[epoch for epoch in range(suite.epochs) for _ in rows],
        messages=[render_row(suite.prompt, row) for row in asked],
        generation=suite.generation.merged(spec.generation),
    )

"""Weave ref URIs: `weave:///entity/project/{object|op|table|call}/name:digest[/edge/value]*`."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

PREFIX = "weave:///"


@dataclass(frozen=True)
class ParsedRef:
    project_id: str
    kind: str
    name: str
    digest: str
    extra: tuple[tuple[str, str], ...]


def parse_ref(uri: str) -> ParsedRef:
    if not uri.startswith(PREFIX):
        raise ValueError(f"not a weave ref: {uri!r}")
    parts = uri[len(PREFIX) :].split("/")
    if len(parts) < 4:
        raise ValueError(f"incomplete weave ref: {uri!r}")
    entity, project, kind, head, *rest = parts
    if kind == "table":
        name, digest = "", head
    else:
        name, _, digest = head.rpartition(":")
        name = unquote(name)
    if len(rest) % 2:
        raise ValueError(f"weave ref with an unpaired path edge: {uri!r}")
    extra = tuple((rest[i], unquote(rest[i + 1])) for i in range(0, len(rest), 2))
    return ParsedRef(f"{entity}/{project}", kind, name, digest, extra)


def refs_in(value: Any) -> Iterator[str]:
    """Every weave ref string anywhere inside a JSON value."""
    if isinstance(value, str):
        if value.startswith(PREFIX):
            yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from refs_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from refs_in(item)


def op_base_name(op_name: str) -> str:
    """`weave:///e/p/op/Evaluation.evaluate:abc` -> `Evaluation.evaluate`."""
    if op_name.startswith(PREFIX):
        try:
            return parse_ref(op_name).name
        except ValueError:
            return op_name
    return op_name

"""A cost the openai SDK pays at every chat request, removed where it changes nothing.

Before sending, `AsyncCompletions.create` passes its body through the SDK's type-driven
transform, which walks every message against the union of the six message TypedDicts
(renaming aliased keys, formatting dates and files, dropping omitted arguments). For
evalflow's requests, plain strings and numbers and messages of string fields, it only drops
the omitted arguments, yet cost 12% of a traced request's CPU (bench/RESULTS.md, Scale).
Such bodies get that same result directly; any other body (tools, content parts, a response
format...) still goes through the SDK's transform. tests/test_inference.py checks the two
agree on the bodies evalflow sends.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

import openai
import openai.resources.chat.completions.completions as chat_completions
from openai.types.chat import completion_create_params

_CHAT_BODIES = (
    completion_create_params.CompletionCreateParamsNonStreaming,
    completion_create_params.CompletionCreateParamsStreaming,
)
_SCALARS = (str, int, float, bool, type(None))


def _is_plain(key: str, value: Any) -> bool:
    if type(value) in _SCALARS:
        return True
    if type(value) is not list:
        return False
    if key == "messages":
        return all(
            type(message) is dict
            and all(type(k) is str and type(v) is str for k, v in message.items())
            for message in value
        )
    return all(type(item) is str for item in value)


def plain_chat_body(data: Any) -> dict[str, Any] | None:
    """The body the SDK's transform would produce, if `data` is plain; else None."""
    if type(data) is not dict:
        return None
    body = {k: v for k, v in data.items() if not isinstance(v, openai.NotGiven | openai.Omit)}
    return body if all(_is_plain(k, v) for k, v in body.items()) else None


@functools.cache
def skip_plain_chat_transform() -> None:
    """Route chat request bodies through `plain_chat_body` first (once a process)."""
    sdk_transform: Callable[..., Awaitable[Any]] = chat_completions.async_maybe_transform

    async def transform(data: Any, expected_type: Any) -> Any:
        if expected_type in _CHAT_BODIES and (body := plain_chat_body(data)) is not None:
            return body
        return await sdk_transform(data, expected_type)

    chat_completions.async_maybe_transform = transform

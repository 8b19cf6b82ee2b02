"""A cost the openai SDK pays at every chat request, removed where it changes nothing.

Before sending, `AsyncCompletions.create` passes its body through the SDK's type-driven
transform (`async_maybe_transform`), which walks every message against the union of the six
message TypedDicts (renaming aliased keys, formatting dates and files, dropping omitted
arguments). For evalflow's requests, plain strings and numbers and messages of string fields,
it only drops the omitted arguments, yet cost 12% of a traced request's CPU (bench/RESULTS.md,
Scale). Such bodies get that same result directly; any other body (tools, content parts, a
response format...) still goes through the SDK's transform.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from evalflow.patches._gate import stand_aside, version_problem

DISTRIBUTION = "openai"
VERIFIED = ">=3.57,<3.58"
PATCH = "openai: plain chat bodies skip the SDK's transform"
_MODULE = "openai.resources.chat.completions.completions"
ORIGINAL = "__evalflow_original__"  # on the patched function: the one it wraps
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
    import openai

    if type(data) is not dict:
        return None
    body = {k: v for k, v in data.items() if not isinstance(v, openai.NotGiven | openai.Omit)}
    return body if all(_is_plain(k, v) for k, v in body.items()) else None


def drift() -> list[str]:
    """What differs upstream from the internals this patch relies on (empty: nothing)."""
    import importlib

    import openai
    from openai._utils import async_maybe_transform
    from openai.types.chat import completion_create_params

    chat = importlib.import_module(_MODULE)
    problems: list[str] = []
    hook = getattr(chat, "async_maybe_transform", None)
    if hook is None or getattr(hook, ORIGINAL, hook) is not async_maybe_transform:
        problems.append(f"{_MODULE}.async_maybe_transform is not openai._utils' any more")
    parameters = list(inspect.signature(async_maybe_transform).parameters)
    if parameters != ["data", "expected_type"]:
        problems.append(f"async_maybe_transform takes {parameters}, not [data, expected_type]")
    if not inspect.iscoroutinefunction(async_maybe_transform):
        problems.append("async_maybe_transform is no longer a coroutine function")
    for name in ("CompletionCreateParamsNonStreaming", "CompletionCreateParamsStreaming"):
        if not hasattr(completion_create_params, name):
            problems.append(f"openai.types.chat.completion_create_params.{name} is gone")
    if not (hasattr(openai, "NotGiven") and hasattr(openai, "Omit")):
        problems.append("openai.NotGiven or openai.Omit is gone")
    create = getattr(getattr(chat, "AsyncCompletions", None), "create", None)
    source = inspect.getsource(create) if create is not None else ""
    if "await async_maybe_transform(" not in source or "CompletionCreateParams" not in source:
        problems.append("AsyncCompletions.create no longer sends its body through the transform")
    return problems


def _chat_bodies() -> tuple[Any, ...]:
    from openai.types.chat import completion_create_params as params

    return (params.CompletionCreateParamsNonStreaming, params.CompletionCreateParamsStreaming)


@functools.cache
def skip_plain_chat_transform() -> bool:
    """Route chat request bodies through `plain_chat_body` first; once a process, and only on
    the verified openai versions (else the SDK's transform stays, with a warning). Returns
    whether the patch is installed."""
    problem = version_problem(DISTRIBUTION, VERIFIED)
    problems = [problem] if problem else drift()
    if problems:
        stand_aside(PATCH, problems)
        return False
    import importlib

    chat: Any = importlib.import_module(_MODULE)
    sdk_transform: Callable[..., Awaitable[Any]] = chat.async_maybe_transform
    if hasattr(sdk_transform, ORIGINAL):
        return True  # installed already
    bodies = _chat_bodies()

    async def transform(data: Any, expected_type: Any) -> Any:
        if expected_type in bodies and (body := plain_chat_body(data)) is not None:
            return body
        return await sdk_transform(data, expected_type)

    setattr(transform, ORIGINAL, sdk_transform)
    chat.async_maybe_transform = transform
    return True

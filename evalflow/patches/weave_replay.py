"""Requests sent before weave was imported, recorded afterwards as weave's openai integration
records a request it traces (weave >=0.54,<0.55).

`evalflow run` sends its first rows while weave is imported (evalflow/early_traces.py). Those
requests go through openai's own `AsyncCompletions.create`, which weave has not wrapped yet.
Each is then recorded through the op weave's openai integration wraps that method in: the
op's own input handler gives the call's inputs, `WeaveClient.create_call(started_at=...)`
starts the call at the time the request was sent, the op's output post-processor gives the
output, and `WeaveClient.finish_call(op=..., ended_at=...)` ends it when its answer came. The
call then has the op, inputs, output, attributes and summary (token usage) of a traced one.

Internals read, checked by `drift()`: the integration's wrapper of `AsyncCompletions.create`
keeps its op in its closure; the op's `_on_input_handler`, `_on_finish_post_processor`,
`kind` and `color`, as weave's own `_create_call` and `_call_async_func` use them.
"""

from __future__ import annotations

import datetime
import functools
import inspect
import sys
from collections.abc import Callable
from typing import Any

from evalflow.patches._gate import stand_aside, version_problem

DISTRIBUTION = "weave"
VERIFIED = ">=0.54,<0.55"
PATCH = "weave: requests sent before its import are recorded afterwards"
OP_NAME = "openai.chat.completions.create"
# What the replay uses of weave's op and client, as weave's _create_call and finish use them.
OP_MEMBERS = ("_on_input_handler", "_on_finish_post_processor", "kind", "color", "attributes")
INPUT_LINES = ("func._on_input_handler(func, args, kwargs)", "call_attributes.get()")
FINISH_LINES = ('getattr(op, "_on_finish_post_processor", None)', "client.finish_call(")


def unwrapped_create() -> Callable[..., Any] | None:
    """openai's own `AsyncCompletions.create` while weave is not imported (so nothing wraps
    it), on the verified weave; None otherwise (requests then wait for weave, as before)."""
    if "weave" in sys.modules:
        return None
    if problem := version_problem(DISTRIBUTION, VERIFIED):
        stand_aside(PATCH, [problem])
        return None
    from openai.resources.chat.completions import AsyncCompletions

    create: Callable[..., Any] = AsyncCompletions.create
    return create


def integration_op() -> Any | None:
    """The op of weave's openai integration around `AsyncCompletions.create` (once weave has
    patched openai), or None."""
    from openai.resources.chat.completions import AsyncCompletions
    from weave.trace.op import is_op

    wrapper = AsyncCompletions.create
    cells = getattr(wrapper, "__closure__", None) or ()
    for candidate in (wrapper, *(cell.cell_contents for cell in cells)):
        if is_op(candidate) and getattr(candidate, "name", None) == OP_NAME:
            return candidate
    return None


def drift() -> list[str]:
    """What differs upstream from what the replay relies on (empty: nothing). Call it once
    weave has patched openai (a weave client is initialised)."""
    import weave.trace.op as op_module
    from weave.trace.weave_client import WeaveClient

    problems: list[str] = []
    op = integration_op()
    if op is None:
        problems.append(f"AsyncCompletions.create no longer keeps weave's {OP_NAME} op")
    else:
        problems += [f"the {OP_NAME} op has no {m}" for m in OP_MEMBERS if not hasattr(op, m)]
    if "started_at" not in inspect.signature(WeaveClient.create_call).parameters:
        problems.append("WeaveClient.create_call no longer takes started_at")
    if "ended_at" not in inspect.signature(WeaveClient.finish_call).parameters:
        problems.append("WeaveClient.finish_call no longer takes ended_at")
    made = inspect.getsource(op_module._create_call)
    problems += [f"weave's _create_call no longer uses {s}" for s in INPUT_LINES if s not in made]
    runs = inspect.getsource(op_module._call_async_func)
    problems += [f"weave's async op call no longer uses {s}" for s in FINISH_LINES if s not in runs]
    return problems


@functools.cache
def _problems() -> tuple[str, ...]:
    problem = version_problem(DISTRIBUTION, VERIFIED)
    return (problem,) if problem else tuple(drift())


def record_call(
    client: Any,
    completions: Any,
    kwargs: dict[str, Any],
    attributes: dict[str, Any],
    started_at: datetime.datetime,
    ended_at: datetime.datetime,
    output: Any = None,
    exception: BaseException | None = None,
) -> bool:
    """Record in `client` one request sent through the unwrapped method (`completions`, the
    client's `chat.completions`, called with `kwargs` under `attributes`) with its answer or
    error and times. False, and nothing recorded, if weave drifted from what was verified."""
    if problems := _problems():
        stand_aside(PATCH, list(problems))
        return False
    op: Any = integration_op()
    processed = op._on_input_handler(op, (completions,), dict(kwargs))
    inputs = processed.inputs
    if "api_key" in inputs:
        inputs["api_key"] = "REDACTED"
    weave_attributes: dict[str, Any] = {"python": {"type": "async_function"}}
    if op.kind:
        weave_attributes["kind"] = op.kind
    if op.color:
        weave_attributes["color"] = op.color
    call = client.create_call(
        op,
        inputs,
        None,
        attributes={**(op.attributes or {}), **attributes, "weave": weave_attributes},
        display_name=op.call_display_name,
        use_stack=False,
        started_at=started_at,
    )
    if processor := getattr(op, "_on_finish_post_processor", None):
        output = processor(output)
    client.finish_call(call, output, exception, op=op, ended_at=ended_at)
    return True

"""Requests sent before weave is ready, traced once it is.

Importing and starting weave takes 1-2 s of a run's start on two cores. On a local Weave
store, `evalflow run` checks the store (evalflow/weave_setup.py, `check_local_store`), then
`hold` starts this: its first rows are sent at once, weave is imported and started while they
are answered, and `trace_held` hands over the client. Until then a request goes through
openai's own `AsyncCompletions.create` (weave has not wrapped it yet): its inputs, answer (or
error) and times are held, and recorded in Weave by `trace_held` (evalflow/patches/
weave_replay.py), with the op, inputs, output, attributes and usage of any traced request and
the times it was sent and answered. A request answered after the hand-over is recorded at
once; a request sent after it goes through weave's wrapper as usual. A held request whose trace
cannot be recorded keeps its answer; a warning says so once.

Not held (weave first, as before): a W&B project (its key is checked by weave.init before
anything is sent), a weave already imported in this process (a suite with a Python scorer
imports it while it is planned), a weave outside the verified versions. If weave cannot
start, the run stops with that error, its answers in the journal for the next run; what was
held is not recorded.
"""

from __future__ import annotations

import datetime
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class _Sent:
    completions: Any
    kwargs: dict[str, Any]
    attributes: dict[str, Any]
    started_at: datetime.datetime
    ended_at: datetime.datetime
    output: Any
    exception: BaseException | None


class _Holding:
    """The process's held requests, until weave's client is handed over."""

    def __init__(self, create: Callable[..., Any]) -> None:
        self.create = create
        self.client: Any | None = None
        self.sent: list[_Sent] = []
        self.lock = threading.Lock()

    def done(self, sent: _Sent) -> None:
        with self.lock:
            if self.client is None:
                self.sent.append(sent)
                return
            client = self.client
        _record(client, sent)


_holding: _Holding | None = None
_said_failed = False  # a failure to record a held request was warned of


def _record(client: Any, sent: _Sent) -> None:
    """Record one held request; a failure to record it is a warning (as weave's own tracing
    of a live request never fails the request), said once, by its error's class alone."""
    from evalflow.patches.weave_replay import record_call

    try:
        record_call(
            client,
            sent.completions,
            sent.kwargs,
            sent.attributes,
            sent.started_at,
            sent.ended_at,
            sent.output,
            sent.exception,
        )
    except Exception as exc:
        global _said_failed
        if not _said_failed:
            _said_failed = True
            warnings.warn(
                f"evalflow could not trace a request sent before weave was ready "
                f"({type(exc).__name__}); its answer is kept",
                RuntimeWarning,
                stacklevel=2,
            )


def hold() -> bool:
    """Send requests before weave is ready, to be traced by `trace_held`; False (nothing
    held) when weave is imported already or outside the verified versions."""
    global _holding
    from evalflow.patches.weave_replay import unwrapped_create

    create = unwrapped_create()
    if create is None:
        return False
    _holding = _Holding(create)
    return True


def holding() -> bool:
    """Whether a request sent now is held (weave's client not handed over yet)."""
    held = _holding
    return held is not None and held.client is None


async def create(completions: Any, attributes: dict[str, Any], **kwargs: Any) -> Any:
    """`completions.create(**kwargs)` through openai's own method, held to be traced with
    `attributes` (as `weave.attributes` gives a traced request's)."""
    held = _holding
    assert held is not None, "hold() first"
    started = _now()
    try:
        response = await held.create(completions, **kwargs)
    except Exception as exc:
        held.done(_Sent(completions, kwargs, attributes, started, _now(), None, exc))
        raise
    held.done(_Sent(completions, kwargs, attributes, started, _now(), response, None))
    return response


def _now() -> datetime.datetime:
    return datetime.datetime.now(tz=datetime.UTC)


def trace_held(client: Any) -> int:
    """Record every held request in `client` (weave's, now started); requests answered from now
    on are recorded as they end. Returns how many were recorded now."""
    held = _holding
    if held is None:
        return 0
    with held.lock:
        held.client = client
        sent, held.sent = held.sent, []
    for one in sent:
        _record(client, one)
    return len(sent)


def drop() -> None:
    """Stop holding (weave could not start): requests still answered are not recorded."""
    global _holding
    _holding = None

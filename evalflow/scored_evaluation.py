"""A Weave evaluation of rows evalflow has already answered and scored, written in bulk.

The collect step has already scored each row with every scorer of the suite (built-in checks
and Python scorers alike, evalflow/scorers.py `score_rows`). Re-running weave.Evaluation over
those answers would trace three or more calls per row (predict_and_score, the model's predict,
a call per scorer) and summarize a table of every row: 3.2 ms of CPU per row, measured by
bench/scale.py, for figures evalflow already has. Here the same record is written directly:

- one `Evaluation.evaluate` call, a real weave op taking the same weave.Evaluation and model
  objects (so the same refs, and the leaderboard and Weave's evaluation views find it), whose
  output is the summary weave.Evaluation would give (each scorer's summarize over its values,
  and the mean model latency);
- under it, one `Evaluation.predict_and_score` call per row (weave's own op, published) with
  the dataset row's ref as `example` and `{output, scores, model_latency}` as output, the shape
  weave.Evaluation writes (`scores` holding each scorer's return value), sent to the trace
  server in bulk.

What is left out: the model's `predict` call and one call per scorer under each row, which
would only repeat what the row's output holds. tests/test_weave_evaluation.py compares what
weave's own readers return for both (EVALFLOW_WEAVE_EVALUATION=weave runs weave's own).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import weave

from evalflow.errors import WeaveStoreError

CALLS_AT_ONCE = 1000  # predict_and_score calls sent to the trace server at a time

_PENDING: ContextVar[tuple[ScoredRows | ScoredParts, Sequence[str]] | None] = ContextVar(
    "evalflow_scored_rows", default=None
)


@dataclass
class ScoredRows:
    """One model's rows in dataset order: outputs, latencies, and per scorer (by the name
    weave gives it) the row's score as weave records it (None where the row has no output,
    for a Python scorer) and the scorer's summary of them."""

    outputs: list[str | None]
    latencies: list[float]
    scores: dict[str, list[Any]]
    summaries: dict[str, Any]

    def parts(self) -> Iterator[ScoredRows]:
        yield self

    @property
    def count(self) -> int:
        return len(self.outputs)

    def summary(self) -> dict[str, Any]:
        return _summary(self.summaries, self.parts())

    def digest(self) -> str:
        """What identifies these answers and scores (a rerun with other answers differs)."""
        return _digest(self.parts, list(self.scores))


@dataclass
class ScoredParts:
    """One model's rows in dataset order, read part by part when needed (`read` gives the
    parts: ScoredRows whose summaries are empty), with each scorer's summary of every row;
    `count` rows in all. The same record as one ScoredRows of every row."""

    read: Callable[[], Iterator[ScoredRows]]
    keys: list[str]
    summaries: dict[str, Any]
    count: int

    def parts(self) -> Iterator[ScoredRows]:
        return self.read()

    def summary(self) -> dict[str, Any]:
        return _summary(self.summaries, self.parts())

    def digest(self) -> str:
        return _digest(self.read, self.keys)


Scored = ScoredRows | ScoredParts


def _summary(summaries: dict[str, Any], parts: Iterator[ScoredRows]) -> dict[str, Any]:
    """The scorers' summaries and the mean model latency of the answered rows."""
    summary = dict(summaries)
    answered = 0

    def latencies() -> Iterator[float]:
        nonlocal answered
        for part in parts:
            for output, latency in zip(part.outputs, part.latencies, strict=True):
                if output is not None:
                    answered += 1
                    yield latency

    total = sum(latencies())
    if answered:
        summary["model_latency"] = {"mean": total / answered}
    return summary


def _digest(read: Callable[[], Iterator[ScoredRows]], keys: list[str]) -> str:
    """sha256 of the JSON of [outputs, scores] (keys sorted) over every part, written part by
    part: the same text json.dumps would give for the whole lists; its first 16 digits."""
    hasher = hashlib.sha256()

    def items(values: Iterator[Any]) -> None:
        hasher.update(b"[")
        first = True
        for value in values:
            if not first:
                hasher.update(b", ")
            hasher.update(json.dumps(value, sort_keys=True, default=str).encode())
            first = False
        hasher.update(b"]")

    hasher.update(b"[")
    items(o for part in read() for o in part.outputs)
    hasher.update(b", {")
    for n, key in enumerate(sorted(keys)):
        hasher.update((", " if n else "").encode() + json.dumps(key).encode() + b": ")
        items(v for part in read() for v in part.scores[key])
    hasher.update(b"}]")
    return hasher.hexdigest()[:16]


def clean_score(value: Any) -> bool | None:
    """A score as pandas holds it (bool, None or NaN) as the JSON value weave records."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return bool(value)


def _display_name(call: Any) -> str:
    model = call.inputs.get("model")
    return f"{getattr(model, 'name', None) or 'model'} (stored answers)"


@contextmanager
def _pending(rows: Scored, digests: Sequence[str]) -> Iterator[None]:
    token = _PENDING.set((rows, digests))
    try:
        yield
    finally:
        _PENDING.reset(token)


def _saved_uri(obj: Any) -> str:
    """The ref weave gave an object when it saved it as a call input."""
    if obj.ref is None:
        raise WeaveStoreError(f"weave did not save {type(obj).__name__} {obj.name!r}")
    return str(obj.ref.uri())


def _write_rows(
    evaluation: weave.Evaluation, model: weave.Model, rows: Scored, digests: Sequence[str]
) -> None:
    """One predict_and_score call per row, under the current call, straight to the server
    (`digests`: each dataset row's digest in the dataset's table, in order)."""
    from weave.trace.context.weave_client_context import require_weave_client
    from weave.utils.ids import generate_id

    client = require_weave_client()
    parent = weave.require_current_call()
    op_uri = weave.publish(weave.Evaluation.predict_and_score).uri()
    eval_uri, model_uri = _saved_uri(evaluation), _saved_uri(model)
    row_base = f"{_saved_uri(evaluation.dataset)}/attr/rows/id/"
    if not digests or rows.count % len(digests):
        raise WeaveStoreError(f"the dataset saved {len(digests)} rows for {rows.count} scored rows")
    # With epochs, each dataset row was scored once per epoch (its scored rows together), as
    # weave.Evaluation's trials give one predict_and_score call per row and trial.
    repeats = rows.count // len(digests)
    now = dt.datetime.now(dt.UTC)
    common = {
        "project_id": client.project_id,
        "trace_id": parent.trace_id,
        "parent_id": parent.id,
        "op_name": op_uri,
        "started_at": now,
        "ended_at": now,
        "attributes": dict(parent.attributes or {}),
        "summary": {},
    }
    i = 0
    batch: list[dict[str, Any]] = []
    for part in rows.parts():
        keys = list(part.scores)
        columns = [part.scores[key] for key in keys]
        for j, output in enumerate(part.outputs):
            digest = digests[i // repeats]
            i += 1
            batch.append(
                {
                    **common,
                    "id": generate_id(),
                    "inputs": {"self": eval_uri, "model": model_uri, "example": row_base + digest},
                    "output": {
                        "output": output,
                        "scores": {
                            key: column[j] for key, column in zip(keys, columns, strict=True)
                        },
                        "model_latency": part.latencies[j],
                    },
                }
            )
            if len(batch) == CALLS_AT_ONCE:
                _send(client, batch)
                batch = []
    _send(client, batch)


def _send(client: Any, batch: list[dict[str, Any]]) -> None:
    """Calls already finished, by weave's own write of them (calls_complete, its default for
    new calls): one write per call where call_start and call_end take two."""
    if batch:
        client.server.calls_complete({"batch": batch})


@weave.op(name="Evaluation.evaluate", call_display_name=_display_name)
def _evaluate(self: weave.Evaluation, model: weave.Model) -> dict[str, Any]:
    pending = _PENDING.get()
    if pending is None:
        raise RuntimeError("evaluate_scored() runs this op, with the rows to write")
    rows, digests = pending
    _write_rows(self, model, rows, digests)
    return rows.summary()


def evaluate_scored(
    evaluation: weave.Evaluation, model: weave.Model, rows: Scored, row_digests: Sequence[str]
) -> dict[str, Any]:
    """Record `evaluation` of `model` over rows already scored; return its summary. weave
    saves both objects as the call's inputs, as for weave.Evaluation.evaluate.
    `row_digests`: each row of the evaluation's dataset, its digest in the dataset's table."""
    with _pending(rows, row_digests):
        return _evaluate(evaluation, model)

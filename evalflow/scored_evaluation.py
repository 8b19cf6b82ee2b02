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
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import weave

from evalflow.errors import WeaveStoreError

_PENDING: ContextVar[ScoredRows | None] = ContextVar("evalflow_scored_rows", default=None)


@dataclass
class ScoredRows:
    """One model's rows in dataset order: outputs, latencies, and per scorer (by the name
    weave gives it) the row's score as weave records it (None where the row has no output,
    for a Python scorer) and the scorer's summary of them."""

    outputs: list[str | None]
    latencies: list[float]
    scores: dict[str, list[Any]]
    summaries: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        summary = dict(self.summaries)
        answered = [
            latency
            for output, latency in zip(self.outputs, self.latencies, strict=True)
            if output is not None
        ]
        if answered:
            summary["model_latency"] = {"mean": sum(answered) / len(answered)}
        return summary

    def digest(self) -> str:
        """What identifies these answers and scores (a rerun with other answers differs)."""
        body = json.dumps([self.outputs, self.scores], sort_keys=True, default=str)
        return hashlib.sha256(body.encode()).hexdigest()[:16]


def clean_score(value: Any) -> bool | None:
    """A score as pandas holds it (bool, None or NaN) as the JSON value weave records."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return bool(value)


def _display_name(call: Any) -> str:
    model = call.inputs.get("model")
    return f"{getattr(model, 'name', None) or 'model'} (stored answers)"


@contextmanager
def _pending(rows: ScoredRows) -> Iterator[None]:
    token = _PENDING.set(rows)
    try:
        yield
    finally:
        _PENDING.reset(token)


def _saved_uri(obj: Any) -> str:
    """The ref weave gave an object when it saved it as a call input."""
    if obj.ref is None:
        raise WeaveStoreError(f"weave did not save {type(obj).__name__} {obj.name!r}")
    return str(obj.ref.uri())


def _write_rows(evaluation: weave.Evaluation, model: weave.Model, rows: ScoredRows) -> None:
    """One predict_and_score call per row, under the current call, straight to the server."""
    from weave.trace.context.weave_client_context import require_weave_client
    from weave.utils.ids import generate_id

    client = require_weave_client()
    parent = weave.require_current_call()
    op_uri = weave.publish(weave.Evaluation.predict_and_score).uri()
    eval_uri, model_uri = _saved_uri(evaluation), _saved_uri(model)
    row_base = f"{_saved_uri(evaluation.dataset)}/attr/rows/id/"
    table_ref = getattr(evaluation.dataset.rows, "table_ref", None)
    digests: list[str] = table_ref.row_digests if table_ref is not None else []
    if not digests or len(rows.outputs) % len(digests):
        raise WeaveStoreError(
            f"the dataset saved {len(digests)} rows for {len(rows.outputs)} scored rows"
        )
    # With epochs, each dataset row was scored once per epoch (its scored rows together), as
    # weave.Evaluation's trials give one predict_and_score call per row and trial.
    repeats = len(rows.outputs) // len(digests)
    digests = [digest for digest in digests for _ in range(repeats)]
    now = dt.datetime.now(dt.UTC)
    keys = list(rows.scores)
    columns = [rows.scores[key] for key in keys]
    attributes = dict(parent.attributes or {})
    server, project = client.server, client.project_id
    for i, digest in enumerate(digests):
        call_id = generate_id()
        server.call_start(
            {
                "start": {
                    "project_id": project,
                    "id": call_id,
                    "op_name": op_uri,
                    "trace_id": parent.trace_id,
                    "parent_id": parent.id,
                    "started_at": now,
                    "attributes": attributes,
                    "inputs": {"self": eval_uri, "model": model_uri, "example": row_base + digest},
                }
            }
        )
        server.call_end(
            {
                "end": {
                    "project_id": project,
                    "id": call_id,
                    "trace_id": parent.trace_id,
                    "started_at": now,
                    "ended_at": now,
                    "output": {
                        "output": rows.outputs[i],
                        "scores": {
                            key: column[i] for key, column in zip(keys, columns, strict=True)
                        },
                        "model_latency": rows.latencies[i],
                    },
                    "summary": {},
                }
            }
        )


@weave.op(name="Evaluation.evaluate", call_display_name=_display_name)
def _evaluate(self: weave.Evaluation, model: weave.Model) -> dict[str, Any]:
    rows = _PENDING.get()
    if rows is None:
        raise RuntimeError("evaluate_scored() runs this op, with the rows to write")
    _write_rows(self, model, rows)
    return rows.summary()


def evaluate_scored(
    evaluation: weave.Evaluation, model: weave.Model, rows: ScoredRows
) -> dict[str, Any]:
    """Record `evaluation` of `model` over rows already scored; return its summary. weave
    saves both objects as the call's inputs, as for weave.Evaluation.evaluate."""
    with _pending(rows):
        return _evaluate(evaluation, model)

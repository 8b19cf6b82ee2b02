"""The Weave side of a run: an Evaluation per model over stored answers, and the leaderboard.

`StoredAnswers` is a weave.Model whose identity is the model's spec (model id, endpoint,
generation parameters, prompt), so the same model on another night is the same ref and the
leaderboard compares across time. Its `predict` returns the answer already collected for the
row: no request reaches any endpoint. The lookup lives outside the model's attributes (they
make its digest).
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import Any

import pandas as pd
import weave
from weave.flow.leaderboard import Leaderboard, LeaderboardColumn, get_leaderboard_results

from evalflow.config import Generation, ModelSpec, Suite
from evalflow.dataset import Row
from evalflow.errors import UnknownNameError, WeaveStoreError
from evalflow.scored_evaluation import ScoredRows, clean_score, evaluate_scored
from evalflow.scorers import make_scorer

_ANSWERS: dict[str, dict[str, str | None]] = {}
METRIC = "correct"


class StoredAnswers(weave.Model):
    """A model as the leaderboard knows it; predict() returns its collected answer."""

    model_id: str
    endpoint: str
    generation: dict[str, Any]
    prompt: dict[str, Any]

    @weave.op
    def predict(self, row_id: str) -> str | None:
        return _ANSWERS[self.name or ""][row_id]


def model_identity(spec: ModelSpec, suite: Suite) -> StoredAnswers:
    generation: Generation = suite.generation.merged(spec.generation)
    return StoredAnswers(
        name=spec.name,
        model_id=spec.model,
        endpoint=spec.endpoint,
        generation=generation.model_dump(exclude_none=True),
        prompt=suite.prompt.model_dump(),
    )


def build_evaluation(suite: Suite, rows: list[Row]) -> weave.Evaluation:
    dataset_rows = [{"row_id": row.id, **row.inputs, "target": row.target} for row in rows]
    return weave.Evaluation(
        name=suite.name,
        dataset=weave.Dataset(name=suite.name, rows=dataset_rows),
        scorers=[make_scorer(spec) for spec in suite.scorers],
    )


@dataclass
class ModelEvaluation:
    model: str
    model_ref: str
    summary: dict[str, Any]
    eval_ref: str = ""


def scored_rows(suite: Suite, rows: list[Row], frame: pd.DataFrame) -> ScoredRows | None:
    """A model's collected rows (its part of the run's frame) in dataset order, with their
    scores, when every scorer of the suite is built in (None otherwise)."""
    labels = [spec.label for spec in suite.scorers]
    if any(spec.kind == "python" for spec in suite.scorers):
        return None
    by_id = frame.set_index("row_id")
    ordered = by_id.loc[[row.id for row in rows]]
    return ScoredRows(
        outputs=[None if pd.isna(v) else str(v) for v in ordered["output"]],
        latencies=[float(v) for v in ordered["latency_s"]],
        scores={label: [clean_score(v) for v in ordered[f"score:{label}"]] for label in labels},
    )


def evaluate_stored(
    suite: Suite, rows: list[Row], spec: ModelSpec, frame: pd.DataFrame
) -> tuple[ModelEvaluation, str]:
    """The suite's Weave evaluation of a model's collected answers (its part of the run's
    frame, already scored); return its summary and the evaluation's ref. Built-in scorers:
    the scored rows are recorded as they are (evalflow/scored_evaluation.py); a Python scorer:
    weave.Evaluation runs over the stored answers."""
    evaluation = build_evaluation(suite, rows)
    model = model_identity(spec, suite)
    scored = scored_rows(suite, rows, frame)
    if scored is not None:
        summary = evaluate_scored(evaluation, model, scored)
    else:
        # Saved before its answers are in _ANSWERS: weave keeps the module globals an op reads
        # in the op's saved code, so the answers would make the model a new version each run.
        weave.publish(model, name=spec.name)
        _ANSWERS[spec.name] = {
            str(r): None if pd.isna(o) else str(o)
            for r, o in zip(frame["row_id"], frame["output"], strict=True)
        }
        try:
            summary = asyncio.run(evaluation.evaluate(model))
        finally:
            _ANSWERS.pop(spec.name, None)
    eval_ref = weave.publish(evaluation, name=suite.name).uri()
    model_ref = weave.publish(model, name=spec.name).uri()
    return ModelEvaluation(spec.name, model_ref, dict(summary), eval_ref), eval_ref


def leaderboard_name(suite: str) -> str:
    return f"{suite}-leaderboard"


def _headline(summary: dict[str, Any]) -> str | None:
    for leaf in ("mean", "true_fraction"):
        if isinstance(summary.get(leaf), int | float):
            return leaf
    return None


def metric_path(summary: Any) -> str | None:
    """The path of a scorer's headline figure in its evaluation summary: the mean of a
    numeric score, else the fraction of a boolean one (weave's own summary of a Python
    scorer), for the score itself or for its first field that has one."""
    if not isinstance(summary, dict):
        return None
    if leaf := _headline(summary):
        return leaf
    for key, value in summary.items():
        if isinstance(value, dict) and (leaf := _headline(value)):
            return f"{key}.{leaf}"
    return None


def publish_leaderboard(suite: Suite, eval_ref: str, summaries: list[dict[str, Any]]) -> str:
    """One leaderboard per suite, a column per scorer: the mean of the scored rows for the
    built-in scorers; for a Python scorer, the figure `metric_path` finds in the models'
    evaluation summaries (no column if they hold no number)."""
    columns = []
    for spec in suite.scorers:
        found = (metric_path(summary.get(spec.label)) for summary in summaries)
        path = f"{METRIC}.mean" if spec.kind != "python" else next(filter(None, found), None)
        if path is not None:
            columns.append(
                LeaderboardColumn(
                    evaluation_object_ref=eval_ref,
                    scorer_name=spec.label,
                    summary_metric_path=path,
                )
            )
    board = Leaderboard(
        name=leaderboard_name(suite.name),
        description=f"evalflow suite {suite.name}",
        columns=columns,
    )
    uri = weave.publish(board, name=leaderboard_name(suite.name)).uri()
    _flush()
    return uri


def _flush() -> None:
    """Wait until the weave client has sent everything (other processes read the store)."""
    from evalflow.weave_setup import flush_weave

    flush_weave()


def _ref_name(uri: str) -> str:
    return uri.rsplit("/", 1)[-1].split(":", 1)[0]


def read_leaderboard(suite: str) -> list[dict[str, Any]]:
    """The leaderboard as Weave holds it: per model, the latest value of each column and the
    number of evaluations behind it."""
    from weave.trace.context.weave_client_context import require_weave_client

    client = require_weave_client()
    try:
        board = weave.ref(f"{leaderboard_name(suite)}:latest").get()
    except Exception:  # weave raises NotFoundError or ValueError depending on the path
        raise UnknownNameError("leaderboard", suite, []) from None
    if not hasattr(board, "columns"):
        raise WeaveStoreError(f"{leaderboard_name(suite)} is not a leaderboard")
    spec = Leaderboard.model_validate(
        {"name": leaderboard_name(suite), "columns": [dict(c) for c in board.columns]}
    )
    table: list[dict[str, Any]] = []
    for result in get_leaderboard_results(spec, client):
        entry: dict[str, Any] = {"model": _ref_name(result.model_ref)}
        runs = 0
        for column, scores in zip(spec.columns, result.column_scores, strict=True):
            values = [s.value for s in scores.scores if isinstance(s.value, int | float)]
            entry[column.scorer_name] = values[-1] if values else math.nan
            runs = max(runs, len(scores.scores))
        entry["evaluations"] = runs
        table.append(entry)
    return sorted(table, key=lambda e: e["model"])


def models_on_leaderboard(suite: str) -> set[str]:
    """Models with a finished evaluation on the suite's leaderboard (none if it has none)."""
    try:
        return {row["model"] for row in read_leaderboard(suite)}
    except UnknownNameError:
        return set()

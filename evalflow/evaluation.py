"""The Weave side of a run: an Evaluation per model over stored answers, and the leaderboard.

`StoredAnswers` is a weave.Model whose identity is the model's spec (model id, endpoint,
generation parameters, prompt), so the same model on another night is the same ref and the
leaderboard compares across time. Its `predict` returns the answer already collected for the
row: no request reaches any endpoint. The lookup lives outside the model's attributes (they
make its digest).

Names in the Weave project: the suite's dataset is `<suite>`, its evaluation
`<suite>-evaluation`, its leaderboard `<suite>-leaderboard`, a model its registered name.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import weave
from weave.flow.leaderboard import Leaderboard, LeaderboardColumn, get_leaderboard_results
from weave.trace.errors import NotFoundError

from evalflow.config import Generation, ModelSpec, ScorerSpec, Suite
from evalflow.dataset import Row, RowStore
from evalflow.errors import ConfigError, UnknownNameError, WeaveStoreError
from evalflow.patches.weave_table import known_shape, publish_table, stored_dataset
from evalflow.scored_evaluation import (
    Scored,
    ScoredParts,
    ScoredRows,
    clean_score,
    evaluate_scored,
)
from evalflow.scorers import (
    OUTPUT_PREFIX,
    SCORE_PREFIX,
    JudgeScorer,
    RowScorer,
    correct_summary,
    judge_summary,
    leaderboard_path,
    make_scorer,
    metric_path,
    scorer_example,
    scorer_key,
    summarize_scores,
)
from evalflow.spool import ResultSpool

_ANSWERS: dict[str, dict[str, str | None]] = {}
METRIC = "correct"
PATH_ENV = "EVALFLOW_WEAVE_EVALUATION"
PATHS = ("recorded", "weave")
RUN_ATTRIBUTE = "evalflow"  # the evaluate call's attributes: {"evalflow": {"run_id", "answers"}}


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


def evaluation_name(suite: str) -> str:
    return f"{suite}-evaluation"


def build_evaluation(suite: Suite, rows: Iterable[Row]) -> weave.Evaluation:
    """The suite's weave.Evaluation: its dataset (under the suite's name) holds, per row,
    what a Python scorer receives (every field, row_id, target); its scorers are named by
    their labels. (Its dataset is a list of every row: a run publishes it with
    `publish_dataset` instead.)"""
    dataset = weave.Dataset(name=suite.name, rows=[scorer_example(row) for row in rows])
    return _evaluation(suite, dataset)


def _evaluation(suite: Suite, dataset: weave.Dataset) -> weave.Evaluation:
    return weave.Evaluation(
        name=evaluation_name(suite.name),
        dataset=dataset,
        scorers=[make_scorer(spec) for spec in suite.scorers],
        trials=suite.epochs,
    )


TABLE_CHUNK = 5000  # dataset rows a table_create sends


def publish_dataset(suite: Suite, rows: RowStore) -> tuple[weave.Dataset, Sequence[str]]:
    """The suite's Weave dataset (under the suite's name; per row what a Python scorer
    receives: every field, row_id, target), published, and each row's digest in its table.
    The rows are sent a chunk at a time, and not at all when the store has them already
    (evalflow/patches/weave_table.py); weave's own upload of every row at once otherwise."""

    def chunks() -> Iterator[list[dict[str, Any]]]:
        return ([scorer_example(row) for row in chunk] for chunk in rows.chunks(TABLE_CHUNK))

    table = publish_table(chunks)
    if table is None:  # the patch stands aside: a list of every row
        whole = weave.Dataset(name=suite.name, rows=[scorer_example(row) for row in rows])
        uri = weave.publish(whole, name=suite.name).uri()
        digests: Sequence[str] = whole.rows.table_ref.row_digests  # type: ignore[union-attr]
    else:
        uri = weave.publish(stored_dataset(suite.name, table), name=suite.name).uri()
        digests = table.row_digests
    dataset: weave.Dataset = weave.ref(uri).get()
    if table is not None:  # its rows are the stored table: nothing of it is read here
        known_shape(dataset, table.columns, len(digests))
    return dataset, digests


@dataclass
class ModelEvaluation:
    model: str
    model_ref: str
    summary: dict[str, Any]
    eval_ref: str = ""


def _row_scores(spec: ScorerSpec, ordered: pd.DataFrame) -> list[Any]:
    """A scorer's per-row scores as weave records them."""
    if isinstance(make_scorer(spec), RowScorer):
        return [{METRIC: clean_score(v)} for v in ordered[SCORE_PREFIX + spec.label]]
    return [
        None if v is None or (isinstance(v, float) and math.isnan(v)) else json.loads(v)
        for v in ordered[OUTPUT_PREFIX + spec.label]
    ]


def _scorer_summary(spec: ScorerSpec, scores: Iterable[Any]) -> Any:
    """A scorer's summary of its per-row scores (as weave records them), in dataset order."""
    scorer = make_scorer(spec)
    if isinstance(scorer, RowScorer):
        return correct_summary([score[METRIC] for score in scores])
    if isinstance(scorer, JudgeScorer):
        return judge_summary(scores)  # counts as it reads: no list of every row's grading
    return summarize_scores(scorer, list(scores))


def _part(suite: Suite, ordered: pd.DataFrame) -> ScoredRows:
    """Rows of a model in dataset order, with their scores (no summaries)."""
    return ScoredRows(
        outputs=[None if pd.isna(v) else str(v) for v in ordered["output"]],
        latencies=[float(v) for v in ordered["latency_s"]],
        scores={scorer_key(spec): _row_scores(spec, ordered) for spec in suite.scorers},
        summaries={},
    )


def scored_rows(suite: Suite, rows: Iterable[Row], frame: pd.DataFrame) -> ScoredRows:
    """A model's collected rows (its part of the run's frame, scored by
    evalflow.scorers.score_rows) in dataset order (a row's epochs together), with their
    scores and summaries."""
    scored = _part(suite, frame.set_index("row_id").loc[[row.id for row in rows]])
    scored.summaries = {
        scorer_key(spec): _scorer_summary(spec, scored.scores[scorer_key(spec)])
        for spec in suite.scorers
    }
    return scored


# A model's scored rows read from the spool once and held, up to this many: the record reads
# them once per scorer's summary, for its digest and its rows (each read of 1,000 rows, two
# Parquet files: about 15 ms). Past it, read part by part each time: memory stays flat.
HELD_ROWS = 20_000


def spooled_scores(suite: Suite, spool: ResultSpool, model: str) -> ScoredParts:
    """A model's scored rows as kept by the run's spool, read part by part (each part's rows
    are in dataset order, a row's epochs together): the same record as scored_rows gives.
    Up to HELD_ROWS rows, read once and held."""

    count = spool.count(model)
    held: list[ScoredRows] = []

    def read() -> Iterator[ScoredRows]:
        if held:
            return iter(held)
        parts = (_part(suite, frame) for frame in spool.frames(model))
        if count > HELD_ROWS:
            return parts
        held.extend(list(parts))  # all or nothing: a failed read is not held in part
        return iter(held)

    def scores(key: str) -> Iterator[Any]:
        return (score for part in read() for score in part.scores[key])

    summaries = {
        scorer_key(spec): _scorer_summary(spec, scores(scorer_key(spec))) for spec in suite.scorers
    }
    return ScoredParts(read, [scorer_key(s) for s in suite.scorers], summaries, count)


def evaluation_path() -> str:
    """How the evaluation is recorded: `recorded` (default: evalflow writes it from the scores
    it has) or `weave` (weave.Evaluation.evaluate scores every row again, with child calls)."""
    value = os.environ.get(PATH_ENV, "").strip() or PATHS[0]
    if value not in PATHS:
        raise ConfigError(f"{PATH_ENV}={value!r}: use one of {', '.join(PATHS)}")
    return value


def _weave_own(evaluation: weave.Evaluation, model: StoredAnswers, frame: pd.DataFrame) -> Any:
    """weave.Evaluation.evaluate over the stored answers (the model saved beforehand: weave
    keeps the module globals an op reads in its saved code, so the answers would otherwise
    make the model a new version each run)."""
    name = model.name or ""
    _ANSWERS[name] = {
        str(r): None if pd.isna(o) else str(o)
        for r, o in zip(frame["row_id"], frame["output"], strict=True)
    }
    try:
        return asyncio.run(evaluation.evaluate(model))
    finally:
        _ANSWERS.pop(name, None)


def _client() -> Any:
    from weave.trace.context.weave_client_context import require_weave_client

    return require_weave_client()


def _evaluations_of_run(eval_ref: str, model_ref: str, run_id: str) -> list[Any]:
    """The Evaluation.evaluate calls of this run, evaluation and model (the server's records)."""
    client = _client()
    client.flush()  # calls of this process not sent yet would be missed
    query = {
        "$expr": {
            "$eq": [
                {"$getField": f"attributes.{RUN_ATTRIBUTE}.run_id"},
                {"$literal": run_id},
            ]
        }
    }
    calls = client.server.calls_query_stream(
        {
            "project_id": client.project_id,
            "filter": {
                "op_names": [f"weave:///{client.project_id}/op/Evaluation.evaluate:*"],
                "input_refs": [eval_ref],
            },
            "query": query,
        }
    )
    return [
        c
        for c in calls
        if (c.inputs or {}).get("self") == eval_ref and (c.inputs or {}).get("model") == model_ref
    ]


def _recorded_before(eval_ref: str, model_ref: str, tag: dict[str, str]) -> dict[str, Any] | None:
    """The summary of this run's finished evaluation of these answers, if it was recorded
    already (a rerun after a crash); other evaluations of the run (unfinished, or of answers
    since changed, as by --retry-errors) are deleted, so that the run counts once."""
    found: dict[str, Any] | None = None
    stale: list[str] = []
    for call in _evaluations_of_run(eval_ref, model_ref, tag["run_id"]):
        mine = ((call.attributes or {}).get(RUN_ATTRIBUTE) or {}).get("answers")
        finished = call.ended_at is not None and not call.exception
        if found is None and finished and mine == tag["answers"] and call.output is not None:
            found = dict(call.output)
        else:
            stale.append(call.id)
    if stale:
        client = _client()
        client.server.calls_delete(
            {"project_id": client.project_id, "call_ids": stale, "wb_user_id": None}
        )
    return found


def _without_ops(value: Any) -> Any:
    """A stored object's value without its ops' refs (what weave captured of their code)."""
    if isinstance(value, dict):
        return {k: _without_ops(v) for k, v in value.items() if not _is_op_ref(v)}
    if isinstance(value, list):
        return [_without_ops(v) for v in value if not _is_op_ref(v)]
    return value


def _is_op_ref(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("weave:///") and "/op/" in value


def settled_evaluation(eval_ref: str) -> str:
    """The first stored version of this evaluation with the same dataset, scorers and trials
    (`eval_ref` itself when it is the first). Two processes publishing the same suite's
    evaluation get different versions when weave's capture of an op's code differs between
    them (seen on workers: one op's dependencies captured as "<error>"); a leaderboard shows
    one version's calls, so every process records on the first."""
    client = _client()
    name, digest = _ref_name(eval_ref), eval_ref.rsplit(":", 1)[-1]
    try:
        versions = client.server.objs_query(
            {
                "project_id": client.project_id,
                "filter": {"object_ids": [name], "latest_only": False},
                "sort_by": [{"field": "created_at", "direction": "asc"}],
            }
        ).objs
    except Exception as exc:
        raise _store_error(client, f"the versions of {name!r}", exc) from None
    ours = next((v for v in versions if v.digest == digest), None)
    if ours is None:
        return eval_ref
    for version in versions:
        if _without_ops(version.val) == _without_ops(ours.val):
            return eval_ref.rsplit(":", 1)[0] + f":{version.digest}"
    return eval_ref


def evaluate_stored(
    suite: Suite, rows: Iterable[Row], spec: ModelSpec, frame: pd.DataFrame, run_id: str
) -> tuple[ModelEvaluation, str]:
    """The suite's Weave evaluation of a model's collected answers (its part of the run's
    frame, already scored by evalflow.scorers.score_rows); return its summary and the
    evaluation's ref. Recorded from the scores (evalflow/scored_evaluation.py), or by
    weave.Evaluation.evaluate with EVALFLOW_WEAVE_EVALUATION=weave. Once per run: the call is
    tagged with `run_id`, and a rerun of the run finds it instead of recording it again."""
    store = rows if isinstance(rows, RowStore) else RowStore.of(rows)
    scored = scored_rows(suite, store, frame)
    return _record(suite, store, spec, scored, run_id, lambda: frame)


def evaluate_spooled(
    suite: Suite, rows: RowStore, spec: ModelSpec, spool: ResultSpool, run_id: str
) -> tuple[ModelEvaluation, str]:
    """evaluate_stored over a model's answers as the run's spool keeps them, read part by
    part (with EVALFLOW_WEAVE_EVALUATION=weave, weave's own path reads them whole)."""
    scored = spooled_scores(suite, spool, spec.name)

    def whole() -> pd.DataFrame:
        return pd.concat(list(spool.frames(spec.name)), ignore_index=True)

    return _record(suite, rows, spec, scored, run_id, whole)


def _record(
    suite: Suite,
    rows: RowStore,
    spec: ModelSpec,
    scored: Scored,
    run_id: str,
    frame: Callable[[], pd.DataFrame],
) -> tuple[ModelEvaluation, str]:
    path = evaluation_path()
    dataset, row_digests = publish_dataset(suite, rows)
    evaluation = _evaluation(suite, dataset)
    model = model_identity(spec, suite)
    published = weave.publish(evaluation, name=evaluation_name(suite.name)).uri()
    eval_ref = settled_evaluation(published)
    if eval_ref != published:  # recorded on the first version of the same evaluation
        evaluation.ref = weave.ref(eval_ref)
    model_ref = weave.publish(model, name=spec.name).uri()
    tag = {"run_id": run_id, "answers": scored.digest()}
    summary = _recorded_before(eval_ref, model_ref, tag)
    if summary is None:
        with weave.attributes({RUN_ATTRIBUTE: tag}):
            if path == "weave":
                summary = dict(_weave_own(evaluation, model, frame()))
            else:
                summary = evaluate_scored(evaluation, model, scored, row_digests)
        _flush()  # recorded for good (or a failed write says so) before the run goes on
    return ModelEvaluation(spec.name, model_ref, dict(summary), eval_ref), eval_ref


def leaderboard_name(suite: str) -> str:
    return f"{suite}-leaderboard"


def publish_leaderboard(suite: Suite, eval_ref: str, summaries: list[dict[str, Any]]) -> str:
    """One leaderboard per suite, a column per scorer: the mean of the scored rows for the
    built-in scorers; for a Python scorer, the figure `metric_path` finds in the models'
    evaluation summaries (no column if they hold no number)."""
    columns = []
    for spec in suite.scorers:
        key = scorer_key(spec)
        found = (metric_path(summary.get(key)) for summary in summaries)
        path = leaderboard_path(spec) or next(filter(None, found), None)
        if path is not None:
            columns.append(
                LeaderboardColumn(
                    evaluation_object_ref=eval_ref,
                    scorer_name=key,
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


def _store_error(client: Any, what: str, exc: BaseException) -> WeaveStoreError:
    """One line naming the store, what failed and why (an error of the store itself already
    says so)."""
    if isinstance(exc, WeaveStoreError):
        return exc
    from evalflow.weave_setup import store_location

    return WeaveStoreError(
        f"Weave store {store_location(client)}: cannot read {what} "
        f"({type(exc).__name__}: {exc}); the store may be damaged: restore it, or move it "
        f"away to start a new one"
    )


SUFFIX = "-leaderboard"


def known_leaderboards(client: Any) -> list[str]:
    """The suites that have a leaderboard in the project."""
    try:
        objs = client.server.objs_query(
            {
                "project_id": client.project_id,
                "filter": {"base_object_classes": ["Leaderboard"], "latest_only": True},
                "metadata_only": True,
            }
        ).objs
    except Exception as exc:
        raise _store_error(client, "its list of leaderboards", exc) from None
    return sorted(o.object_id.removesuffix(SUFFIX) for o in objs if o.object_id.endswith(SUFFIX))


def _leaderboard_spec(client: Any, suite: str) -> Leaderboard:
    """The suite's leaderboard as stored; UnknownNameError only when it does not exist."""
    name = leaderboard_name(suite)
    if suite not in known_leaderboards(client):
        raise UnknownNameError("leaderboard", suite, known_leaderboards(client))
    try:
        board = weave.ref(f"{name}:latest").get()
    except NotFoundError:
        raise UnknownNameError("leaderboard", suite, known_leaderboards(client)) from None
    except Exception as exc:
        raise _store_error(client, f"leaderboard {name!r}", exc) from None
    try:
        return Leaderboard.model_validate(
            {"name": name, "columns": [dict(c) for c in board.columns]}
        )
    except Exception as exc:
        raise _store_error(client, f"leaderboard {name!r} (a damaged record)", exc) from None


def read_leaderboard(suite: str) -> list[dict[str, Any]]:
    """The leaderboard as Weave holds it: per model, the latest value of each column with its
    95% interval and n (`<column> ci_low`, `<column> ci_high`, `<column> n`: Wilson's interval
    from the evaluation's summary for a built-in scorer; for a Python scorer, from the saved
    summary of the run behind it, when that run is here), the rows scored by the evaluation
    behind it (`n`), the number of evaluations, and the run id behind the figures (`run_id`).
    UnknownNameError (naming the suites that have one) when it does not exist;
    WeaveStoreError when the store cannot be read."""
    client = _client()
    spec = _leaderboard_spec(client, suite)
    try:
        results = get_leaderboard_results(spec, client)
    except Exception as exc:
        raise _store_error(client, f"the evaluations of {leaderboard_name(suite)!r}", exc) from None
    table: list[dict[str, Any]] = []
    for result in results:
        entry: dict[str, Any] = {"model": _ref_name(result.model_ref)}
        runs, latest = 0, None
        for scores in result.column_scores:
            runs = max(runs, len(scores.scores))
            latest = latest or (scores.scores[-1].evaluate_call_ref if scores.scores else None)
        output, run_id = _evaluation_record(client, latest)
        saved = _saved_summary(run_id, entry["model"])
        for column, scores in zip(spec.columns, result.column_scores, strict=True):
            values = [s.value for s in scores.scores if isinstance(s.value, int | float)]
            value = values[-1] if values else math.nan
            entry[column.scorer_name] = value
            entry.update(_interval(column.scorer_name, value, output, saved))
        entry["n"] = _rows_scored(output)
        entry["evaluations"] = runs
        entry["run_id"] = run_id
        table.append(entry)
    return sorted(table, key=lambda e: e["model"])


def _evaluation_record(client: Any, call_ref: str | None) -> tuple[dict[str, Any], str | None]:
    """The summary of the evaluation behind a leaderboard figure and the evalflow run id it
    was recorded by ({} and None when it can't be read: the figure stands without them)."""
    if call_ref is None:
        return {}, None
    try:
        call = client.get_call(call_ref.rsplit("/", 1)[-1])
    except Exception:  # the figure stands without its n and interval; reading them failed
        return {}, None
    output = call.output if isinstance(call.output, dict) else {}
    tag = (getattr(call, "attributes", None) or {}).get(RUN_ATTRIBUTE) or {}
    run_id = tag.get("run_id") if isinstance(tag, dict) else None
    return dict(output), run_id if isinstance(run_id, str) else None


def _saved_summary(run_id: str | None, model: str) -> dict[str, Any]:
    """The model's entry in the run's saved summary.json, when the run is here."""
    if run_id is None:
        return {}
    from evalflow.runs import run_path
    from evalflow.storage import read_bytes

    try:
        path = run_path(run_id) / "summary.json"
        entries = json.loads(read_bytes(path)).get("summary", [])
    except Exception:  # not here (another machine, or W&B): no interval from it
        return {}
    return next((e for e in entries if e.get("model") == model), {})


def _interval(
    key: str, value: Any, output: dict[str, Any], saved: dict[str, Any]
) -> dict[str, Any]:
    """A column's 95% interval and n: Wilson's from a built-in scorer's summary (its
    `correct.mean` and `correct.count`), else the saved run summary's (the same figure)."""
    from evalflow.stats import wilson_interval

    correct = (output.get(key) or {}).get(METRIC) if isinstance(output.get(key), dict) else None
    if isinstance(correct, dict) and isinstance(correct.get("count"), int):
        n, mean = correct["count"], correct.get("mean")
        successes = round(float(mean) * n) if n and isinstance(mean, int | float) else 0
        low, high = wilson_interval(successes, n)
        return {f"{key} ci_low": low, f"{key} ci_high": high, f"{key} n": n}
    mine = saved.get(key)
    same = (
        isinstance(value, int | float)
        and isinstance(mine, int | float)
        and math.isclose(float(mine), float(value), abs_tol=1e-9)
    )
    return {
        f"{key} ci_low": saved.get(f"{key} ci_low") if same else None,
        f"{key} ci_high": saved.get(f"{key} ci_high") if same else None,
        f"{key} n": saved.get(f"{key} n") if same else None,
    }


def _rows_scored(output: dict[str, Any]) -> int | None:
    """How many rows the evaluation behind a leaderboard figure scored (its first built-in
    scorer's count), or None when its summary does not say."""
    for value in output.values():
        figure = (value.get(METRIC) or value.get("score")) if isinstance(value, dict) else None
        count = figure.get("count") if isinstance(figure, dict) else None
        if isinstance(count, int):
            return count
    return None


def models_on_leaderboard(suite: str) -> set[str]:
    """Models with a finished evaluation on the suite's leaderboard (none if it has no
    leaderboard; a store that cannot be read raises WeaveStoreError)."""
    try:
        return {row["model"] for row in read_leaderboard(suite)}
    except UnknownNameError:
        return set()

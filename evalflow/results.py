"""Collect a run's answers with pandas, save them as Parquet with a summary, read them back."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from evalflow.clustered import SCORE, ScoreTally, figures_of, tally_score
from evalflow.config import ModelSpec
from evalflow.dataset import Row
from evalflow.errors import RunNotFoundError
from evalflow.inference import Answer
from evalflow.parquet import read_frame
from evalflow.runs import run_dir, run_path, write_atomic
from evalflow.storage import Location, read_bytes, write_built

COLUMNS = [
    "model",
    "row_id",
    "index",
    "input",
    "target",
    "output",
    "latency_s",
    "prompt_tokens",
    "completion_tokens",
    "attempts",
    "error_class",
    "error",
    "epoch",
]


def collect(rows: list[Row], answers: list[Answer]) -> pd.DataFrame:
    """One row per (model, dataset row), in model then row order."""
    by_id = {row.id: row for row in rows}
    records = []
    for answer in answers:
        row = by_id[answer.row_id]
        record = asdict(answer)
        record["input"] = json.dumps(row.inputs, ensure_ascii=False, default=str)
        record["target"] = str(row.target)
        records.append(record)
    frame = pd.DataFrame.from_records(records, columns=COLUMNS)
    return frame.sort_values(["model", "index", "epoch"], kind="stable").reset_index(drop=True)


@dataclass(frozen=True)
class PartTally:
    """What a model's summary needs of a part of its answers that holds every epoch of its
    rows (a chunk of rows, evalflow.spool): counts, sums, the answered rows' latencies and a
    tally per score column (evalflow.clustered), a few numbers per row in all."""

    rows: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    latencies: npt.NDArray[np.float64]  # the answered rows'
    epochs: frozenset[int]  # the answered rows'
    scores: dict[str, ScoreTally]  # by score column, in the frame's order


def tally(frame: pd.DataFrame) -> PartTally:
    """The tally of a part of one model's answers (collected and scored: `row_id`, `epoch`,
    `error_class`, tokens, `latency_s` and the score columns). Errors (infrastructure failures)
    stay out of the scores and the latency; their tokens count, they were paid."""
    failed, ok = _answered(frame)
    if "epoch" in frame:
        epochs = frozenset(int(e) for e in ok["epoch"].unique())
    else:  # one epoch
        epochs = frozenset({0}) if len(ok) else frozenset()
    return PartTally(
        rows=len(frame),
        errors=int(failed.sum()),
        prompt_tokens=int(frame["prompt_tokens"].sum()),
        completion_tokens=int(frame["completion_tokens"].sum()),
        latencies=ok["latency_s"].to_numpy(dtype=np.float64),
        epochs=epochs,
        scores=_tally_scores(ok, frame.columns),
    )


def _answered(frame: pd.DataFrame) -> tuple[pd.Series, pd.DataFrame]:
    """Which rows failed, and the others (no copy of the part when none failed)."""
    failed = frame["error_class"].notna()
    return failed, frame[~failed] if failed.any() else frame


def _tally_scores(ok: pd.DataFrame, columns: Iterable[str]) -> dict[str, ScoreTally]:
    return {c: tally_score(ok, c) for c in columns if c.startswith(SCORE)}


def tally_scores(frame: pd.DataFrame) -> dict[str, ScoreTally]:
    """The tallies of a part's score columns alone (`row_id`, `epoch`, `error_class` and the
    score columns): a Python scorer's headline, known once every part is in."""
    return _tally_scores(_answered(frame)[1], frame.columns)


def _cost(spec: ModelSpec | None, prompt_tokens: int, completion_tokens: int) -> float:
    """What the tokens cost, in USD; NaN unless the model's prices are known."""
    cost = spec.cost_of(prompt_tokens, completion_tokens) if spec is not None else None
    return math.nan if cost is None else cost


def _by_model(frame: pd.DataFrame) -> Iterator[tuple[Any, pd.DataFrame]]:
    """Each model's rows, in the order the models come: the frame itself when it has one
    model (groupby would copy every row)."""
    models = frame["model"].unique()
    if len(models) == 1 and not pd.isna(models[0]):
        yield models[0], frame
        return
    yield from frame.groupby("model", sort=False)


def _entry(model: Any, parts: list[PartTally], spec: ModelSpec | None) -> dict[str, Any]:
    prompt_tokens = sum(p.prompt_tokens for p in parts)
    completion_tokens = sum(p.completion_tokens for p in parts)
    rows = sum(p.rows for p in parts)
    errors = sum(p.errors for p in parts)
    latencies = pd.Series(np.concatenate([p.latencies for p in parts]), copy=False)
    epochs: set[int] = set().union(*(p.epochs for p in parts))
    entry: dict[str, Any] = {
        "model": model,
        "rows": rows,
        "answered": rows - errors,
        "errors": errors,
        "tokens": prompt_tokens + completion_tokens,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "mean_latency_s": float(latencies.mean()) if rows - errors else math.nan,
        "cost": _cost(spec, prompt_tokens, completion_tokens),
    }
    for column in parts[0].scores:
        label = column.removeprefix(SCORE)
        entry.update(figures_of(label, [p.scores[column] for p in parts], epochs))
    return entry


def summarize_parts(
    parts: Iterable[tuple[Any, PartTally]], specs: Mapping[str, ModelSpec] | None = None
) -> pd.DataFrame:
    """Per model: rows, answered, errors, tokens, mean latency, cost (USD, when the model's
    prices are known; failed rows' tokens count, they were paid), and per scorer its mean,
    clustered standard error, 95% interval and n, pass@k and the majority vote with epochs, a
    judge's errors and tokens (evalflow.clustered.figures_of). `parts`: each model's tallies,
    models and their parts in the order of the whole frame."""
    by_model: dict[Any, list[PartTally]] = {}
    for model, part in parts:
        by_model.setdefault(model, []).append(part)
    return pd.DataFrame([_entry(m, ps, (specs or {}).get(str(m))) for m, ps in by_model.items()])


def summarize(frame: pd.DataFrame, specs: Mapping[str, ModelSpec] | None = None) -> pd.DataFrame:
    """`summarize_parts` of a frame of every answer (each model's rows one part)."""
    return summarize_parts(((m, tally(group)) for m, group in _by_model(frame)), specs)


ResultsWriter = Callable[[Path], None]  # writes results.parquet at the path it is given


def save_run(
    run_id: str,
    frame: pd.DataFrame | ResultsWriter,
    summary: pd.DataFrame,
    meta: dict[str, Any],
) -> Location:
    """Write results.parquet and summary.json under runs/<run id>/, atomically (a half-written
    file is never presented as whole). `frame` is the results, or what writes them chunk by
    chunk (evalflow.spool.ResultSpool.write_results) into a temporary file moved into place
    when whole."""
    folder = run_dir(run_id)
    body = {**meta, "summary": json.loads(summary.to_json(orient="records"))}
    if isinstance(frame, pd.DataFrame):
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        write_atomic(folder / "results.parquet", buffer.getvalue())
    else:
        write_built(folder / "results.parquet", frame)
    write_atomic(folder / "summary.json", json.dumps(body, indent=2, default=str).encode())
    return folder


def failed_rows(run_id: str, wrong: bool = True) -> list[dict[str, Any]]:
    """A run's rows that failed (error class and message) and, if `wrong`, those a scorer
    marked wrong (which scorers), with input, target and output."""
    path = run_path(run_id) / "results.parquet"
    try:
        frame = read_frame(read_bytes(path))
    except FileNotFoundError:
        raise RunNotFoundError(
            f"run {run_id}: no results in {path.parent} (did it finish?)"
        ) from None
    score_cols = [c for c in frame.columns if c.startswith("score:")]
    out = []
    for record in frame.to_dict("records"):
        failed = [c.removeprefix("score:") for c in score_cols if record[c] is False]
        if record["error_class"] is None and not (wrong and failed):
            continue
        out.append(
            {
                "model": record["model"],
                "row_id": record["row_id"],
                "problem": record["error_class"] or "wrong: " + ", ".join(failed),
                "input": record["input"],
                "target": record["target"],
                "output": record["output"] if record["error_class"] is None else record["error"],
            }
        )
    return out

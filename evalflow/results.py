"""Collect a run's answers with pandas, save them as Parquet with a summary, read them back."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from evalflow.clustered import score_figures
from evalflow.config import ModelSpec
from evalflow.dataset import Row
from evalflow.errors import RunNotFoundError
from evalflow.inference import Answer
from evalflow.runs import run_dir, run_path, write_atomic
from evalflow.stats import describe
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


def scorer_figures(label: str, values: list[Any]) -> dict[str, Any]:
    """A scorer's summary fields: `<label>` (the mean), `<label> stderr`, `<label> ci_low`,
    `<label> ci_high` (95%: Wilson's for true/false scores, Student's t for numbers) and
    `<label> n` (the rows it scored)."""
    figure = describe(values)
    return {
        label: figure.mean,
        f"{label} stderr": figure.stderr,
        f"{label} ci_low": figure.low,
        f"{label} ci_high": figure.high,
        f"{label} n": figure.n,
    }


def _per_row(answered: pd.DataFrame, column: str) -> list[Any]:
    """A score column's values, one per row: with several epochs, each row's mean (the
    interval is then over rows, as the standard error is)."""
    if "epoch" not in answered or answered["epoch"].nunique() <= 1:
        return list(answered[column].dropna())
    values = answered[["row_id"]].assign(value=answered[column].astype(float)).dropna()
    return list(values.groupby("row_id", sort=False)["value"].mean())


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


def summarize(frame: pd.DataFrame, specs: Mapping[str, ModelSpec] | None = None) -> pd.DataFrame:
    """Per model: rows, answered, errors, tokens, mean latency, cost (USD, when the model's
    prices are known; failed rows' tokens count, they were paid), and per scorer its mean,
    standard error, 95% interval and n. Errors (infrastructure failures) stay out of the
    scores."""
    out = []
    score_cols = [c for c in frame.columns if c.startswith("score:")]
    for model, group in _by_model(frame):
        failed = group["error_class"].notna()
        ok = group[~failed] if failed.any() else group  # no copy of every row when none failed
        prompt_tokens = int(group["prompt_tokens"].sum())
        completion_tokens = int(group["completion_tokens"].sum())
        entry: dict[str, Any] = {
            "model": model,
            "rows": len(group),
            "answered": len(ok),
            "errors": int(failed.sum()),
            "tokens": prompt_tokens + completion_tokens,
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "mean_latency_s": float(ok["latency_s"].mean()) if len(ok) else math.nan,
            "cost": _cost((specs or {}).get(str(model)), prompt_tokens, completion_tokens),
        }
        for col in score_cols:
            entry.update(scorer_figures(col.removeprefix("score:"), _per_row(ok, col)))
            entry.update(score_figures(ok, col))  # clustered stderr, pass@k, judge errors
        out.append(entry)
    return pd.DataFrame(out)


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
        frame = pd.read_parquet(io.BytesIO(read_bytes(path)))
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

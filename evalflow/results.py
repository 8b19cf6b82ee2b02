"""Collect a run's answers with pandas, save them as Parquet with a summary, read them back."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel

from evalflow.dataset import Row
from evalflow.errors import RunNotFoundError
from evalflow.home import home_dir
from evalflow.inference import Answer

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
]


def run_dir(run_id: str) -> Path:
    return home_dir("runs", run_id)


def make_run_id(suite: str, parts: dict[str, Any]) -> str:
    """A run's id: the suite, the UTC day and a digest of everything that defines the run,
    so the same run started again the same day finds its saved answers."""
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
    day = pd.Timestamp.now(tz="UTC").strftime("%Y%m%d")
    return f"{suite}-{day}-{digest[:10]}"


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
    return frame.sort_values(["model", "index"], kind="stable").reset_index(drop=True)


def score_frame(
    frame: pd.DataFrame, scores: dict[str, dict[str, list[bool | None]]]
) -> pd.DataFrame:
    """Add a `score:<scorer>` column per scorer from {model: {scorer: per-row values}}."""
    frame = frame.copy()
    for model, by_scorer in scores.items():
        mask = frame["model"] == model
        for scorer, values in by_scorer.items():
            frame.loc[mask, f"score:{scorer}"] = pd.Series(values, index=frame.index[mask])
    return frame


def summarize(frame: pd.DataFrame) -> pd.DataFrame:
    """Per model: rows, answered, errors, tokens, mean latency, and mean +- stderr per scorer.
    Errors (infrastructure failures) stay out of the scores."""
    out = []
    score_cols = [c for c in frame.columns if c.startswith("score:")]
    for model, group in frame.groupby("model", sort=False):
        ok = group[group["error_class"].isna()]
        entry: dict[str, Any] = {
            "model": model,
            "rows": len(group),
            "answered": len(ok),
            "errors": int(group["error_class"].notna().sum()),
            "tokens": int(group["prompt_tokens"].sum() + group["completion_tokens"].sum()),
            "mean_latency_s": float(ok["latency_s"].mean()) if len(ok) else math.nan,
        }
        for col in score_cols:
            values = ok[col].dropna().astype(float)
            n = len(values)
            entry[f"{col.removeprefix('score:')}"] = float(values.mean()) if n else math.nan
            entry[f"{col.removeprefix('score:')} stderr"] = (
                float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0 if n else math.nan
            )
        out.append(entry)
    return pd.DataFrame(out)


def save_run(run_id: str, frame: pd.DataFrame, summary: pd.DataFrame, meta: dict[str, Any]) -> Path:
    """Write results.parquet and summary.json under runs/<run id>/, atomically (a half-written
    file is never presented as whole)."""
    folder = run_dir(run_id)
    partial = folder / "results.parquet.partial"
    frame.to_parquet(partial, index=False)
    partial.replace(folder / "results.parquet")
    body = {**meta, "summary": json.loads(summary.to_json(orient="records"))}
    tmp = folder / "summary.json.partial"
    tmp.write_text(json.dumps(body, indent=2, default=str), encoding="utf-8")
    tmp.replace(folder / "summary.json")
    return folder


PARAMETERS = "parameters.json"


class RunParameters(BaseModel):
    """What defines a run's rows and requests; saved with it so its failed rows can be re-run
    alone later."""

    suite: str
    models: list[str] | None = None
    limit: int | None = None
    dataset: str | None = None
    base_url: str | None = None
    weave_project: str | None = None
    chunk_size: int
    concurrency: int | None = None


def save_parameters(run_id: str, parameters: RunParameters) -> None:
    folder = run_dir(run_id)
    tmp = folder / f"{PARAMETERS}.partial"
    tmp.write_text(parameters.model_dump_json(indent=2), encoding="utf-8")
    tmp.replace(folder / PARAMETERS)


def load_parameters(run_id: str) -> RunParameters:
    """The parameters a run was started with; a clear error for an unknown run id."""
    path = home_dir() / "runs" / run_id / PARAMETERS
    if not path.is_file():
        runs = sorted(
            (p.parent.name for p in (home_dir() / "runs").glob(f"*/{PARAMETERS}")), reverse=True
        )
        known = ", ".join(runs[:10]) or "none yet"
        raise RunNotFoundError(f"no run {run_id!r} under {home_dir() / 'runs'} (runs: {known})")
    return RunParameters.model_validate_json(path.read_text(encoding="utf-8"))

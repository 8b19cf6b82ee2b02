"""The history of finished evaluations: one record per (full run, model), kept under
EVALFLOW_HOME/history/<suite>/ (or EVALFLOW_STORAGE/_history/<suite>/ when run storage is
shared: evalflow/storage.py) and read with pandas as one table.

Each record is its own small Parquet file, `<run id>--<model>.parquet`, written whole or not at
all (runs.write_atomic): two processes appending at once never touch the same file, and a run
started again (the same run id, or `--retry-errors`) replaces its own records. A record holds
the suite and a digest of what its figures depend on (the rows, the prompt, the scorers), the
model and a digest of its registry entry, the run id, when it finished, n, per scorer the mean,
standard error, 95% interval and n, tokens, mean latency and cost.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

from evalflow.config import ModelSpec, Suite
from evalflow.dataset import Row
from evalflow.errors import HistoryError
from evalflow.parquet import read_frame
from evalflow.runs import json_sha256, safe_name, write_atomic
from evalflow.storage import Location, history_root, listing, make_folder, read_all

FIELDS = (
    "suite",
    "suite_digest",
    "model",
    "model_digest",
    "run_id",
    "finished",
    "weave_project",
    "rows",
    "n",
    "errors",
    "tokens",
    "prompt_tokens",
    "completion_tokens",
    "mean_latency_s",
    "cost",
)
SCORER_FIELDS = ("", " stderr", " ci_low", " ci_high", " n")


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def suite_digest(suite: Suite, rows: Iterable[Row]) -> str:
    """A digest of what a suite's figures depend on: its rows (ids and contents), its prompt
    and its scorers (the rows read one at a time)."""
    value = {
        "prompt": suite.prompt.model_dump(),
        "scorers": [spec.model_dump() for spec in suite.scorers],
    }
    rows_json = ([row.id, row.record] for row in rows)
    options: dict[str, Any] = {"sort_keys": True, "default": str, "ensure_ascii": False}
    return json_sha256(value, {"rows": rows_json}, **options)[:16]


def model_digest(spec: ModelSpec) -> str:
    """A digest of the registry entry's fields that decide a model's answers: its model id,
    endpoint and generation parameters (not its description, limits, billing or prices)."""
    generation = spec.generation.model_dump(exclude_none=True) if spec.generation else {}
    return _digest({"model": spec.model, "endpoint": spec.endpoint, "generation": generation})


def history_dir(suite: str) -> Location:
    """The suite's history folder (created, when local)."""
    return make_folder(history_root() / safe_name(suite, 80))


def make_records(
    suite: Suite,
    rows: Iterable[Row],
    specs: Sequence[ModelSpec],
    run_id: str,
    weave_project: str,
    summary: Sequence[dict[str, Any]],
    finished: dt.datetime | None = None,
) -> list[dict[str, Any]]:
    """One history record per model of a finished full run, from the run's summary."""
    when = pd.Timestamp(finished or dt.datetime.now(dt.UTC))
    digest = suite_digest(suite, rows)
    by_name = {spec.name: spec for spec in specs}
    records = []
    for entry in summary:
        spec = by_name[str(entry["model"])]
        record: dict[str, Any] = {
            "suite": suite.name,
            "suite_digest": digest,
            "model": spec.name,
            "model_digest": model_digest(spec),
            "run_id": run_id,
            "finished": when,
            "weave_project": weave_project,
            "n": entry.get("answered"),
        }
        record.update({k: entry.get(k) for k in FIELDS if k not in record})
        figures = ["cost", "mean_latency_s"]
        for label in (s.label for s in suite.scorers):
            record.update({label + f: entry.get(label + f) for f in SCORER_FIELDS})
            figures += [label + f for f in SCORER_FIELDS if f != " n"]
        # A figure keeps one type in every record (never None, whose Parquet type differs).
        record.update({k: math.nan if record[k] is None else record[k] for k in figures})
        records.append(record)
    return records


def _record_path(record: dict[str, Any]) -> Location:
    name = f"{record['run_id']}--{safe_name(str(record['model']), 80)}.parquet"
    return history_dir(str(record["suite"])) / name


def append_records(records: Sequence[dict[str, Any]]) -> list[Location]:
    """Write each record as its own Parquet file (replacing the run's earlier record of the
    same model)."""
    paths = []
    for record in records:
        buffer = io.BytesIO()
        pd.DataFrame([record]).to_parquet(buffer, index=False)
        path = _record_path(record)
        write_atomic(path, buffer.getvalue())
        paths.append(path)
    return paths


def read_history(suite: str, model: str | None = None) -> pd.DataFrame:
    """The suite's history as one table, oldest first (empty, with the record's columns, when
    nothing was recorded yet)."""
    found = listing(history_root() / safe_name(suite, 80), "*.parquet")
    data = read_all(found)
    frames = []
    for path in (str(entry.where) for entry in found):
        try:
            frames.append(read_frame(data[path]))
        except Exception as exc:  # a damaged record: say which, never skip it silently
            raise HistoryError(
                f"{path}: cannot read this history record ({type(exc).__name__}: {exc}); "
                f"move it away and run the command again"
            ) from None
    if not frames:
        return pd.DataFrame(columns=list(FIELDS))
    table = pd.concat(frames, ignore_index=True)
    if model is not None:
        table = table[table["model"] == model]
    return table.sort_values(["finished", "model"], kind="stable").reset_index(drop=True)


def scorer_labels(table: pd.DataFrame) -> list[str]:
    """The scorers a history table has figures for, in column order."""
    return [c.removesuffix(" ci_low") for c in table.columns if c.endswith(" ci_low")]


def latest_run(suite: str, model: str, weave_project: str | None = None) -> str | None:
    """The run id of the model's latest finished full evaluation on the suite (in that Weave
    project, when given), or None."""
    table = read_history(suite, model)
    if weave_project is not None and len(table):
        table = table[table["weave_project"] == weave_project]
    return None if table.empty else str(table["run_id"].iloc[-1])

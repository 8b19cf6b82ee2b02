"""Task: collect every answer into one table, score it, save it under the run's folder."""

from __future__ import annotations

from typing import Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NONE

from evalflow.config import Suite
from evalflow.dataset import Row
from evalflow.inference import Answer
from evalflow.results import collect, save_run, summarize
from evalflow.scorers import score_rows


@task(name="collect", cache_policy=NONE)
def collect_results(
    suite: Suite, rows: list[Row], answers: list[Answer], run_id: str, meta: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Collect the answers with pandas, score every answered row with every scorer of the
    suite (Python scorers too), and save results.parquet and summary.json."""
    frame = score_rows(suite, rows, collect(rows, answers))
    summary = summarize(frame)
    save_run(run_id, frame, summary, meta)
    return frame, summary

"""Task: collect every answer into one table, score it, save it under the run's folder."""

from __future__ import annotations

from typing import Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NONE

from evalflow.config import Suite
from evalflow.dataset import Row
from evalflow.inference import Answer
from evalflow.results import collect, save_run, score_frame, summarize
from evalflow.scorers import RowScorer, make_scorer


def _row_scores(suite: Suite, frame: pd.DataFrame) -> dict[str, dict[str, list[bool | None]]]:
    scores: dict[str, dict[str, list[bool | None]]] = {}
    scorers = [(spec.label, make_scorer(spec)) for spec in suite.scorers]
    for model, group in frame.groupby("model", sort=False):
        scores[str(model)] = {
            label: [
                None if out is None else scorer.check(target, out)
                for target, out in zip(group["target"], group["output"], strict=True)
            ]
            for label, scorer in scorers
            if isinstance(scorer, RowScorer)
        }
    return scores


@task(name="collect", cache_policy=NONE)
def collect_results(
    suite: Suite, rows: list[Row], answers: list[Answer], run_id: str, meta: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    frame = collect(rows, answers)
    frame = score_frame(frame, _row_scores(suite, frame))
    summary = summarize(frame)
    save_run(run_id, frame, summary, meta)
    return frame, summary

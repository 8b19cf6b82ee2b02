"""Task: publish the suite's Weave leaderboard and the run's Prefect artifacts."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NONE

from evalflow.config import Suite
from evalflow.evaluation import ModelEvaluation, publish_leaderboard
from evalflow.tables import markdown


def _artifact_key(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")[:60]


@task(name="publish-leaderboard", cache_policy=NONE)
def publish(
    suite: Suite,
    eval_ref: str,
    evaluations: list[ModelEvaluation],
    summary: pd.DataFrame,
    run_id: str,
) -> str:
    ref = publish_leaderboard(suite, eval_ref, [e.summary for e in evaluations])
    records: list[dict[str, Any]] = [
        {str(k): (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
        for r in summary.to_dict("records")
    ]
    key = _artifact_key(f"{suite.name}-leaderboard")
    create_table_artifact(records, key=key, description=f"{suite.name}, run {run_id}")
    create_markdown_artifact(
        f"# {suite.name}\n\nrun `{run_id}`\n\n{markdown(records)}\n\nWeave leaderboard: `{ref}`\n",
        key=_artifact_key(f"{suite.name}-summary"),
    )
    return ref

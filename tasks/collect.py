"""Task: collect every answer into one table, score it, save it under the run's folder."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NONE

from evalflow.inference import Answer
from evalflow.judge import Judgement
from evalflow.plan import RunPlan
from evalflow.results import collect, save_run, summarize
from evalflow.run_context import RunContext
from evalflow.scorers import score_rows
from evalflow.tables import markdown


@task(name="collect", cache_policy=NONE)
def collect_results(
    plan: RunPlan, answers: list[Answer], run: RunContext, judgements: list[Judgement] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every answer in one table, every answered row scored by every scorer of the suite
    (Python scorers too), a summary per model; saved in the run's folder (results.parquet,
    summary.json)."""
    frame = score_rows(plan.suite, plan.rows, collect(plan.rows, answers), judgements)
    summary = summarize(frame)
    meta = {
        "run_id": run.run_id,
        "complete": run.budget.exceeded() is None,
        "suite": plan.suite.name,
        "models": [s.name for s in plan.specs],
        "rows": len(plan.rows),
        "full": plan.full,
        "scope": plan.scope(),
    }
    save_run(run.run_id, frame, summary, meta)
    _artifacts(plan, summary)
    return frame, summary


def _artifact_key(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")[:60]


def _artifacts(plan: RunPlan, summary: pd.DataFrame) -> None:
    """The run's own figures as Prefect artifacts: a table, and a markdown summary."""
    records: list[dict[str, Any]] = [
        {str(k): (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
        for r in summary.to_dict("records")
    ]
    name = plan.suite.name
    create_table_artifact(
        records, key=_artifact_key(f"{name}-results"), description=f"{name}, run {plan.run_id}"
    )
    create_markdown_artifact(
        f"# {name}\n\nrun `{plan.run_id}`, {plan.scope()}\n\n{markdown(records)}\n",
        key=_artifact_key(f"{name}-summary"),
    )

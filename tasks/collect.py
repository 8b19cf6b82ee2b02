"""Tasks: save a run's scored answers in one table with their summary, under the run's folder;
show the summary as Prefect artifacts."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NONE

from evalflow.figures import scorer_figure, summary_table
from evalflow.history import append_records, make_records
from evalflow.plan import RunPlan
from evalflow.results import save_run, summarize_parts
from evalflow.run_context import RunContext
from evalflow.spool import ResultSpool
from evalflow.tables import markdown
from evalflow.weave_setup import project_name


@task(name="collect", cache_policy=NONE)
def collect_results(plan: RunPlan, spool: ResultSpool, run: RunContext) -> pd.DataFrame:
    """Every answer (scored chunk by chunk into the run's spool: evalflow.spool) saved in one
    table, a summary per model; both in the run's folder (results.parquet, summary.json)."""
    summary = summarize_parts(spool.tallies(), {s.name: s for s in plan.specs})
    meta = {
        "run_id": run.run_id,
        "complete": run.budget.exceeded() is None,
        "suite": plan.suite.name,
        "models": [s.name for s in plan.specs],
        "rows": len(plan.rows),
        "full": plan.full,
        "scope": plan.scope(),
    }
    save_run(run.run_id, spool.write_results, summary, meta)
    if plan.full and meta["complete"]:
        _record_history(plan, summary)
    _log_headline(plan, run, summary)
    return summary


def _log_headline(plan: RunPlan, run: RunContext, summary: pd.DataFrame) -> None:
    """The run id, where its results are, and each model's figures, in the run's log."""
    logger = get_run_logger()
    logger.info("run %s (%s): results in %s", run.run_id, plan.scope(), run.folder)
    labels = [s.label for s in plan.suite.scorers]
    for entry in json.loads(summary.to_json(orient="records")):
        n = entry.get("answered")
        figures = ", ".join(f"{label} {scorer_figure(entry, label, n)}" for label in labels)
        logger.info(
            "%s: %s (mean [95%% interval]), n=%s rows scored, %s error(s)",
            entry["model"],
            figures,
            n,
            entry.get("errors"),
        )


def _record_history(plan: RunPlan, summary: pd.DataFrame) -> None:
    """A finished full evaluation: one history record per model (EVALFLOW_HOME/history)."""
    records = make_records(
        plan.suite,
        plan.rows,
        plan.specs,
        plan.run_id,
        project_name(plan.parameters.weave_project),
        json.loads(summary.to_json(orient="records")),
    )
    append_records(records)


def _artifact_key(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")[:60]


@task(name="results-artifacts", cache_policy=NONE)
def results_artifacts(plan: RunPlan, summary: pd.DataFrame) -> None:
    """The run's own figures as Prefect artifacts, a table and a markdown summary: each
    scorer's mean [95% interval] (3 decimals), n, errors, tokens, and cost when known. (Two
    requests to the Prefect server: the flow sends them beside the Weave evaluation.)"""
    entries: list[dict[str, Any]] = json.loads(summary.to_json(orient="records"))
    records = summary_table(entries, [s.label for s in plan.suite.scorers])
    name = plan.suite.name
    create_table_artifact(
        records, key=_artifact_key(f"{name}-results"), description=f"{name}, run {plan.run_id}"
    )
    create_markdown_artifact(
        f"# {name}\n\nrun `{plan.run_id}`, {plan.scope()}; each figure is the mean "
        f"[95% interval] over n rows scored\n\n{markdown(records)}\n",
        key=_artifact_key(f"{name}-summary"),
    )

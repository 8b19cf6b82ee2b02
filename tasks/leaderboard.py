"""Tasks: publish the suite's Weave leaderboard; or, for a run whose caller publishes it (the
nightly's children), leave the run's entries in an artifact the caller reads back."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NONE

from evalflow.config import load_suite
from evalflow.evaluation import ModelEvaluation, publish_leaderboard
from evalflow.plan import RunPlan

ENTRIES_KEY = "leaderboard-entries"


@task(name="publish-leaderboard", cache_policy=NONE)
def publish(plan: RunPlan, evaluations: list[ModelEvaluation]) -> str:
    """Republish the suite's Weave leaderboard (a full run's evaluations); return its ref."""
    return publish_leaderboard(
        plan.suite, evaluations[0].eval_ref, [e.summary for e in evaluations]
    )


@dataclass(frozen=True)
class Entry:
    """One model's evaluation of a run, as its caller needs it to publish the leaderboard."""

    suite: str
    model: str
    run_id: str
    on_leaderboard: bool  # a full run (or --leaderboard): it belongs on the leaderboard
    eval_ref: str
    summary: dict[str, Any]


def leave_entries(plan: RunPlan, evaluations: list[ModelEvaluation]) -> None:
    """The table artifact `leaderboard-entries` on the flow run: per model its run id, whether
    it belongs on the leaderboard, the Weave evaluation's ref and summary (JSON)."""
    rows = [
        {
            "suite": plan.suite.name,
            "model": e.model,
            "run_id": plan.run_id,
            "on_leaderboard": plan.leaderboard_entry,
            "eval_ref": e.eval_ref,
            "summary": json.dumps(e.summary, default=str),
        }
        for e in evaluations
    ]
    create_table_artifact(
        rows,
        key=ENTRIES_KEY,
        description=f"{plan.suite.name}: run {plan.run_id}'s leaderboard entries, published "
        f"by the run that started it",
    )


def read_entries(flow_run_id: UUID | str) -> list[Entry]:
    """The entries a flow run of `evaluate` left (none when it left no artifact)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
    )

    query = ArtifactFilter(
        key=ArtifactFilterKey(any_=[ENTRIES_KEY]),
        flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(str(flow_run_id))]),
    )
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=query)
    entries = []
    for artifact in artifacts:
        data: Any = artifact.data
        rows: list[dict[str, Any]] = json.loads(data) if isinstance(data, str) else list(data or [])
        for row in rows:
            entries.append(
                Entry(
                    suite=str(row["suite"]),
                    model=str(row["model"]),
                    run_id=str(row["run_id"]),
                    on_leaderboard=bool(row["on_leaderboard"]),
                    eval_ref=str(row["eval_ref"]),
                    summary=json.loads(row["summary"]),
                )
            )
    return entries


@task(name="publish-leaderboard", cache_policy=NONE, task_run_name="publish-{suite}")
def publish_entries(suite: str, entries: list[Entry]) -> str | None:
    """Publish the suite's leaderboard once for the night's evaluations that belong on it;
    return its ref (None when none does)."""
    mine = [e for e in entries if e.suite == suite and e.on_leaderboard]
    if not mine:
        return None
    return publish_leaderboard(load_suite(suite), mine[0].eval_ref, [e.summary for e in mine])

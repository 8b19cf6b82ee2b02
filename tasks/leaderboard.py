"""Task: publish the suite's Weave leaderboard."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NONE

from evalflow.evaluation import ModelEvaluation, publish_leaderboard
from evalflow.plan import RunPlan


@task(name="publish-leaderboard", cache_policy=NONE)
def publish(plan: RunPlan, evaluations: list[ModelEvaluation]) -> str:
    """Republish the suite's Weave leaderboard (a full run's evaluations); return its ref."""
    return publish_leaderboard(
        plan.suite, evaluations[0].eval_ref, [e.summary for e in evaluations]
    )

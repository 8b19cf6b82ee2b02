"""Task: plan a run (suite, models, rows and scorers checked; the run named), sending nothing."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NONE

from evalflow.plan import RunPlan, RunRequest, plan_run


@task(name="plan-run", cache_policy=NONE)
def plan_evaluation(request: RunRequest) -> RunPlan:
    """Check the suite, models, rows and scorers, and name the run; nothing is sent."""
    return plan_run(request)

"""Task: plan a run (suite, models, rows and scorers checked; the run named), sending nothing."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NONE

from evalflow.plan import RunPlan, RunRequest, plan_run
from evalflow.run_context import handed_plan


@task(name="plan-run", cache_policy=NONE)
def plan_evaluation(request: RunRequest) -> RunPlan:
    """Check the suite, models, rows and scorers, and name the run; nothing is sent. (Started
    by `evalflow run`, which planned and opened the run before the flow: that plan.)"""
    return handed_plan(request) or plan_run(request)

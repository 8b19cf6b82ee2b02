"""Task: a Weave evaluation of one model over its collected answers (no new requests)."""

from __future__ import annotations

import pandas as pd
from prefect import task
from prefect.cache_policies import NONE

from evalflow.config import ModelSpec, Suite
from evalflow.dataset import Row
from evalflow.evaluation import ModelEvaluation, evaluate_stored


@task(name="weave-evaluation", cache_policy=NONE, task_run_name="evaluate-{spec.name}")
def weave_evaluation(
    suite: Suite, rows: list[Row], spec: ModelSpec, frame: pd.DataFrame, run_id: str
) -> ModelEvaluation:
    """Record the model's Weave evaluation of the run's saved answers (once per run: a rerun
    finds it)."""
    mine = frame[frame["model"] == spec.name]
    evaluation, _ = evaluate_stored(suite, rows, spec, mine, run_id)
    return evaluation

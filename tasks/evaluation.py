"""Task: a Weave evaluation of one model over its collected answers (no new requests)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NONE

from evalflow.config import ModelSpec, Suite
from evalflow.dataset import RowStore
from evalflow.evaluation import ModelEvaluation, evaluate_spooled
from evalflow.spool import ResultSpool


@task(name="weave-evaluation", cache_policy=NONE, task_run_name="evaluate-{spec.name}")
def weave_evaluation(
    suite: Suite, rows: RowStore, spec: ModelSpec, spool: ResultSpool, run_id: str
) -> ModelEvaluation:
    """Record the model's Weave evaluation of the run's answers, read from the run's spool
    chunk by chunk (once per run: a rerun finds it)."""
    evaluation, _ = evaluate_spooled(suite, rows, spec, spool, run_id)
    return evaluation

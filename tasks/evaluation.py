"""Tasks: a Weave evaluation of one model over its collected answers (no new requests), and
the objects every evaluation of the run refers to, published while the rows are answered."""

from __future__ import annotations

from collections.abc import Sequence

from prefect import task
from prefect.cache_policies import NONE

from evalflow.config import ModelSpec, Suite
from evalflow.dataset import RowStore
from evalflow.evaluation import (
    EvaluationObjects,
    ModelEvaluation,
    evaluate_spooled,
    publish_objects,
)
from evalflow.spool import ResultSpool


@task(name="publish-evaluation-objects", cache_policy=NONE)
def publish_evaluation_objects(
    suite: Suite, rows: RowStore, specs: Sequence[ModelSpec]
) -> EvaluationObjects:
    """Publish the suite's dataset, its evaluation and the models' identities to Weave: none
    depends on the answers, so the flow runs this beside the inference."""
    return publish_objects(suite, rows, specs)


@task(name="weave-evaluation", cache_policy=NONE, task_run_name="evaluate-{spec.name}")
def weave_evaluation(
    suite: Suite,
    rows: RowStore,
    spec: ModelSpec,
    spool: ResultSpool,
    run_id: str,
    objects: EvaluationObjects | None = None,
) -> ModelEvaluation:
    """Record the model's Weave evaluation of the run's answers, read from the run's spool
    chunk by chunk (once per run: a rerun finds it), on `objects` when published already."""
    evaluation, _ = evaluate_spooled(suite, rows, spec, spool, run_id, objects)
    return evaluation

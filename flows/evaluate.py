"""The evaluation flow: rows -> concurrent traced inference -> pandas -> Weave evaluation ->
leaderboard."""

from __future__ import annotations

from typing import Annotated, Any

from prefect import flow
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import Field

from evalflow.config import ModelName, SuiteName
from evalflow.forms import form_help
from evalflow.patches.prefect_parameters import plain_parameters
from evalflow.plan import CHUNK_WORKERS, RunRequest, reachable
from evalflow.run_context import open_run
from evalflow.spool import open_spool
from evalflow.weave_setup import init_weave
from tasks.collect import collect_results, results_artifacts
from tasks.evaluation import weave_evaluation
from tasks.inference import answer_rows
from tasks.leaderboard import leave_entries, publish
from tasks.plan import plan_evaluation
from tasks.unwalked import unwalked


def _run_name() -> str:
    """`suite: model, model` (the UI's name of a flow run)."""
    parameters = flow_run.parameters
    models = parameters.get("models") or ["the suite's models"]
    return f"{parameters.get('suite')}: {', '.join(models)}"[:100]


@form_help
@flow(
    name="evaluate",
    flow_run_name=_run_name,
    task_runner=ThreadPoolTaskRunner(max_workers=CHUNK_WORKERS),  # type: ignore[arg-type]
)
def evaluate(
    suite: Annotated[SuiteName, Field(description="suite name (evals/<name>.yaml)")] = "qa-basics",
    models: Annotated[
        list[ModelName] | None, Field(description="registered model names; default: the suite's")
    ] = None,
    limit: Annotated[int | None, Field(ge=1, description="first N rows only")] = None,
    chunk_size: Annotated[int, Field(ge=1, le=10_000, description="rows per task")] = 200,
    concurrency: Annotated[
        int | None, Field(ge=1, le=1024, description="requests in flight")
    ] = None,
    base_url: Annotated[str | None, Field(description="run the models on this endpoint")] = None,
    dataset: Annotated[
        str | None, Field(description="a dataset file instead of the suite's")
    ] = None,
    max_error_fraction: Annotated[
        float, Field(ge=0, le=1, description="fail the run past this fraction of failed rows")
    ] = 0.1,
    max_tokens: Annotated[
        int | None, Field(ge=1, description="token budget of the run (prompt + completion)")
    ] = None,
    max_cost: Annotated[
        float | None,
        Field(gt=0, description="cost budget of the run, USD (needs the models' prices)"),
    ] = None,
    weave_project: Annotated[str | None, Field(description="default: local/evalflow")] = None,
    retry_errors_of: Annotated[
        str | None,
        Field(
            description="a run id: re-run only that run's failed rows, with its parameters "
            "(suite, models, rows, endpoint); its answered rows are reused"
        ),
    ] = None,
    fresh: Annotated[bool, Field(description="ask again: reuse no saved answer")] = False,
    leaderboard: Annotated[
        bool, Field(description="publish a partial run (--limit, --dataset) on the leaderboard")
    ] = False,
    epochs: Annotated[
        int | None, Field(ge=1, le=100, description="times each row is asked; default: the suite's")
    ] = None,
    publish_leaderboard: Annotated[
        bool,
        Field(
            description="publish the suite's leaderboard at the end; off: the run's entries "
            "are left in its artifact `leaderboard-entries` for the caller to publish (the "
            "nightly publishes each suite once after all its evaluations)"
        ),
    ] = True,
) -> dict[str, Any]:
    """Evaluate models on a suite: answer every row, save and score the answers, record a
    Weave evaluation per model, and publish the suite's leaderboard (full runs only)."""
    plan = plan_evaluation(RunRequest.model_validate(locals()))
    init_weave(plan.parameters.weave_project)
    with open_run(plan) as run, open_spool(plan.suite) as spool:
        with reachable(plan.endpoint_specs) as targets:
            answer_rows(plan, run, targets, spool)
        summary = collect_results(unwalked(plan), unwalked(spool), unwalked(run))
        figures = results_artifacts.submit(unwalked(plan), unwalked(summary))
        run.stop_if_over_budget()
        evaluations = [
            weave_evaluation(plan.suite, unwalked(plan.rows), spec, unwalked(spool), run.run_id)
            for spec in plan.specs
        ]
        board = publish(unwalked(plan), evaluations) if plan.publishes else None
        if not plan.request.publish_leaderboard:
            leave_entries(plan, evaluations)
        figures.result()  # its own error, if it failed
    return {
        "run_id": run.run_id,
        "folder": str(run.folder),
        "scope": plan.scope(),
        "leaderboard": board,
        "summary": summary.to_dict("records"),
    }


plain_parameters(evaluate)  # its parameters are recorded without importing FastAPI

"""The evaluation flow: rows -> concurrent traced inference -> pandas -> Weave evaluation ->
leaderboard."""

from __future__ import annotations

import os
from contextlib import ExitStack
from typing import Annotated, Any, TypeVar, cast

from prefect import flow
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import quote
from pydantic import Field

from evalflow import budget, progress
from evalflow.config import (
    ModelName,
    ModelSpec,
    SuiteName,
    load_registry,
    load_suite,
    resolve_models,
)
from evalflow.endpoints import local_llm
from evalflow.errors import BudgetExceededError, ConfigError
from evalflow.evaluation import ModelEvaluation
from evalflow.inference import LOCAL_LLM_ENV, Answer, Target
from evalflow.results import RunParameters, load_parameters, make_run_id, run_dir, save_parameters
from evalflow.weave_setup import init_weave
from tasks.collect import collect_results
from tasks.dataset import load_suite_rows
from tasks.evaluation import weave_evaluation
from tasks.inference import infer_chunk
from tasks.leaderboard import publish
from tasks.limits import ensure_shared_limits

T = TypeVar("T")


def _unwalked(value: T) -> T:
    """A task argument Prefect passes as is, without walking it for futures: walking the rows
    (pydantic models, dataclasses) cost Prefect 11% of a 10,000-row run's CPU."""
    return cast(T, quote(value))


def _with_concurrency(specs: list[ModelSpec], concurrency: int | None) -> list[ModelSpec]:
    if concurrency is None:
        return specs
    return [
        s.model_copy(
            update={"limits": s.limits.model_copy(update={"max_concurrency": concurrency})}
        )
        for s in specs
    ]


@flow(name="evaluate", task_runner=ThreadPoolTaskRunner(max_workers=4))  # type: ignore[arg-type]
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
    weave_project: Annotated[str | None, Field(description="default: local/evalflow")] = None,
    retry_errors_of: Annotated[
        str | None,
        Field(
            description="a run id: re-run only that run's failed rows, with its parameters "
            "(suite, models, rows, endpoint); its answered rows are reused"
        ),
    ] = None,
) -> dict[str, Any]:
    identity = RunParameters(
        suite=suite,
        models=models,
        limit=limit,
        dataset=dataset,
        base_url=base_url,
        weave_project=weave_project,
        chunk_size=chunk_size,
        concurrency=concurrency,
    )
    if retry_errors_of:
        identity = load_parameters(retry_errors_of)
        suite, models, limit = identity.suite, identity.models, identity.limit
        dataset, base_url = identity.dataset, identity.base_url
        weave_project, chunk_size = identity.weave_project, identity.chunk_size
        concurrency = identity.concurrency
    init_weave(weave_project)
    spec = load_suite(suite)
    specs = _with_concurrency(
        resolve_models(models or spec.models, load_registry(), base_url), concurrency
    )
    rows = load_suite_rows(spec, dataset, limit)
    run_id = make_run_id(
        spec.name,
        {
            "suite": spec.model_dump(),
            "rows": [r.id for r in rows],
            "dataset": dataset or spec.dataset_path(),
            "weave_project": weave_project,
            "models": [s.model_dump() for s in specs],
            "limit": limit,
        },
    )
    if retry_errors_of:
        if run_id.rsplit("-", 1)[1] != retry_errors_of.rsplit("-", 1)[1]:
            raise ConfigError(
                f"run {retry_errors_of}'s suite, rows or models changed since it ran (its "
                f"dataset or evals/models.yaml was edited): its failed rows can't be re-run "
                f"alone. Start a new run instead."
            )
        run_id = retry_errors_of
    save_parameters(run_id, identity)
    chunks = [rows[i : i + chunk_size] for i in range(0, len(rows), chunk_size)]
    progress.reset(len(rows) * len(specs))
    budget.start(len(rows) * len(specs), max_tokens, max_error_fraction)
    bar: Any = create_progress_artifact(0.0, description=f"{spec.name}: rows answered")
    futures: list[Any] = []

    try:
        with ExitStack() as stack:
            local_url = (
                stack.enter_context(local_llm())
                if any(s.endpoint == "local" for s in specs) and not os.environ.get(LOCAL_LLM_ENV)
                else None
            )
            targets = [Target.of(s, local_url) for s in specs]
            shared = ensure_shared_limits(specs, chunk_size)
            futures = [
                infer_chunk.submit(
                    _unwalked(chunk),
                    target,
                    spec,
                    n,
                    run_dir(run_id) / "answers" / target.spec.name / f"{n}.jsonl",
                    shared.get(target.spec.name),
                )
                for target in targets
                for n, chunk in enumerate(chunks)
            ]
            answers: list[Answer] = []
            for future in as_completed(futures):
                answers.extend(future.result())
                done = progress.current().snapshot()
                update_progress_artifact(
                    bar,
                    100.0 * done["done"] / max(done["total"], 1),
                    description=(
                        f"{spec.name}: {int(done['done'])}/{int(done['total'])} rows answered, "
                        f"{int(done['errors'])} failed, {int(done['retries'])} retries, "
                        f"{int(done['waiting'])} requests waiting on limits"
                    ),
                )

        spent = budget.current().exceeded()
    except BaseException:
        # The run failed (a fatal answer, say): its other chunks send nothing more, and are
        # waited for so that none outlives the run.
        budget.current().halt("the run failed")
        for pending in futures:
            pending.wait()
        raise
    finally:
        budget.start(0, None, 1.0)  # the budget belonged to this run, failed or not
    meta = {
        "run_id": run_id,
        "complete": spent is None,
        "suite": spec.name,
        "models": [s.name for s in specs],
        "rows": len(rows),
    }
    frame, summary = collect_results(spec, _unwalked(rows), _unwalked(answers), run_id, meta)

    if reason := spent:
        raise BudgetExceededError(
            f"the run stopped starting requests past {reason}. What was answered is saved in "
            f"{run_dir(run_id)}, flagged incomplete; no leaderboard was published. Run the same "
            f"command again (with a larger budget) to finish only the missing rows."
        )
    eval_ref = ""
    evaluations: list[ModelEvaluation] = []
    for model_spec in specs:
        mine = frame[frame["model"] == model_spec.name]
        evaluation, eval_ref = weave_evaluation(spec, _unwalked(rows), model_spec, mine, run_id)
        evaluations.append(evaluation)
    leaderboard_ref = publish(spec, eval_ref, evaluations, summary, run_id)
    return {
        "run_id": run_id,
        "folder": str(run_dir(run_id)),
        "leaderboard": leaderboard_ref,
        "summary": summary.to_dict("records"),
    }

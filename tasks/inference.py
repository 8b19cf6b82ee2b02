"""Tasks: answer the rows, one task per chunk of rows and model (rows run concurrently inside)."""

from __future__ import annotations

import asyncio
from typing import Any

from prefect import task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NONE
from prefect.futures import PrefectFuture, as_completed

from evalflow.config import Suite
from evalflow.dataset import Row
from evalflow.errors import ChunkFailedError
from evalflow.inference import Answer, Journal, Target, answer_chunk
from evalflow.plan import RunPlan
from evalflow.prompting import render_messages
from evalflow.run_context import RunContext
from tasks.limits import ensure_shared_limits, take_shared_slots
from tasks.unwalked import unwalked


@task(name="infer-chunk", cache_policy=NONE, task_run_name="infer-{target.spec.name}-{chunk_no}")
def infer_chunk(
    rows: list[Row],
    target: Target,
    suite: Suite,
    chunk_no: int,
    run: RunContext,
    shared_limit: str | None = None,
) -> list[Answer]:
    """Answer a chunk of rows with one model; fails (keeping its answers) when its failed rows
    helped the run past its error budget."""
    take_shared_slots(shared_limit, len(rows))
    messages = [render_messages(suite.prompt, row.inputs) for row in rows]
    generation = suite.generation.merged(target.spec.generation)
    journal = Journal(run.journal_path(target.spec.name, chunk_no))
    answers = asyncio.run(
        answer_chunk(rows, target, messages, generation, suite.name, run, journal)
    )
    failed = sum(a.error is not None for a in answers)
    if failed and (reason := run.budget.exceeded()):
        raise ChunkFailedError(
            f"{failed} of {len(rows)} rows failed; the run is past {reason}", answers
        )
    return answers


def answer_rows(plan: RunPlan, run: RunContext, targets: list[Target]) -> list[Answer]:
    """Every row answered by every model: an infer-chunk task per chunk and model, run
    concurrently; the run's progress shown as a Prefect progress artifact."""
    shared = ensure_shared_limits(plan.specs, plan.parameters.chunk_size)
    name = plan.suite.name
    bar: Any = create_progress_artifact(0.0, description=f"{name}: rows answered")
    futures: list[PrefectFuture[list[Answer]]] = [
        infer_chunk.submit(
            unwalked(chunk),
            target,
            unwalked(plan.suite),
            n,
            unwalked(run),
            shared.get(target.spec.name),
        )
        for target in targets
        for n, chunk in enumerate(plan.chunks())
    ]
    answers: list[Answer] = []
    try:
        for future in as_completed(futures):
            outcome: Any = future.result(raise_on_failure=False)
            if isinstance(outcome, ChunkFailedError):
                outcome = outcome.answers  # its answers count; the run fails after saving them
            elif isinstance(outcome, BaseException):
                raise outcome
            answers.extend(outcome)
            snapshot = run.progress.snapshot()
            update_progress_artifact(
                bar,
                100.0 * snapshot["done"] / max(snapshot["total"], 1),
                description=f"{name}: {run.progress.describe()}",
            )
    except BaseException:
        # The run failed (a fatal answer, say): its other chunks send nothing more, and are
        # waited for so that none outlives the run.
        run.budget.halt("the run failed")
        for pending in futures:
            pending.wait()
        raise
    return answers

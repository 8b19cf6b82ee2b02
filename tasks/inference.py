"""Tasks: answer the rows, one task per chunk of rows and model (rows run concurrently inside,
each graded by the suite's judges as soon as it is answered)."""

from __future__ import annotations

import asyncio
import functools
import queue
from typing import Any

from prefect import task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NONE
from prefect.futures import PrefectFuture

from evalflow.config import Suite
from evalflow.dataset import Row
from evalflow.early_answers import Answered
from evalflow.errors import ChunkFailedError
from evalflow.inference import Asker, Journal, Target
from evalflow.judge import Judge, answer_and_judge
from evalflow.plan import RunPlan
from evalflow.prompting import ChunkRequests, chunk_requests
from evalflow.run_context import RunContext
from evalflow.spool import ResultSpool
from tasks.limits import ensure_shared_limits, take_shared_slots
from tasks.unwalked import unwalked


@task(name="infer-chunk", cache_policy=NONE, task_run_name="infer-{target.spec.name}-{chunk_no}")
def infer_chunk(
    rows: list[Row],
    target: Target,
    suite: Suite,
    chunk_no: int,
    run: RunContext,
    spool: ResultSpool,
    shared_limit: str | None = None,
    judges: dict[str, Target] | None = None,
    judge_limits: dict[str, str | None] | None = None,
) -> int:
    """Answer a chunk of rows with one model, each row once per epoch of the suite, each
    answer graded by the suite's judges (`judges`: judge scorer label -> its model) as soon
    as it arrives; the answers and judgements go, scored, to the run's spool (the task keeps
    none: return how many answers). Fails (its answers kept in the spool) when its failed
    rows helped the run past its error budget."""
    requests = chunk_requests(rows, suite, target.spec)
    asked = requests.asked
    take_shared_slots(shared_limit, len(asked))
    graders = []
    for scorer in suite.scorers:
        if scorer.kind == "judge" and judges is not None:
            journal = Journal(run.judgement_path(scorer.label, target.spec.name, chunk_no))
            limit = (judge_limits or {}).get(scorer.label)
            admit = functools.partial(take_shared_slots, limit, len(asked)) if limit else None
            graders.append(Judge(scorer, judges[scorer.label], journal, admit))
    answering = _answering(target, requests, suite, chunk_no, run)
    answers, judgements = asyncio.run(
        answer_and_judge(asked, answering, requests.messages, requests.epochs, graders, suite, run)
    )
    spool.add(chunk_no, rows, answers, judgements)
    failed = sum(a.error is not None for a in answers)
    if failed and (reason := run.budget.exceeded()):
        raise ChunkFailedError(f"{failed} of {len(asked)} rows failed; the run is past {reason}")
    return len(answers)


def _answering(
    target: Target, requests: ChunkRequests, suite: Suite, chunk_no: int, run: RunContext
) -> Asker:
    """Who answers the chunk: the answers `evalflow run` asked before the flow started, when
    it did (waited for until they are all in), else an Asker of the model (journaled)."""
    early = run.early.take(target.spec.name, chunk_no) if run.early is not None else None
    if early is not None:
        return Answered(target, early, suite.name, run)
    journal = Journal(run.journal_path(target.spec.name, chunk_no))
    return Asker(target, requests.generation, suite.name, run, journal)


def _settled(outcome: Any) -> None:
    """A finished infer-chunk: a chunk failed past the error budget has put its answers in
    the spool (they count, and the run fails after saving them); any other failure raises."""
    if isinstance(outcome, BaseException) and not isinstance(outcome, ChunkFailedError):
        raise outcome


def answer_rows(plan: RunPlan, run: RunContext, targets: list[Target], spool: ResultSpool) -> None:
    """Every row answered by every model, and graded by the suite's judges as it is answered,
    into `spool`: an infer-chunk task per chunk and model, run concurrently; the run's
    progress shown as a Prefect progress artifact. `targets` are those of
    plan.endpoint_specs. A chunk's rows are read when it is submitted, a few chunks at most
    ahead of those finished (`RunPlan.chunks_at_once`), so the rows held are a few chunks',
    not the dataset's (a task's arguments stay in the task runner's queue until it runs)."""
    answering, judges = plan.split_targets(targets)
    shared = ensure_shared_limits(plan.endpoint_specs, plan.parameters.chunk_size)
    judge_limits = {label: shared.get(spec.name) for label, spec in plan.judges.items()}
    name = plan.suite.name
    bar: Any = create_progress_artifact(0.0, description=f"{name}: rows answered")
    work = ((target, n, chunk) for target in answering for n, chunk in enumerate(plan.chunks()))
    finished: queue.SimpleQueue[PrefectFuture[int]] = queue.SimpleQueue()
    running: set[PrefectFuture[int]] = set()

    def submit_next() -> None:
        taken = next(work, None)
        if taken is None:
            return
        target, n, chunk = taken
        future = infer_chunk.submit(
            unwalked(chunk),
            target,
            unwalked(plan.suite),
            n,
            unwalked(run),
            unwalked(spool),
            shared.get(target.spec.name),
            judges,
            judge_limits,
        )
        running.add(future)
        future.add_done_callback(finished.put)

    try:
        for _ in range(plan.chunks_at_once(answering, judged=bool(judges))):
            submit_next()
        while running:
            future = finished.get()
            running.discard(future)
            _settled(future.result(raise_on_failure=False))
            _show(bar, name, run)
            submit_next()
    except BaseException:
        # The run failed (a fatal answer, say): its chunks not yet submitted never are, the
        # others send nothing more and are waited for so that none outlives the run.
        run.budget.halt("the run failed")
        for pending in running:
            pending.wait()
        raise


def _show(bar: Any, name: str, run: RunContext) -> None:
    snapshot = run.progress.snapshot()
    update_progress_artifact(
        bar,
        100.0 * snapshot["done"] / max(snapshot["total"], 1),
        description=f"{name}: {run.progress.describe()}",
    )

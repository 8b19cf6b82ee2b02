"""Answers asked before the flow starts: `evalflow run` starts asking a run's rows as soon as
the run is planned, its endpoints checked and its id held, while Prefect's server gets ready
and the flow is imported (a second or more of a small run's wait). The flow's infer-chunk
tasks then take those answers (`take`) instead of asking: every row is still asked once.

One thread, one event loop; chunks in the order the flow submits its tasks, at most
`RunPlan.early_chunks()` chunks asked or answered and not yet taken (5,000 rows, or the flow's
task runner's CHUNK_WORKERS chunks if they hold more), so memory stays that of a few
thousand answers, whatever the number of rows. Every request goes through the
same `Asker` as a task's: the same journal, limiter, retries, budget, progress and Weave trace.

Left to the tasks: models under a rate limit shared across processes (taken through the
Prefect server, which is not ready yet), the local LLM unless it is already running (the
flow starts it), and judges (a task grades the answers it takes). If the run ends without
taking every chunk (the flow failed), `close` halts the run and waits for the thread: nothing
is sent once the command returns, and what was answered is in the journal for the next run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future

from evalflow.config import Generation, ModelSpec
from evalflow.dataset import Row
from evalflow.errors import NotAskedEarly
from evalflow.inference import Answer, Asker, Journal, answer_chunk
from evalflow.plan import RunPlan
from evalflow.prompting import chunk_requests
from evalflow.run_context import RunContext
from evalflow.targets import LOCAL_LLM_ENV, Target


def answers_early(spec: ModelSpec) -> bool:
    """Whether a model's rows can be asked before Prefect is ready."""
    if spec.limits.rpm is not None:  # its shared limit lives on the Prefect server
        return False
    return spec.endpoint != "local" or bool(os.environ.get(LOCAL_LLM_ENV))


class EarlyAnswers:
    """A run's chunks asked ahead of its flow, handed to the flow's tasks (`take`)."""

    def __init__(self, plan: RunPlan, run: RunContext) -> None:
        self._plan = plan
        self._run = run
        self._targets = [Target.of(spec, None) for spec in plan.specs if answers_early(spec)]
        self._models = {target.spec.name for target in self._targets}
        self._chunks: dict[tuple[str, int], Future[list[Answer]]] = {}
        self._lock = threading.Lock()
        self._room = threading.Semaphore(plan.early_chunks())
        self._closing = False
        self._ended = False
        self._thread = threading.Thread(target=self._main, name="evalflow-early", daemon=True)

    def start(self) -> EarlyAnswers:
        if self._targets:
            self._thread.start()
        return self

    def wait_sending(self, timeout: float = 1.0) -> None:
        """Wait (at most `timeout`) until the first request is on its way: what the user waits
        for first gets the CPU before the flow's imports, which have seconds to spare."""
        deadline = time.monotonic() + timeout
        while self._thread.is_alive() and time.monotonic() < deadline:
            progress = self._run.progress.snapshot()
            if progress["waiting"] or progress["done"]:  # a request holds or awaits a slot
                return
            time.sleep(0.005)

    def _future(self, model: str, chunk_no: int) -> Future[list[Answer]]:
        with self._lock:
            future = self._chunks.get((model, chunk_no))
            if future is None:
                future = self._chunks[(model, chunk_no)] = Future()
                if self._ended:  # the thread is gone: this chunk was not asked
                    future.set_exception(NotAskedEarly())
            return future

    def take(self, model: str, chunk_no: int) -> list[Answer] | None:
        """The answers to a chunk asked early, once they are all in (None: not asked early;
        the task asks). Raises what asking them raised (a fatal answer)."""
        if model not in self._models or self._closing:
            return None
        future = self._future(model, chunk_no)
        try:
            return future.result()
        except NotAskedEarly:
            return None
        finally:
            with self._lock:
                self._chunks.pop((model, chunk_no), None)
            self._room.release()

    def _main(self) -> None:
        try:
            asyncio.run(self._ask_all())
        finally:
            # Whatever was not asked (the run closing, or a failure of this thread) is left
            # to the tasks: a task never waits for a chunk nobody asks.
            with self._lock:
                self._ended = True
                for future in self._chunks.values():
                    if not future.done():
                        future.set_exception(NotAskedEarly())

    def _in_order(self) -> Iterator[tuple[Target, int, list[Row]]]:
        """Every (model, chunk) asked early, in the order the flow submits its tasks."""
        for target in self._targets:
            for chunk_no, rows in enumerate(self._plan.chunks()):
                yield target, chunk_no, rows

    async def _ask_all(self) -> None:
        loop = asyncio.get_running_loop()
        asking: set[asyncio.Task[None]] = set()
        for target, chunk_no, rows in self._in_order():
            await loop.run_in_executor(None, self._room.acquire)
            if self._closing:
                break
            task = asyncio.create_task(self._ask_chunk(target, chunk_no, rows))
            asking.add(task)
            task.add_done_callback(asking.discard)
        if asking:
            await asyncio.wait(asking)

    async def _ask_chunk(self, target: Target, chunk_no: int, rows: list[Row]) -> None:
        future = self._future(target.spec.name, chunk_no)
        try:
            requests = chunk_requests(rows, self._plan.suite, target.spec)
            answers = await answer_chunk(
                requests.asked,
                target,
                requests.messages,
                requests.generation,
                self._plan.suite.name,
                self._run,
                Journal(self._run.journal_path(target.spec.name, chunk_no)),
                epochs=requests.epochs,
            )
        except BaseException as exc:  # a fatal answer: the run sends nothing more
            self._run.budget.halt("the run failed")
            future.set_exception(exc)
        else:
            future.set_result(answers)

    def close(self) -> None:
        """Stop asking and wait for the thread (the run ended: taken or not, no chunk is asked
        after this); a chunk not taken has its answers in the journal."""
        self._closing = True
        if not self._thread.is_alive():
            return
        self._thread.join(timeout=0.5)  # every chunk taken: the thread is ending
        if self._thread.is_alive():
            self._run.budget.halt("the run ended")
            self._room.release()  # wake the thread if it waits for room
            self._thread.join()


@contextlib.contextmanager
def asking_early(plan: RunPlan, run: RunContext) -> Iterator[EarlyAnswers]:
    """Ask the run's rows from now on, for its flow's tasks to take; stop when the body ends."""
    early = EarlyAnswers(plan, run)
    run.early = early
    try:
        yield early.start()
    finally:
        run.early = None
        early.close()


class Answered(Asker):
    """An Asker whose answers are in hand (asked early): `ask` hands each request its own."""

    def __init__(self, target: Target, answers: list[Answer], suite: str, run: RunContext):
        super().__init__(target, Generation(), suite, run)
        self._given = {(answer.index, answer.epoch): answer for answer in answers}

    async def __aenter__(self) -> Answered:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def ask(self, row: Row, messages: list[dict[str, str]], epoch: int = 0) -> Answer:
        return self._given[(row.index, epoch)]

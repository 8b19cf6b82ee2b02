"""One run, one context: its identity, budget, live progress and journal location.

The flow creates it (`open_run`) and passes it down to every task; nothing about a run lives
in module globals, so two runs in one process keep their own budgets and counters. Only the
per-endpoint limiters (evalflow/limiter.py) are shared between runs, on purpose: they stand
for the endpoint's limits. Whoever started the flow can watch its progress through `watching()`,
a ContextVar of the caller's thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from evalflow.budget import RunBudget
from evalflow.errors import BudgetExceededError
from evalflow.plan import RunPlan, RunRequest
from evalflow.progress import Progress
from evalflow.runs import run_dir, run_lock, safe_name, save_parameters
from evalflow.storage import Location

if TYPE_CHECKING:
    from evalflow.early_answers import EarlyAnswers


@dataclass
class RunContext:
    """What belongs to one run while it runs."""

    run_id: str
    budget: RunBudget = field(default_factory=RunBudget)
    progress: Progress = field(default_factory=Progress)
    fresh: bool = False  # answers in the journal are not reused
    # The run's rows asked before its flow started (`evalflow run`), for its tasks to take.
    early: EarlyAnswers | None = field(default=None, repr=False, compare=False)

    @property
    def folder(self) -> Location:
        return run_dir(self.run_id)

    def stop_if_over_budget(self) -> None:
        """After the answers are saved: fail the run if it stopped short of its rows."""
        if reason := self.budget.exceeded():
            raise BudgetExceededError(
                f"the run stopped starting requests past {reason}. What was answered is saved "
                f"in {self.folder}, flagged incomplete; no leaderboard was published. Run the "
                f"same command again (with a larger budget) to finish only the missing rows."
            )

    def journal_path(self, model: str, chunk_no: int) -> Location:
        """Where a model's answers to a chunk are saved (any model name stays inside)."""
        return self.folder / "answers" / safe_name(model) / f"{chunk_no}.jsonl"

    def judgement_path(self, scorer: str, model: str, chunk_no: int) -> Location:
        """Where a judge scorer's gradings of a model's answers to a chunk are saved."""
        return (
            self.folder / "judgements" / safe_name(scorer) / safe_name(model) / f"{chunk_no}.jsonl"
        )


@dataclass
class RunWatch:
    """Filled with the run's context once it starts: how a caller (the CLI) reads progress.
    A caller that opened the run itself (`opened`, the CLI: to ask rows before the flow
    starts) hands it to the flow: the flow's `open_run` of the same run id uses it."""

    run: RunContext | None = None
    opened: RunContext | None = None
    plan: RunPlan | None = None  # the opened run's plan


def handed_plan(request: RunRequest) -> RunPlan | None:
    """The plan of the run a caller opened for this request (`RunWatch.opened`), if any: the
    flow it starts runs that very plan (the same run id, the dataset read once)."""
    watcher = _WATCH.get()
    if watcher is None or watcher.plan is None or watcher.opened is None:
        return None
    same = watcher.plan.request.model_dump(exclude={"suite"}) == request.model_dump(
        exclude={"suite"}
    )
    return watcher.plan if same else None


_WATCH: ContextVar[RunWatch | None] = ContextVar("evalflow_run_watch", default=None)


@contextmanager
def watching(watcher: RunWatch) -> Iterator[RunWatch]:
    """Watch the run the body starts in this thread: `watcher.run` once it has started."""
    token = _WATCH.set(watcher)
    try:
        yield watcher
    finally:
        _WATCH.reset(token)


@contextmanager
def open_run(plan: RunPlan) -> Iterator[RunContext]:
    """Hold the run id (one process at a time), save its parameters, and give the run its own
    budget and progress. On a failure the budget halts: the run's chunks start nothing more.
    Inside a caller's `watching` whose watch holds this run already opened, that run is used
    (its id is held and its parameters saved by the caller's own `open_run`)."""
    watcher = _WATCH.get()
    opened = watcher.opened if watcher is not None else None
    if opened is not None and opened.run_id == plan.run_id:
        try:
            yield opened
        except BaseException:
            opened.budget.halt("the run failed")
            raise
        return
    request = plan.request
    total = len(plan.rows) * len(plan.specs) * plan.suite.epochs
    with run_lock(plan.run_id) as hold:
        save_parameters(plan.run_id, plan.parameters)
        run = RunContext(
            plan.run_id,
            RunBudget(total, request.max_tokens, request.max_error_fraction, request.max_cost),
            Progress(total=total),
            request.fresh,
        )
        hold.on_lost = run.budget.halt  # another process took the run over: send nothing more
        if watcher is not None:
            watcher.run = run
        try:
            yield run
        except BaseException:
            run.budget.halt("the run failed")
            raise

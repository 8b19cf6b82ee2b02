"""The nightly's fan-out, as plain Python: one child evaluation per (suite, model), which
finished children are started again, and what a failed night says.

The nightly (flows/nightly.py) starts each child as a flow run of the `evaluate` deployment on
the work pool and polls their states (tasks/fanout.py); this module decides what a final
state means. The retry rule:

* CRASHED (its process or machine died, or the lost-run automation found its heartbeats
  stopped): started again. The new flow run has the same run id, so it reuses every answer the
  journal saved and pays again only for the requests that were in flight.
* FAILED because of a user's mistake, one that the same parameters would meet again (a bad
  suite, model, row or key, an unreachable endpoint, a spent budget: USER_MISTAKES): not
  started again.
* FAILED for any other reason (a chunk past its error budget after 5xx errors, a run id still
  held by a lost worker's lease, the Weave store, an unexpected exception): started again.
* CANCELLED (a person cancelled it): not started again.

Each child is started at most 1 + `retries` times; one child failing does not stop the others.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from evalflow import errors
from evalflow.errors import (
    BudgetExceededError,
    ConfigError,
    DatasetError,
    EndpointUnreachableError,
    EvaluationsFailedError,
    FatalRequestError,
    RunNotFoundError,
    StorageError,
)

# Failures the same parameters meet again: starting the child again would only pay again.
USER_MISTAKES: tuple[type[errors.EvalflowError], ...] = (
    ConfigError,
    DatasetError,
    FatalRequestError,
    EndpointUnreachableError,
    BudgetExceededError,
    RunNotFoundError,
    StorageError,
)
COMPLETED, FAILED, CRASHED, CANCELLED = "COMPLETED", "FAILED", "CRASHED", "CANCELLED"
FINAL = {COMPLETED, FAILED, CRASHED, CANCELLED}
# Prefect's failed-state message: "Flow run encountered an exception: ConfigError: ..."
_EXCEPTION = re.compile(r"(?:^|:\s)([A-Za-z_][A-Za-z0-9_]*(?:Error|Exception|Stop)):\s")


@dataclass
class Child:
    """One (suite, model) evaluation of the night and the flow runs that tried it."""

    suite: str
    model: str
    flow_runs: list[str] = field(default_factory=list)  # oldest first
    state: str | None = None  # the last flow run's state type, once final
    message: str = ""  # the last flow run's state message
    run_id: str | None = None  # evalflow's run id, once completed

    @property
    def name(self) -> str:
        return f"{self.suite} / {self.model}"

    @property
    def succeeded(self) -> bool:
        return self.state == COMPLETED

    @property
    def attempts(self) -> int:
        return len(self.flow_runs)


def plan_children(suites: list[str], models: list[str]) -> list[Child]:
    """Every (suite, model) pair, suite by suite."""
    return [Child(suite, model) for suite in suites for model in models]


def exception_class(message: str) -> type[BaseException] | None:
    """The evalflow exception class a failed state's message names (None for any other)."""
    match = _EXCEPTION.search(message or "")
    found = getattr(errors, match.group(1), None) if match else None
    return found if isinstance(found, type) and issubclass(found, BaseException) else None


def is_user_mistake(message: str) -> bool:
    """Whether a failed child's message names one of USER_MISTAKES."""
    found = exception_class(message)
    return found is not None and issubclass(found, USER_MISTAKES)


def should_retry(child: Child, retries: int) -> bool:
    """Whether a child whose last flow run ended (child.state) is started again."""
    if child.attempts > retries:
        return False
    if child.state == CRASHED:
        return True
    return child.state == FAILED and not is_user_mistake(child.message)


def night_failed(children: list[Child]) -> EvaluationsFailedError | None:
    """The error naming the (suite, model) pairs that failed after their retries (None when
    every child completed)."""
    failed = [c for c in children if not c.succeeded]
    if not failed:
        return None
    lines = "; ".join(
        f"{c.name}: {(c.state or 'not run').lower()} after {c.attempts} attempt(s)"
        f"{': ' + c.message.splitlines()[0][:200] if c.message else ''}"
        for c in failed
    )
    return EvaluationsFailedError(
        f"{len(failed)} of {len(children)} evaluation(s) failed: {lines}. The others "
        f"completed; see each flow run's logs, then run the nightly again (it reuses every "
        f"saved answer)"
    )

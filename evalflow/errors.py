"""One exception family. Every message says what went wrong, where, and what to do.

Every error evalflow raises on purpose is an EvalflowError; the CLI prints it as one line,
without a traceback, and exits 1. The tree (tests/unit/test_errors.py keeps it true):

* EvalflowError
  + ConfigError - a suite, the model registry or a setting is invalid
  | + UnknownNameError - a suite, model or other named thing does not exist
  + DatasetError - rows are missing, malformed or of the wrong type
  + EndpointError - an endpoint could not be started, reached or used
  | + WeightsError - the local model weights are missing or corrupt
  | + FatalRequestError - a refusal no retry can fix (400, 401, 403, 404, 422, no quota)
  | + EndpointUnreachableError - refused, unresolved or silent, found before any row is sent
  | + MalformedResponseError - a 200 whose body is no chat completion (retried; then the
  |                            row keeps it as its error)
  + WeaveStoreError - the Weave backend could not be set up or used
  + BudgetExceededError - a run passed its token or error budget
  | + BudgetStop - a row not sent past the budget (its error class; never shown to a user)
  + RunNotFoundError - a run id names no saved run
  + RunInProgressError - another process holds the run id
  + StorageError - evalflow cannot write under EVALFLOW_HOME (disk full, read-only)
  + ChunkFailedError - a chunk took the run past its error budget (its task fails)
  + HistoryError - the evaluations' history cannot be read, or holds nothing to show
  + AlertSetupError - the regression alert (webhook block, automation) cannot be set up
  + EvaluationsFailedError - some of the nightly's evaluations failed after their retries
  + LostRunSetupError - the lost-run automation cannot be set up on the Prefect server
  + NotAskedEarly - a chunk `evalflow run` did not ask early (its task asks it; never shown)
"""

from __future__ import annotations


class EvalflowError(Exception):
    """Base of every error evalflow raises on purpose. The CLI prints it without a traceback."""


class ConfigError(EvalflowError):
    """A suite, a model registry or a setting is invalid."""


class DatasetError(EvalflowError):
    """Rows of a dataset are missing, malformed or of the wrong type."""


class UnknownNameError(ConfigError):
    """A suite, model or other named thing does not exist."""

    def __init__(self, kind: str, name: str, known: list[str]) -> None:
        listed = ", ".join(sorted(known)) or "(none)"
        super().__init__(f"unknown {kind} {name!r}; known {kind}s: {listed}")
        self.kind = kind
        self.name = name
        self.known = known


class EndpointError(EvalflowError):
    """An endpoint could not be started, reached or used."""


class WeightsError(EndpointError):
    """The local model weights are missing or corrupt."""


class FatalRequestError(EndpointError):
    """The endpoint refused a request in a way no retry can fix (401, 403, 404, 400, quota)."""


class WeaveStoreError(EvalflowError):
    """The Weave backend could not be set up or used."""


class BudgetExceededError(EvalflowError):
    """A run passed its token or error budget."""


class RunNotFoundError(EvalflowError):
    """A run id names no saved run."""


class MalformedResponseError(EndpointError):
    """The endpoint answered 200 with a body that is not a chat completion."""


class RunInProgressError(EvalflowError):
    """Another process is running the same run id: refused before anything is sent."""


class StorageError(EvalflowError):
    """evalflow cannot write under EVALFLOW_HOME (disk full, read-only): the run stops at once,
    keeping every answer already written."""


class EndpointUnreachableError(EndpointError):
    """An endpoint refused the connection, could not be resolved, or did not answer in time,
    found before any row was sent."""


class ChunkFailedError(EvalflowError):
    """A chunk's failed rows took the run past its error budget: the chunk's task fails (the
    Prefect UI shows it), its answers already kept so the run saves them before failing."""


class BudgetStop(BudgetExceededError):
    """A row not sent because the run's budget is spent: recorded as the row's error class,
    never raised to a user."""


class HistoryError(EvalflowError):
    """The history of finished evaluations (EVALFLOW_HOME/history) cannot be read (the message
    names the file), or holds nothing to show."""


class AlertSetupError(EvalflowError):
    """The regression alert (its webhook notification block and automation) cannot be set up:
    no Prefect server, a webhook that is not an http(s) URL, or a server that refused it."""


class EvaluationsFailedError(EvalflowError):
    """Some of the nightly's (suite, model) evaluations failed after their retries; the
    message names each, the others completed."""


class LostRunSetupError(EvalflowError):
    """The automation that marks flow runs whose heartbeats stopped as crashed cannot be set
    up: no Prefect server, or a server that refused it."""


class NotAskedEarly(EvalflowError):
    """Not a user's error: a chunk `evalflow run` did not ask before its flow started (the
    run closing, or the early answers' thread gone); the flow's task asks it itself."""

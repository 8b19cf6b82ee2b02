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
  | + MalformedResponseError - a 200 whose body is no chat completion (retried; then the
  |                            row keeps it as its error)
  + WeaveStoreError - the Weave backend could not be set up or used
  + BudgetExceededError - a run passed its token or error budget
  + RunNotFoundError - a run id names no saved run
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

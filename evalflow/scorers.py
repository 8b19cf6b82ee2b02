"""Built-in scorers, as weave ops, and loading any weave op or weave.Scorer by dotted path."""

from __future__ import annotations

import importlib
import math
import re
import string
import warnings
from collections.abc import Callable
from typing import Any

import weave

from evalflow.config import ScorerSpec
from evalflow.errors import ConfigError

# weave.Scorer's pydantic schema meets a lock inside weave itself; the warning is weave's, and
# says nothing about a user's scorer.
warnings.filterwarnings("ignore", message=r".*allocate_lock.*", category=UserWarning)

_PUNCT = str.maketrans("", "", string.punctuation)
_NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?|[-+]?\.\d+")


def normalize(text: Any) -> str:
    """Lower case, no punctuation, single spaces."""
    return " ".join(str(text).lower().translate(_PUNCT).split())


def first_number(text: Any) -> float | None:
    match = _NUMBER.search(str(text))
    if match is None:
        return None
    try:
        return float(match.group().replace(",", ""))
    except ValueError:
        return None


def exact_match_value(target: Any, output: Any) -> bool:
    return str(output).strip().rstrip(".").strip().lower() == str(target).strip().lower()


def contains_value(target: Any, output: Any) -> bool:
    wanted = normalize(target)
    return bool(wanted) and f" {wanted} " in f" {normalize(output)} "


def numeric_value(target: Any, output: Any, tolerance: float) -> bool:
    got, want = first_number(output), first_number(target)
    if got is None or want is None:
        return False
    return math.isclose(got, want, abs_tol=tolerance, rel_tol=0.0)


def stats(values: list[bool | float]) -> dict[str, float | int]:
    """Mean, standard error and count of the scored rows."""
    n = len(values)
    if n == 0:
        return {"mean": float("nan"), "stderr": float("nan"), "count": 0}
    mean = sum(float(v) for v in values) / n
    var = sum((float(v) - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return {"mean": mean, "stderr": math.sqrt(var / n), "count": n}


class RowScorer(weave.Scorer):
    """A built-in scorer. A row with no output (an infrastructure error) gets no score and
    stays out of the mean, its standard error and its count; `excluded` counts such rows."""

    kind: str
    tolerance: float = 0.0
    pattern: str | None = None

    def check(self, target: Any, output: str) -> bool:
        if self.kind == "exact_match":
            return exact_match_value(target, output)
        if self.kind == "normalized_contains":
            return contains_value(target, output)
        if self.kind == "numeric_match":
            return numeric_value(target, output, self.tolerance)
        return re.search(self.pattern or "", output) is not None

    @weave.op
    def score(self, *, output: Any, target: Any) -> dict[str, bool | None]:  # type: ignore[override]
        return {"correct": None if output is None else self.check(target, str(output))}

    @weave.op
    def summarize(self, score_rows: list) -> dict | None:
        return correct_summary([r.get("correct") if r else None for r in score_rows])


def correct_summary(values: list[bool | None]) -> dict[str, Any]:
    """A built-in scorer's summary: stats of the scored rows, and how many had no score."""
    scored: list[bool | float] = [v for v in values if v is not None]
    return {"correct": {**stats(scored), "excluded": len(values) - len(scored)}}


def make_scorer(spec: ScorerSpec) -> Callable[..., Any] | weave.Scorer:
    """The weave scorer a suite's scorer spec names."""
    if spec.kind == "python":
        return load_python_scorer(spec)
    if spec.kind == "regex":
        if not spec.pattern:
            raise ConfigError(f"scorer {spec.label!r}: kind regex needs a pattern")
        try:
            re.compile(spec.pattern)
        except re.error as exc:
            raise ConfigError(
                f"scorer {spec.label!r}: bad regex {spec.pattern!r} ({exc})"
            ) from None
    return RowScorer(
        name=spec.label, kind=spec.kind, tolerance=spec.tolerance, pattern=spec.pattern
    )


def load_python_scorer(spec: ScorerSpec) -> Callable[..., Any] | weave.Scorer:
    if not spec.path or "." not in spec.path:
        raise ConfigError(f"scorer {spec.label!r}: kind python needs path: module.attribute")
    module_name, _, attribute = spec.path.rpartition(".")
    try:
        found = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"scorer {spec.path!r}: cannot import it ({exc})") from None
    if isinstance(found, type) and issubclass(found, weave.Scorer):
        return found()
    if isinstance(found, weave.Scorer):
        return found
    if callable(found):
        return found if hasattr(found, "resolve_fn") else weave.op(found)
    raise ConfigError(f"scorer {spec.path!r}: not a weave op, function or weave.Scorer")


def check_scorers(suite: Any, fields: set[str]) -> None:
    """Every scorer of the suite can be built (placeholder until the full check lands)."""
    for spec in suite.scorers:
        make_scorer(spec)

"""What changed tonight: each (suite, model) evaluated tonight against its previous finished
evaluation of the same suite digest (the same rows, prompt and scorers), paired on the rows of
both runs' saved results (evalflow/compare.py), Holm-corrected over every suite x model x
scorer compared tonight.

Plain Python and pandas: the nightly flow emits the Prefect events and the artifact
(tasks/regressions.py). A comparison's verdict is `regression` (a significant drop), `improvement`
(a significant rise), `no change`, or `n/a` (no row scored on both sides).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from evalflow.compare import compare_sides, load_side
from evalflow.errors import ConfigError, RunNotFoundError
from evalflow.figures import figure, p_value
from evalflow.history import read_history
from evalflow.stats import holm_adjusted
from evalflow.tables import markdown

REGRESSION = "regression"
IMPROVEMENT = "improvement"
NO_CHANGE = "no change"
NOT_TESTED = "n/a"
REGRESSION_EVENT = "evalflow.regression.detected"
IMPROVEMENT_EVENT = "evalflow.improvement.detected"
MAX_ROW_IDS = 200  # row ids listed in an event's payload (the counts are always whole)


@dataclass
class Change:
    """One scorer of one (suite, model): tonight's run (after) against the previous (before),
    on the rows both answered; delta = after - before."""

    suite: str
    model: str
    scorer: str
    before_run: str
    after_run: str
    n: int
    mean_before: float
    mean_after: float
    delta: float
    low: float
    high: float
    p: float
    test: str
    worse: list[str]  # row ids scored lower tonight
    better: list[str]  # row ids scored higher tonight
    model_changed: bool = False  # the registry entry (model id, endpoint, generation) differs
    p_holm: float = math.nan
    verdict: str = NO_CHANGE


@dataclass(frozen=True)
class NotCompared:
    """A suite (or one of its models) tonight that has nothing to be compared with, and why."""

    suite: str
    model: str | None
    reason: str


@dataclass
class Night:
    """Every comparison of one night, judged together."""

    alpha: float
    min_effect: float
    changes: list[Change] = field(default_factory=list)
    not_compared: list[NotCompared] = field(default_factory=list)

    @property
    def regressions(self) -> list[Change]:
        return [c for c in self.changes if c.verdict == REGRESSION]

    @property
    def improvements(self) -> list[Change]:
        return [c for c in self.changes if c.verdict == IMPROVEMENT]


def previous_record(history: pd.DataFrame, record: Mapping[Any, Any]) -> pd.Series | None:
    """The model's latest finished evaluation before `record` on the same suite digest (and
    Weave project), from another run; None for the first one."""
    earlier = history[
        (history["model"] == record["model"])
        & (history["suite_digest"] == record["suite_digest"])
        & (history["weave_project"] == record["weave_project"])
        & (history["run_id"] != record["run_id"])
        & (history["finished"] < record["finished"])
    ]
    return None if earlier.empty else earlier.iloc[-1]


def _changes(suite: str, model: str, before: str, after: str, model_changed: bool) -> list[Change]:
    result = compare_sides(load_side(before, model), load_side(after, model))
    changes = []
    for scorer in result["scorers"]:
        flipped = scorer["flipped"]
        changes.append(
            Change(
                suite=suite,
                model=model,
                scorer=scorer["scorer"],
                before_run=before,
                after_run=after,
                n=scorer["n"],
                mean_before=scorer["mean_a"],
                mean_after=scorer["mean_b"],
                delta=scorer["delta"],
                low=scorer["ci_low"],
                high=scorer["ci_high"],
                p=scorer["p"],
                test=scorer["test"],
                worse=[str(f["row_id"]) for f in flipped if f["score_b"] < f["score_a"]],
                better=[str(f["row_id"]) for f in flipped if f["score_b"] > f["score_a"]],
                model_changed=model_changed,
            )
        )
    return changes


def compare_with_previous(suite: str, run_id: str) -> tuple[list[Change], list[NotCompared]]:
    """Each model of a finished full run of the suite against its previous finished
    evaluation of the same suite digest, per scorer (unjudged: see judge)."""
    history = read_history(suite)
    tonight = history[history["run_id"] == run_id]
    if tonight.empty:
        reason = f"run {run_id} is not a finished full evaluation (a limit, or stopped): no history"
        return [], [NotCompared(suite, None, reason)]
    changes: list[Change] = []
    skipped: list[NotCompared] = []
    for record in tonight.to_dict("records"):
        model = str(record["model"])
        previous = previous_record(history, record)
        if previous is None:
            reason = "first evaluation of these rows, prompt and scorers"
            skipped.append(NotCompared(suite, model, reason))
            continue
        before = str(previous["run_id"])
        try:
            changed = previous["model_digest"] != record["model_digest"]
            changes += _changes(suite, model, before, run_id, bool(changed))
        except (RunNotFoundError, ConfigError) as exc:
            skipped.append(NotCompared(suite, model, f"previous run {before}: {exc}"))
    return changes, skipped


def judge(changes: Sequence[Change], alpha: float = 0.05, min_effect: float = 0.0) -> None:
    """Holm-adjust the p-values of every comparison together and set each verdict: a change
    is significant when its adjusted p is at most alpha and |delta| at least min_effect."""
    for change, adjusted in zip(changes, holm_adjusted([c.p for c in changes]), strict=True):
        change.p_holm = adjusted
        if math.isnan(adjusted):
            change.verdict = NOT_TESTED
        elif adjusted <= alpha and abs(change.delta) >= min_effect and change.delta != 0:
            change.verdict = REGRESSION if change.delta < 0 else IMPROVEMENT
        else:
            change.verdict = NO_CHANGE


@dataclass(frozen=True)
class Evaluated:
    """One evaluation of the night: a suite's run of all its models (model None), or one
    (suite, model)'s run when the nightly fans out; run_id None when it failed."""

    suite: str
    run_id: str | None
    model: str | None = None


def compare_night(
    runs: Mapping[str, str | None] | Sequence[Evaluated],
    alpha: float = 0.05,
    min_effect: float = 0.0,
) -> Night:
    """The night's report from its runs: suite -> run id (None when the suite failed), or the
    night's evaluations, one per (suite, model) when the nightly fans out."""
    night = Night(alpha=alpha, min_effect=min_effect)
    evaluated = (
        [Evaluated(suite, run_id) for suite, run_id in runs.items()]
        if isinstance(runs, Mapping)
        else list(runs)
    )
    for entry in evaluated:
        if entry.run_id is None:
            what = "its evaluation failed" if entry.model else "the suite's evaluation failed"
            night.not_compared.append(NotCompared(entry.suite, entry.model, what))
            continue
        changes, skipped = compare_with_previous(entry.suite, entry.run_id)
        night.changes += changes
        night.not_compared += skipped
    judge(night.changes, alpha, min_effect)
    return night


# ---- how people and machines read it ---------------------------------------------------------


def signed(delta: float, low: float, high: float) -> str:
    """`-0.200 [-0.247, -0.153]` (3 decimals, signed; no interval when there is none)."""
    if math.isnan(delta):
        return "-"
    if math.isnan(low) or math.isnan(high):
        return f"{delta:+.3f}"
    return f"{delta:+.3f} [{low:+.3f}, {high:+.3f}]"


def headline(change: Change) -> str:
    """One line: `qa / sim-good / exact_match: 0.900 -> 0.700, delta -0.200 [...], p=...`."""
    return (
        f"{change.suite} / {change.model} / {change.scorer}: {figure(change.mean_before)} -> "
        f"{figure(change.mean_after)}, delta {signed(change.delta, change.low, change.high)}, "
        f"p={p_value(change.p_holm)} (Holm), n={change.n}, {len(change.worse)} row(s) worse, "
        f"{len(change.better)} better (runs {change.before_run} -> {change.after_run})"
    )


def _row(change: Change) -> dict[str, Any]:
    """A comparison as a row of the artifact's table: seven narrow columns, the verdict first
    (the UI's markdown table scrolls sideways past its width; rows worse/better are in the
    verdicts' lines above it)."""
    verdict = change.verdict
    if verdict == REGRESSION:
        verdict = "**REGRESSION**"
    elif verdict == IMPROVEMENT:
        verdict = "**improvement**"
    return {
        "verdict": verdict,
        "suite / model": f"{change.suite} / {change.model}"
        + (" (entry changed)" if change.model_changed else ""),
        "scorer": change.scorer,
        "before -> tonight": f"{figure(change.mean_before)} -> {figure(change.mean_after)}",
        "delta [95% CI]": signed(change.delta, change.low, change.high),
        "p (Holm)": p_value(change.p_holm),
        "n": change.n,
    }


def _where(skipped: NotCompared) -> str:
    return skipped.suite + (f" / {skipped.model}" if skipped.model else "")


def what_changed_markdown(night: Night, title: str = "What changed tonight") -> str:
    """The nightly's "what changed tonight" artifact: the verdicts first, then every
    comparison (delta, interval, Holm-adjusted p, verdict), then what was not compared."""
    lines = [f"# {title}", ""]
    regressions, improvements = night.regressions, night.improvements
    if not regressions and not improvements:
        count = len(night.changes)
        lines.append(f"**No change**: no significant difference in {count} comparison(s).")
    for label, found in (("Regression", regressions), ("Improvement", improvements)):
        lines += [f"- **{label}**: {headline(c)}" for c in found]
    lines += [
        "",
        f"Each model against its previous finished evaluation of the same rows, prompt and "
        f"scorers, paired row by row (McNemar's exact test for true/false scores, paired t "
        f"otherwise); p Holm-adjusted over the {len(night.changes)} comparison(s) of the night, "
        f"alpha {night.alpha:g}, minimum effect {night.min_effect:g}. delta = tonight - before.",
        "",
    ]
    if night.changes:
        lines += [markdown([_row(c) for c in night.changes]), ""]
    if night.not_compared:
        lines += ["Not compared:", ""]
        lines += [f"- {_where(n)}: {n.reason}" for n in night.not_compared]
        lines.append("")
    return "\n".join(lines)


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else value


def event_of(change: Change) -> dict[str, Any]:
    """The Prefect event a significant change emits (emit_event's keyword arguments)."""
    name = REGRESSION_EVENT if change.verdict == REGRESSION else IMPROVEMENT_EVENT
    return {
        "event": name,
        "resource": {
            "prefect.resource.id": f"evalflow.suite.{change.suite}.model.{change.model}",
            "prefect.resource.name": f"{change.suite}: {change.model}",
            "evalflow.suite": change.suite,
            "evalflow.model": change.model,
            "evalflow.scorer": change.scorer,
        },
        "payload": {
            "suite": change.suite,
            "model": change.model,
            "scorer": change.scorer,
            "delta": _finite(change.delta),
            "ci_low": _finite(change.low),
            "ci_high": _finite(change.high),
            "p": _finite(change.p),
            "p_holm": _finite(change.p_holm),
            "test": change.test,
            "n": change.n,
            "mean_before": _finite(change.mean_before),
            "mean_after": _finite(change.mean_after),
            "before_run": change.before_run,
            "after_run": change.after_run,
            "flipped": len(change.worse) + len(change.better),
            "rows_worse": change.worse[:MAX_ROW_IDS],
            "rows_better": change.better[:MAX_ROW_IDS],
            "rows_listed_max": MAX_ROW_IDS,
            "model_changed": change.model_changed,
            "message": headline(change),
        },
    }

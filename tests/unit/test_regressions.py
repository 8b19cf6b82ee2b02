"""The night's verdicts: Holm's correction over every comparison of the night, the minimum
effect, and the "what changed" markdown."""

from __future__ import annotations

import math

import pytest

from evalflow.regressions import (
    IMPROVEMENT,
    NO_CHANGE,
    NOT_TESTED,
    REGRESSION,
    Change,
    Night,
    event_of,
    judge,
    what_changed_markdown,
)


def change(suite: str, delta: float, p: float) -> Change:
    return Change(
        suite=suite,
        model="m",
        scorer="exact_match",
        before_run=f"{suite}-20250101-aaaa",
        after_run=f"{suite}-20250102-bbbb",
        n=100,
        mean_before=0.8,
        mean_after=0.8 + delta,
        delta=delta,
        low=delta - 0.05,
        high=delta + 0.05,
        p=p,
        test="mcnemar",
        worse=["r1"] if delta < 0 else [],
        better=["r2"] if delta > 0 else [],
    )


def test_holm_over_the_whole_night_decides_what_is_significant() -> None:
    # Alone, p=0.03 would pass at 0.05; among three comparisons Holm asks 0.05/2 of it.
    night = [change("a", -0.2, 0.001), change("b", -0.1, 0.03), change("c", 0.1, 0.2)]
    judge(night, alpha=0.05)
    assert [c.verdict for c in night] == [REGRESSION, NO_CHANGE, NO_CHANGE]
    assert [c.p_holm for c in night] == [0.003, 0.06, 0.2]
    alone = [change("b", -0.1, 0.03)]
    judge(alone, alpha=0.05)
    assert alone[0].verdict == REGRESSION


def test_a_minimum_effect_keeps_small_significant_changes_quiet() -> None:
    night = [change("a", -0.01, 1e-6), change("b", 0.2, 1e-6), change("c", 0.0, math.nan)]
    judge(night, alpha=0.05, min_effect=0.05)
    assert [c.verdict for c in night] == [NO_CHANGE, IMPROVEMENT, NOT_TESTED]


def test_the_markdown_says_no_change_and_lists_every_comparison() -> None:
    quiet = Night(alpha=0.05, min_effect=0.0, changes=[change("a", 0.0, 1.0)])
    judge(quiet.changes)
    text = what_changed_markdown(quiet)
    assert "**No change**: no significant difference in 1 comparison(s)." in text
    row = "| no change | a / m | exact_match | 0.800 -> 0.800 | +0.000 [-0.050, +0.050] | 1.0000 |"
    assert row in text
    loud = Night(alpha=0.05, min_effect=0.0, changes=[change("a", -0.2, 1e-9)])
    judge(loud.changes)
    text = what_changed_markdown(loud)
    assert "No change" not in text
    assert "- **Regression**: a / m / exact_match: 0.800 -> 0.600, delta -0.200" in text
    assert "**REGRESSION**" in text


def test_the_event_names_suite_and_model_and_carries_the_figures() -> None:
    found = change("qa", -0.2, 1e-9)
    judge([found])
    event = event_of(found)
    assert event["event"] == "evalflow.regression.detected"
    assert event["resource"]["prefect.resource.id"] == "evalflow.suite.qa.model.m"
    payload = event["payload"]
    assert (
        payload["before_run"] == "qa-20250101-aaaa" and payload["after_run"] == "qa-20250102-bbbb"
    )
    assert payload["rows_worse"] == ["r1"] and payload["flipped"] == 1
    figures = (payload["delta"], payload["ci_low"], payload["ci_high"])
    assert figures == pytest.approx((-0.2, -0.25, -0.15))

"""The built-in scorers' value functions and the statistics of a column of scores."""

from __future__ import annotations

import math

import pytest

from evalflow.scorers import (
    contains_value,
    exact_match_value,
    first_number,
    normalize,
    numeric_value,
    stats,
)


@pytest.mark.parametrize(
    ("target", "output", "right"),
    [
        ("Paris", "Paris", True),
        ("Paris", " paris. ", True),
        ("4", "4", True),
        (4, "4", True),
        ("Paris", "Paris, France", False),
        ("Paris", "It is Paris", False),
        ("red", "", False),
    ],
)
def test_exact_match_ignores_case_spaces_and_a_final_period(
    target: object, output: object, right: bool
) -> None:
    assert exact_match_value(target, output) is right


@pytest.mark.parametrize(
    ("target", "output", "right"),
    [
        ("blue", "The sky is Blue!", True),
        ("New York", "it's new   york, I think", True),
        ("blue", "blueish", False),
        ("", "anything", False),
        ("red", None, False),
    ],
)
def test_contains_looks_for_the_whole_words_after_normalizing(
    target: object, output: object, right: bool
) -> None:
    assert contains_value(target, output) is right


@pytest.mark.parametrize(
    ("target", "output", "tolerance", "right"),
    [
        ("42", "The answer is 42.", 0.0, True),
        ("42", "42.0", 0.0, True),
        ("1,000", "1000 exactly", 0.0, True),
        ("3.14", "about 3.1", 0.05, True),
        ("3.14", "about 3.1", 0.01, False),
        ("-2", "minus: -2", 0.0, True),
        ("3", "three", 0.0, False),
        ("n/a", "3", 0.0, False),
    ],
)
def test_numeric_match_compares_the_first_numbers_within_the_tolerance(
    target: str, output: str, tolerance: float, right: bool
) -> None:
    assert numeric_value(target, output, tolerance) is right


def test_first_number_and_normalize() -> None:
    assert first_number("-2.5 and 3") == -2.5
    assert first_number("costs .5 dollars") == 0.5
    assert first_number("12,345 people") == 12345.0
    assert first_number("none at all") is None
    assert normalize("  Hello,   World! ") == "hello world"
    assert normalize(42) == "42"


def test_stats_are_the_mean_the_standard_error_and_the_count() -> None:
    assert stats([True, False, True, True]) == {"mean": 0.75, "stderr": 0.25, "count": 4}
    assert stats([0.5]) == {"mean": 0.5, "stderr": 0.0, "count": 1}
    empty = stats([])
    assert empty["count"] == 0 and math.isnan(empty["mean"]) and math.isnan(empty["stderr"])
    spread = stats([1.0, 2.0, 3.0, 4.0])
    assert spread["mean"] == 2.5
    assert spread["stderr"] == pytest.approx(math.sqrt((5 / 3) / 4))

"""evalflow.stats against scipy (a test-only dependency) on known tables and edge cases."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from scipy import stats as sp

from evalflow.stats import (
    compare_paired,
    describe,
    holm,
    holm_adjusted,
    mcnemar_exact,
    paired_bootstrap,
    paired_t,
    t_interval,
    t_quantile,
    t_two_sided_p,
    wilson_interval,
)


@pytest.mark.parametrize("df", [1, 2, 5, 9, 30, 219, 5000])
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_t_quantile_is_scipys(df: int, confidence: float) -> None:
    expected = sp.t.ppf(1 - (1 - confidence) / 2, df)
    assert t_quantile(confidence, df) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(("t", "df"), [(0.0, 3), (1.0, 1), (2.1, 12), (-3.5, 40), (8.0, 219)])
def test_t_p_value_is_scipys(t: float, df: int) -> None:
    assert t_two_sided_p(t, df) == pytest.approx(2 * sp.t.sf(abs(t), df), rel=1e-9, abs=1e-15)


@pytest.mark.parametrize(("k", "n"), [(0, 1), (1, 1), (0, 10), (10, 10), (3, 10), (61, 150)])
def test_wilson_is_scipys(k: int, n: int) -> None:
    expected = sp.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    low, high = wilson_interval(k, n)
    assert low == pytest.approx(expected.low, abs=1e-12)
    assert high == pytest.approx(expected.high, abs=1e-12)


def test_wilson_of_no_rows_is_nan() -> None:
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


@pytest.mark.parametrize(
    "values", [[0.2, 0.5, 0.9], [1.0, 2.0, 4.0, 8.0, 16.0], [0.3] * 5 + [0.7] * 3]
)
def test_mean_interval_is_scipys(values: list[float]) -> None:
    expected = sp.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=sp.sem(values))
    assert t_interval(values) == pytest.approx(expected, rel=1e-9)


def test_one_value_has_no_interval_and_equal_values_a_zero_width_one() -> None:
    one = describe([0.5])
    assert (one.mean, one.n) == (0.5, 1) and math.isnan(one.low) and math.isnan(one.high)
    same = describe([0.25] * 4)
    assert (same.low, same.high, same.stderr) == (0.25, 0.25, 0.0)
    # A true/false score: Wilson's interval, sensible at n = 1 and when every row is right.
    right = describe([True] * 40)
    assert right.binary and right.high == 1.0
    assert right.low == pytest.approx(sp.binomtest(40, 40).proportion_ci(method="wilson").low)
    single = describe([True])
    assert (single.low, single.high) == pytest.approx(wilson_interval(1, 1))


def test_a_figure_of_true_false_values_uses_wilson_and_of_numbers_t() -> None:
    values = [True] * 30 + [False] * 10
    figure = describe(values)
    assert figure.binary and figure.n == 40 and figure.mean == 0.75
    assert (figure.low, figure.high) == pytest.approx(wilson_interval(30, 40))
    numeric = describe([1.0] * 30 + [0.0] * 10)
    assert not numeric.binary
    assert (numeric.low, numeric.high) == pytest.approx(t_interval([1.0] * 30 + [0.0] * 10))


# McNemar: (b, c) = (A right only, B right only).
@pytest.mark.parametrize(
    ("b", "c"), [(0, 0), (1, 0), (0, 1), (5, 5), (12, 3), (3, 12), (20, 7), (1, 30), (250, 200)]
)
def test_mcnemar_exact_p_is_scipys_binomial_test(b: int, c: int) -> None:
    expected = 1.0 if b + c == 0 else sp.binomtest(min(b, c), b + c, 0.5).pvalue
    assert mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-12)


def test_mcnemar_on_the_peers_table() -> None:
    """lm-evaluation-harness issue 3831: n = 220, b = 13, c = 3 discordant rows."""
    assert mcnemar_exact(13, 3) == pytest.approx(sp.binomtest(3, 16, 0.5).pvalue)
    assert mcnemar_exact(13, 3) < 0.05


def _pairs(n: int, seed: int) -> tuple[list[float], list[float]]:
    rng = random.Random(seed)
    a = [rng.random() for _ in range(n)]
    return a, [x + rng.gauss(0.05, 0.2) for x in a]


@pytest.mark.parametrize(("n", "seed"), [(2, 1), (7, 2), (40, 3), (300, 4)])
def test_paired_interval_and_p_are_scipys(n: int, seed: int) -> None:
    a, b = _pairs(n, seed)
    expected = sp.ttest_rel(b, a)
    ci = expected.confidence_interval(0.95)
    result = compare_paired(a, b)
    assert result.test == "paired-t" and result.n == n
    assert result.delta == pytest.approx(np.mean(np.subtract(b, a)), rel=1e-12)
    assert (result.low, result.high) == pytest.approx((ci.low, ci.high), rel=1e-9)
    assert result.p == pytest.approx(expected.pvalue, rel=1e-9)


def test_paired_true_false_scores_use_mcnemar_and_count_wins() -> None:
    # A right / B right: 50 both, 12 A only, 3 B only, 35 neither.
    a = [True] * 50 + [True] * 12 + [False] * 3 + [False] * 35
    b = [True] * 50 + [False] * 12 + [True] * 3 + [False] * 35
    result = compare_paired(a, b)
    assert (result.wins, result.ties, result.losses) == (3, 85, 12)
    assert result.test == "mcnemar"
    assert result.p == pytest.approx(sp.binomtest(3, 15, 0.5).pvalue)
    assert result.delta == pytest.approx(-0.09)
    ci = sp.ttest_rel(np.array(b, float), np.array(a, float)).confidence_interval(0.95)
    assert (result.low, result.high) == pytest.approx((ci.low, ci.high), rel=1e-9)


def test_identical_sides_are_no_difference() -> None:
    same = [True, False, True]
    result = compare_paired(same, same)
    assert (result.delta, result.low, result.high, result.p) == (0.0, 0.0, 0.0, 1.0)
    assert (result.wins, result.ties, result.losses) == (0, 3, 0)
    assert paired_t([0.2] * 5)[3] == 0.0  # every row better by the same amount
    one = paired_t([0.5])
    assert one[0] == 0.5 and math.isnan(one[1]) and math.isnan(one[3])
    assert paired_t([0.0])[3] == 1.0


def test_paired_bootstrap_agrees_with_scipys_percentile_bootstrap() -> None:
    a, b = _pairs(200, 9)
    differences = np.subtract(b, a)
    low, high = paired_bootstrap(list(differences), resamples=20_000)
    expected = sp.bootstrap(
        (differences,), np.mean, method="percentile", n_resamples=20_000, rng=1
    ).confidence_interval
    assert low == pytest.approx(expected.low, abs=0.005)
    assert high == pytest.approx(expected.high, abs=0.005)
    assert paired_bootstrap(list(differences), resamples=20_000) == (low, high)  # seeded
    boot = compare_paired(a, b, bootstrap=20_000)
    assert (boot.low, boot.high) == (low, high)


def test_holm_on_a_known_table() -> None:
    pvalues = [0.01, 0.04, 0.03, 0.005]
    # sorted: 0.005 * 4 = 0.02, 0.01 * 3 = 0.03, 0.03 * 2 = 0.06, 0.04 * 1 -> 0.06 (monotone)
    assert holm_adjusted(pvalues) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm(pvalues, 0.05) == [True, False, False, True]
    assert holm([0.5, 0.001, math.nan]) == [False, True, False]
    assert holm([]) == []


def test_holm_is_the_step_down_procedure() -> None:
    rng = random.Random(5)
    for _ in range(200):
        pvalues = [rng.random() ** 3 for _ in range(rng.randint(1, 8))]
        order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
        expected = [False] * len(pvalues)
        for rank, i in enumerate(order):
            if pvalues[i] > 0.05 / (len(pvalues) - rank):
                break
            expected[i] = True
        assert holm(pvalues) == expected

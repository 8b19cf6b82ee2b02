"""The statistics behind every figure evalflow shows: plain Python, no Prefect, no pandas.

- a single score: its mean with a 95% interval (Wilson's for a true/false score, Student's t
  for a numeric one) and n;
- two models or two nights on the same rows (paired): McNemar's exact test for true/false
  scores, Student's paired t otherwise, a paired interval on the per-row differences (t, or a
  paired bootstrap), wins, ties and losses;
- many comparisons at once: Holm's step-down correction.

Conventions where the textbook formula has no answer: an interval from fewer than two values
(t) is NaN to NaN; values that are all equal have a zero-width t interval; McNemar's p with no
discordant row is 1; a paired t test whose differences are all zero has p = 1, and all equal
but not zero, p = 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

CONFIDENCE = 0.95
Numbers = Sequence[float] | npt.NDArray[np.float64]  # a numpy array of floats is read as is
_NAN = math.nan


@dataclass(frozen=True)
class Figure:
    """A score over n rows: mean, standard error and a confidence interval."""

    mean: float
    stderr: float
    low: float
    high: float
    n: int
    binary: bool  # a true/false score (Wilson's interval) rather than a numeric one (t)


@dataclass(frozen=True)
class Paired:
    """Two sides scored on the same n rows; differences are B - A."""

    n: int
    mean_a: float
    mean_b: float
    delta: float
    low: float
    high: float
    p: float
    test: str  # "mcnemar" (true/false scores) or "paired-t"
    wins: int  # rows where B scored higher than A
    ties: int
    losses: int  # rows where B scored lower than A


# ---- distributions ------------------------------------------------------------------------


def _continued_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz's method)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 1000):
        even = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        odd = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        for coefficient in (even, odd):
            d = 1.0 + coefficient * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + coefficient / c
            c = c if abs(c) > tiny else tiny
            step = c * d
            result *= step
        if abs(step - 1.0) < 1e-16:
            break
    return result


def incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _continued_fraction(a, b, x) / a
    return 1.0 - front * _continued_fraction(b, a, 1.0 - x) / b


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with df degrees of freedom."""
    if math.isinf(t):
        return 0.0
    return incomplete_beta(df / 2.0, 0.5, df / (df + t * t))


def t_quantile(confidence: float, df: float) -> float:
    """The t such that P(|T| <= t) = confidence (e.g. 2.262 for 0.95 and df = 9)."""
    alpha = 1.0 - confidence
    low, high = 0.0, 1.0  # x = df / (df + t^2); I_x(df/2, 1/2) = alpha grows with x
    for _ in range(200):
        middle = (low + high) / 2.0
        if incomplete_beta(df / 2.0, 0.5, middle) < alpha:
            low = middle
        else:
            high = middle
    x = (low + high) / 2.0
    return math.sqrt(df * (1.0 - x) / x)


def z_quantile(confidence: float) -> float:
    """The z such that P(|Z| <= z) = confidence (1.96 for 0.95)."""
    return NormalDist().inv_cdf(1.0 - (1.0 - confidence) / 2.0)


# ---- one score ----------------------------------------------------------------------------


def wilson_interval(successes: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson's score interval for a proportion (NaN to NaN when n is 0)."""
    if n <= 0:
        return _NAN, _NAN
    z = z_quantile(confidence)
    p = successes / n
    denominator = 1.0 + z * z / n
    center = (p + z * z / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1.0 - p) / n + z * z / (4 * n * n))
    low = 0.0 if successes <= 0 else max(0.0, center - half)  # exact at the ends
    high = 1.0 if successes >= n else min(1.0, center + half)
    return low, high


def _mean_sd(values: Numbers) -> tuple[float, float]:
    n = len(values)
    mean = math.fsum(values) / n
    if n < 2:
        return mean, _NAN
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))


def t_interval(values: Numbers, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Student's t interval for the mean (NaN to NaN under two values)."""
    n = len(values)
    if n < 2:
        return _NAN, _NAN
    mean, sd = _mean_sd(values)
    return _t_around(mean, sd, n, confidence)


def _t_around(mean: float, sd: float, n: int, confidence: float) -> tuple[float, float]:
    half = t_quantile(confidence, n - 1) * sd / math.sqrt(n)
    return mean - half, mean + half


def is_binary(values: Sequence[object]) -> bool:
    """Whether every value is true/false (Python's or numpy's)."""
    return bool(values) and all(isinstance(v, bool | np.bool_) for v in values)


def describe(values: Sequence[bool | float], confidence: float = CONFIDENCE) -> Figure:
    """A score's figure over its scored rows: Wilson's interval for true/false values,
    Student's t for numbers."""
    return describe_numbers([float(v) for v in values], is_binary(values), confidence)


def describe_numbers(numbers: Numbers, binary: bool, confidence: float = CONFIDENCE) -> Figure:
    """`describe` for scores given as numbers (a true/false score's as 1.0 and 0.0, `binary`
    then true): a numpy array of every row's score needs no list of Python objects."""
    n = len(numbers)
    if n == 0:
        return Figure(_NAN, _NAN, _NAN, _NAN, 0, binary)
    mean, sd = _mean_sd(numbers)
    stderr = sd / math.sqrt(n) if n > 1 else 0.0
    if binary:
        low, high = wilson_interval(round(math.fsum(numbers)), n, confidence)
    elif n > 1:  # t_interval's, from the mean and deviation found above
        low, high = _t_around(mean, sd, n, confidence)
    else:
        low, high = _NAN, _NAN
    return Figure(mean, stderr, low, high, n, binary)


# ---- two sides on the same rows -----------------------------------------------------------


def mcnemar_exact(b: int, c: int) -> float:
    """McNemar's exact two-sided p: b rows right on A only, c rows right on B only. Under no
    difference b ~ Binomial(b + c, 1/2); p = min(1, 2 P(X <= min(b, c))), 1 when b + c = 0."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1))
    return min(1.0, 2 * tail / 2**n)


def paired_t(
    differences: Sequence[float], confidence: float = CONFIDENCE
) -> tuple[float, float, float, float]:
    """Mean of the per-row differences, its t interval and the paired t test's two-sided p."""
    n = len(differences)
    if n == 0:
        return _NAN, _NAN, _NAN, _NAN
    mean, sd = _mean_sd(differences)
    if n < 2:
        return mean, _NAN, _NAN, 1.0 if mean == 0 else _NAN
    if sd == 0:
        return mean, mean, mean, 1.0 if mean == 0 else 0.0
    stderr = sd / math.sqrt(n)
    half = t_quantile(confidence, n - 1) * stderr
    return mean, mean - half, mean + half, t_two_sided_p(mean / stderr, n - 1)


def paired_bootstrap(
    differences: Sequence[float],
    confidence: float = CONFIDENCE,
    resamples: int = 10_000,
    seed: int = 0,
) -> tuple[float, float]:
    """A percentile bootstrap interval for the mean difference: rows drawn again with
    replacement, the mean recomputed `resamples` times (seeded: the same data give the same
    interval)."""
    data = np.asarray(differences, dtype=float)
    if data.size == 0:
        return _NAN, _NAN
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(resamples, data.size))].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def compare_paired(
    a: Sequence[bool | float],
    b: Sequence[bool | float],
    confidence: float = CONFIDENCE,
    bootstrap: int | None = None,
) -> Paired:
    """Side B against side A on the same rows (aligned, both scored): the mean difference
    B - A with its paired interval (t, or a bootstrap of `bootstrap` resamples), McNemar's
    exact p when both are true/false, else the paired t test's p."""
    if len(a) != len(b):
        raise ValueError(f"paired values differ in length: {len(a)} and {len(b)}")
    xs, ys = [float(v) for v in a], [float(v) for v in b]
    differences = [y - x for x, y in zip(xs, ys, strict=True)]
    wins = sum(d > 0 for d in differences)
    losses = sum(d < 0 for d in differences)
    delta, low, high, p = paired_t(differences, confidence)
    if bootstrap is not None and differences:
        low, high = paired_bootstrap(differences, confidence, bootstrap)
    test = "paired-t"
    if is_binary(a) and is_binary(b):
        test, p = "mcnemar", mcnemar_exact(losses, wins)
    n = len(differences)
    return Paired(
        n=n,
        mean_a=math.fsum(xs) / n if n else _NAN,
        mean_b=math.fsum(ys) / n if n else _NAN,
        delta=delta,
        low=low,
        high=high,
        p=p,
        test=test,
        wins=wins,
        ties=n - wins - losses,
        losses=losses,
    )


# ---- many comparisons ---------------------------------------------------------------------


def holm_adjusted(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input's order (NaN stays NaN and does not
    count as a test)."""
    tested = sorted((p, i) for i, p in enumerate(pvalues) if not math.isnan(p))
    m = len(tested)
    adjusted = [_NAN] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def holm(pvalues: Sequence[float], alpha: float = 0.05) -> list[bool]:
    """Which hypotheses Holm's procedure rejects at family-wise level alpha: sort the p-values,
    reject p_(i) while p_(i) <= alpha / (m - i + 1), stop at the first that fails."""
    return [not math.isnan(p) and p <= alpha for p in holm_adjusted(pvalues)]

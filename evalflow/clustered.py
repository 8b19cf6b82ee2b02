"""A scorer's figures for one model: the mean and its standard error clustered by row, and
with repeated samples (epochs) pass@k and the majority vote.

With k epochs a row is asked k times: its k scores are not independent, so the standard error
is computed over the rows' own means (each row's scored epochs averaged first), not over the
k x n scores. With one epoch this is the plain standard error of the mean.

The figures are found from tallies (`tally_score`), one per part of a model's answers that
holds every epoch of its rows (a chunk of rows, evalflow.spool): a float per scored row, so a
run's summary never needs every answer at once. They are the same whatever the parts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from evalflow.stats import describe_numbers

SCORE = "score:"
ERRORS = "scorer_error:"
TOKENS = "scorer_tokens:"


@dataclass(frozen=True)
class ScoreTally:
    """One score column over a part of a model's answered rows: what its figures need."""

    per_row: npt.NDArray[np.float64]  # each scored row's mean over its scored epochs, in order
    boolean: bool  # its scores are true/false (it has at least one)
    judge_errors: int | None = None  # a judge's answers without a grade; None: not a judge
    judge_tokens: int = 0  # what judging cost


def _is_boolean(values: pd.Series) -> bool:
    present = values.dropna()
    return len(present) > 0 and all(isinstance(v, bool | np.bool_) for v in present)


def row_means(values: pd.Series, rows: pd.Series) -> npt.NDArray[np.float64]:
    """Each scored row's mean over its scored samples, rows in the order they first come, for
    scores `values` (NaN or None: unscored) of the rows `rows`."""
    scored = pd.DataFrame(
        {"row": rows.to_numpy(), "value": values.astype(float).to_numpy()}
    ).dropna()
    if scored["row"].is_unique:  # one epoch: each row's mean is its one score
        return scored["value"].to_numpy(dtype=np.float64)
    return scored.groupby("row", sort=False)["value"].mean().to_numpy(dtype=np.float64)


def tally_score(answered: pd.DataFrame, column: str) -> ScoreTally:
    """The tally of a score column over answered rows (`row_id`, the column, and for a judge
    its `scorer_error:` and `scorer_tokens:` columns)."""
    label = column.removeprefix(SCORE)
    values = answered[column]
    judged = ERRORS + label in answered
    return ScoreTally(
        row_means(values, answered["row_id"]),
        _is_boolean(values),
        int(answered[ERRORS + label].notna().sum()) if judged else None,
        int(answered[TOKENS + label].sum()) if judged else 0,
    )


def clustered(values: pd.Series, rows: pd.Series) -> tuple[float, float, int]:
    """Mean of the rows' means, its standard error across rows, and the number of rows, for
    scores `values` (NaN: unscored) of the rows `rows`."""
    figure = describe_numbers(row_means(values, rows), False)
    return figure.mean, figure.stderr, figure.n


def figures_of(label: str, tallies: Sequence[ScoreTally], epochs: set[int]) -> dict[str, Any]:
    """A score's figures for one model from its parts' tallies; `epochs`: those of the model's
    answered rows.

    `<label>` (the mean of the rows' means), `<label> stderr` (clustered by row), `<label>
    ci_low`, `<label> ci_high` (95%: Wilson's for a true/false score with one epoch, Student's
    t over the rows' means otherwise) and `<label> n` (the rows scored); with epochs, for a
    true/false score, `<label> pass@k` and `<label> majority`; for a judge, `<label> errors`
    (answers it gave no grade) and `<label> tokens` (what judging cost)."""
    arrays = [t.per_row for t in tallies]
    per_row = np.concatenate(arrays) if arrays else np.empty(0, dtype=np.float64)
    boolean = any(len(t.per_row) for t in tallies) and all(
        t.boolean for t in tallies if len(t.per_row)
    )
    # Over the rows' means: with one epoch, the scores themselves.
    figure = describe_numbers(per_row, boolean and len(epochs) <= 1)
    out: dict[str, Any] = {
        label: figure.mean,
        f"{label} stderr": figure.stderr,
        f"{label} ci_low": figure.low,
        f"{label} ci_high": figure.high,
        f"{label} n": figure.n,
    }
    k = max(epochs) + 1 if epochs else 1
    if k > 1 and boolean:
        empty = len(per_row) == 0
        # A row's mean over true/false samples: above 0, right at least once; above 1/2, right
        # in most of them.
        out[f"{label} pass@{k}"] = math.nan if empty else float((per_row > 0).mean())
        out[f"{label} majority"] = math.nan if empty else float((per_row > 0.5).mean())
    judged = [t for t in tallies if t.judge_errors is not None]
    if judged:
        out[f"{label} errors"] = sum(t.judge_errors or 0 for t in judged)
        out[f"{label} tokens"] = sum(t.judge_tokens for t in judged)
    return out


def score_figures(answered: pd.DataFrame, column: str) -> dict[str, Any]:
    """A score column's figures (`figures_of`) over one model's answered rows, all at once."""
    epochs = set(answered["epoch"].unique().tolist()) if "epoch" in answered else {0}
    return figures_of(column.removeprefix(SCORE), [tally_score(answered, column)], epochs)

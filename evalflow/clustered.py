"""A scorer's figures for one model: the mean and its standard error clustered by row, and
with repeated samples (epochs) pass@k and the majority vote.

With k epochs a row is asked k times: its k scores are not independent, so the standard error
is computed over the rows' own means (each row's scored epochs averaged first), not over the
k x n scores. With one epoch this is the plain standard error of the mean.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

SCORE = "score:"
ERRORS = "scorer_error:"
TOKENS = "scorer_tokens:"


def clustered(values: pd.Series, rows: pd.Series) -> tuple[float, float, int]:
    """Mean of the rows' means, its standard error across rows, and the number of rows, for
    scores `values` (NaN: unscored) of the rows `rows`."""
    scored = pd.DataFrame({"row": rows, "value": values}).dropna()
    per_row = scored["value"] if _each_once(scored["row"]) else _row_means(scored)
    n = len(per_row)
    if n == 0:
        return math.nan, math.nan, 0
    mean = float(per_row.mean())
    stderr = float(per_row.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0
    return mean, stderr, n


def _each_once(rows: pd.Series) -> bool:
    """Whether the rows come in increasing order, each once (one epoch, in the frame's order):
    then each row's mean is its one score (found without grouping every row)."""
    ids = rows.to_numpy()
    return ids.dtype.kind in "iu" and bool((ids[1:] > ids[:-1]).all())


def _row_means(scored: pd.DataFrame) -> pd.Series:
    return scored.groupby("row", sort=False)["value"].mean()


def _is_boolean(values: pd.Series) -> bool:
    present = values.dropna()
    return len(present) > 0 and all(isinstance(v, bool) for v in present)


def repeated(values: pd.Series, rows: pd.Series) -> dict[str, float]:
    """For true/false scores over several epochs: pass@k (the fraction of rows right at least
    once in their k samples) and the majority vote (the fraction of rows right in more than
    half of their scored samples)."""
    scored = pd.DataFrame({"row": rows, "value": values}).dropna()
    scored["value"] = scored["value"].astype(bool)
    per_row = scored.groupby("row", sort=False)["value"]
    if scored.empty:
        return {"pass@k": math.nan, "majority": math.nan}
    return {
        "pass@k": float(per_row.any().mean()),
        "majority": float((per_row.mean() > 0.5).mean()),
    }


def score_figures(answered: pd.DataFrame, column: str) -> dict[str, Any]:
    """A score column's figures for one model's answered rows: `<label>` (mean), `<label>
    stderr` (clustered by row); with epochs, for a true/false score, `<label> pass@k` and
    `<label> majority`; for a judge, `<label> errors` (answers it gave no grade) and `<label>
    tokens` (what judging cost)."""
    label = column.removeprefix(SCORE)
    values = answered[column]
    mean, stderr, _ = clustered(values.astype(float), answered["row_id"])
    figures: dict[str, Any] = {label: mean, f"{label} stderr": stderr}
    epochs = int(answered["epoch"].max()) + 1 if "epoch" in answered and len(answered) else 1
    if epochs > 1 and _is_boolean(values):
        for name, value in repeated(values, answered["row_id"]).items():
            figures[f"{label} {name.replace('k', str(epochs))}"] = value
    if ERRORS + label in answered:
        figures[f"{label} errors"] = int(answered[ERRORS + label].notna().sum())
        figures[f"{label} tokens"] = int(answered[TOKENS + label].sum())
    return figures

"""Figures as people read them: a mean with its 95% interval and n, 3 decimals; a cost in USD."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return None if math.isnan(value) else float(value)


def figure(mean: Any, low: Any = None, high: Any = None, n: Any = None) -> str:
    """`0.750 [0.598, 0.858]`, with ` n=40` when n is given; `-` without a mean; the interval
    is left out when there is none (a single row of a numeric score)."""
    value = _number(mean)
    if value is None:
        return "-"
    text = f"{value:.3f}"
    lo, hi = _number(low), _number(high)
    if lo is not None and hi is not None:
        text += f" [{lo:.3f}, {hi:.3f}]"
    if n is not None:
        text += f" n={n}"
    return text


def p_value(value: Any) -> str:
    """`0.4545`; `3.2e-08` below 0.0001 (never a bare 0.0000); `-` when there is none."""
    number = _number(value)
    if number is None:
        return "-"
    return f"{number:.4f}" if number >= 1e-4 else f"{number:.1e}"


def cost(value: Any) -> str:
    """`$0.0123`, or `-` when the model's prices are not known."""
    number = _number(value)
    return "-" if number is None else f"${number:.4f}"


def scorer_figure(entry: Mapping[str, Any], label: str, rows: Any = None) -> str:
    """A scorer's figure from a summary or history entry (`<label>`, `<label> ci_low`,
    `<label> ci_high`, `<label> n`); its n is shown when it differs from `rows`."""
    n = entry.get(f"{label} n")
    shown = n if n is not None and rows is not None and n != rows else None
    return figure(
        entry.get(label), entry.get(f"{label} ci_low"), entry.get(f"{label} ci_high"), shown
    )


def summary_table(
    summary: Sequence[Mapping[str, Any]], labels: Sequence[str]
) -> list[dict[str, Any]]:
    """A run's own figures per model: each scorer's mean [95% interval], tokens, cost (when
    the model's prices are known), n (rows scored) and errors."""
    priced = any(_number(entry.get("cost")) is not None for entry in summary)
    table = []
    for entry in summary:
        n = entry.get("answered")
        row: dict[str, Any] = {"model": entry["model"]}
        row.update({label: scorer_figure(entry, label, n) for label in labels})
        row["tokens"] = entry.get("tokens")
        if priced:
            row["cost"] = cost(entry.get("cost"))
        row.update({"n": n, "errors": entry.get("errors")})
        table.append(row)
    return table

"""The trend chart of a suite's history: each model's score over time with its 95% band."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from evalflow.errors import ConfigError, HistoryError
from evalflow.history import scorer_labels
from evalflow.runs import write_atomic
from evalflow.storage import Location


def plot_history(
    table: pd.DataFrame, path: Location, suite: str, scorers: Sequence[str] | None = None
) -> Location:
    """Write a PNG: one panel per scorer (default: every scorer of the history), a line per
    model through its means at the times its evaluations finished (UTC), and a band for each
    mean's 95% interval. Matplotlib's Agg backend: no display needed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    labels = list(scorers or scorer_labels(table))
    if table.empty or not labels:
        raise HistoryError(
            f"suite {suite}: no finished full evaluation in the history to plot; a full "
            f"`evalflow run {suite}` records one"
        )
    if isinstance(path, Path) and not path.parent.is_dir():
        raise ConfigError(f"--plot {path}: the folder {path.parent} does not exist")
    when = pd.to_datetime(table["finished"], utc=True).dt.tz_convert(None)
    figure, axes = plt.subplots(
        len(labels), 1, figsize=(9, 3.2 * len(labels) + 0.6), sharex=True, squeeze=False
    )
    for axis, label in zip(axes[:, 0], labels, strict=True):
        for model, rows in table.groupby("model", sort=True):
            x = when[rows.index]
            mean = rows[label].astype(float)
            low = rows[f"{label} ci_low"].astype(float)
            high = rows[f"{label} ci_high"].astype(float)
            line = axis.plot(x, mean, marker="o", label=str(model))[0]
            color = line.get_color()
            axis.fill_between(x, low, high, color=color, alpha=0.18, linewidth=0)
            # The interval of each evaluation also as a bar: a band needs two points to show.
            bars = [(mean - low).clip(lower=0), (high - mean).clip(lower=0)]
            axis.errorbar(x, mean, yerr=bars, fmt="none", ecolor=color, alpha=0.7, capsize=3)
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
        axis.legend(loc="best", fontsize="small")
    if when.min() == when.max():  # one moment: a day around it, not years
        axes[-1, 0].set_xlim(
            when.min() - pd.Timedelta(hours=12), when.max() + pd.Timedelta(hours=12)
        )
    locator = mdates.AutoDateLocator()
    axes[-1, 0].xaxis.set_major_locator(locator)
    axes[-1, 0].xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    axes[-1, 0].set_xlabel("evaluation finished (UTC)")
    figure.suptitle(f"{suite}: mean score per model over time (band: 95% interval)")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    write_atomic(path, buffer.getvalue())
    return path

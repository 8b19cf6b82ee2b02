"""What changed tonight: a task that compares and emits an event per significant change, and
the flow run's "what-changed" artifact."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE
from prefect.events import emit_event

from evalflow.history import history_dir, read_history
from evalflow.regressions import (
    Evaluated,
    Night,
    compare_night,
    event_of,
    headline,
    what_changed_markdown,
)
from evalflow.trend import plot_history

ARTIFACT_KEY = "what-changed"


@task(name="what-changed", cache_policy=NONE)
def detect_changes(
    runs: Mapping[str, str | None] | Sequence[Evaluated], alpha: float, min_effect: float
) -> Night:
    """Compare each suite's (or each (suite, model)'s) run of tonight with the previous
    evaluations (Holm over all) and emit `evalflow.regression.detected` /
    `evalflow.improvement.detected` for each significant change."""
    logger = get_run_logger()
    night = compare_night(runs, alpha, min_effect)
    for change in night.regressions + night.improvements:
        emit_event(**event_of(change))
        logger.warning("%s: %s", change.verdict, headline(change))
    for skipped in night.not_compared:
        where = f"{skipped.suite}{f' / {skipped.model}' if skipped.model else ''}"
        logger.info("not compared: %s: %s", where, skipped.reason)
    if not night.regressions and not night.improvements:
        logger.info("no change in %d comparison(s)", len(night.changes))
    return night


def publish_what_changed(night: Night, title: str) -> None:
    """The "what changed tonight" markdown artifact, on the flow run that calls it (a task's
    artifacts show under its task run in the UI, not the flow run's)."""
    create_markdown_artifact(
        what_changed_markdown(night, title),
        key=ARTIFACT_KEY,
        description=f"{title}: {len(night.regressions)} regression(s), "
        f"{len(night.improvements)} improvement(s), {len(night.changes)} comparison(s)",
    )


TRENDS_KEY = "trend-charts"


@task(name="trend-charts", cache_policy=NONE)
def plot_trends(suites: list[str]) -> dict[str, str]:
    """Each suite's trend chart (every model's score over its history, with 95% bands) as a
    PNG beside its history: EVALFLOW_HOME/history/<suite>/trend.png."""
    charts: dict[str, str] = {}
    for suite in suites:
        table = read_history(suite)
        if table.empty:
            continue
        path = history_dir(suite) / "trend.png"
        charts[suite] = str(plot_history(table, path, suite))
    return charts


def publish_trends(charts: Mapping[str, str]) -> None:
    """A markdown artifact on the flow run naming each chart's file. The Prefect UI shows
    images only from URLs it can fetch, and a chart on the worker's disk is not one: the
    artifact gives the path (and `evalflow history SUITE --plot FILE` draws it anywhere)."""
    lines = [f"- **{suite}**: `{path}`" for suite, path in charts.items()]
    create_markdown_artifact(
        "# Trend charts\n\n" + ("\n".join(lines) or "No history yet.") + "\n",
        key=TRENDS_KEY,
        description=f"{len(charts)} trend chart(s), written on the worker",
    )

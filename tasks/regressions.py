"""What changed tonight: a task that compares and emits an event per significant change, and
the flow run's "what-changed" artifact."""

from __future__ import annotations

from collections.abc import Mapping

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE
from prefect.events import emit_event

from evalflow.regressions import Night, compare_night, event_of, headline, what_changed_markdown

ARTIFACT_KEY = "what-changed"


@task(name="what-changed", cache_policy=NONE)
def detect_changes(runs: Mapping[str, str | None], alpha: float, min_effect: float) -> Night:
    """Compare each suite's run of tonight with the previous evaluations (Holm over all) and
    emit `evalflow.regression.detected` / `evalflow.improvement.detected` for each significant
    change."""
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

"""Nightly: every suite against every registered model usable here, leaderboards republished."""

from __future__ import annotations

from typing import Annotated, Any

from prefect import flow, get_run_logger
from pydantic import Field

from evalflow.config import ModelName, SuiteName, load_registry, suite_names, usable_models
from flows.evaluate import evaluate


@flow(name="nightly-evals")
def nightly(
    suites: Annotated[list[SuiteName] | None, Field(description="default: every suite")] = None,
    models: Annotated[
        list[ModelName] | None, Field(description="default: every usable model")
    ] = None,
    limit: Annotated[int | None, Field(ge=1, description="first N rows of each suite")] = None,
    weave_project: Annotated[str | None, Field(description="default: local/evalflow")] = None,
) -> dict[str, Any]:
    """Evaluate every suite with every registered model whose key is set here, and republish
    the leaderboards; one suite failing does not stop the others."""
    logger = get_run_logger()
    chosen, skipped = usable_models(load_registry(), models)
    for name, why in skipped.items():
        logger.warning("skipping model %s: %s", name, why)
    results: dict[str, Any] = {}
    failures: dict[str, str] = {}
    for suite in suites or suite_names():
        try:
            results[suite] = evaluate(
                suite=suite, models=chosen, limit=limit, weave_project=weave_project
            )
        except Exception as exc:  # one suite failing does not stop the others
            failures[suite] = str(exc)
            logger.error("suite %s failed: %s", suite, exc)
    if failures:
        raise RuntimeError(f"{len(failures)} suite(s) failed: {failures}")
    return results

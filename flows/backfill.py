"""Backfill: evaluate one model on every suite it has no finished evaluation for, and nothing
else. Finished evaluations are found by asking Weave (the suite's leaderboard)."""

from __future__ import annotations

from typing import Annotated, Any

from prefect import flow, get_run_logger
from pydantic import Field

from evalflow.config import load_registry, resolve_models, suite_names
from evalflow.evaluation import models_on_leaderboard
from evalflow.weave_setup import init_weave
from flows.evaluate import evaluate


@flow(name="backfill-model")
def backfill_model(
    # A plain string, not a choice: the model is often registered after the deployment was made.
    model: Annotated[str, Field(description="a registered model name")],
    limit: Annotated[int | None, Field(ge=1, description="first N rows of each suite")] = None,
    weave_project: Annotated[str | None, Field(description="default: local/evalflow")] = None,
) -> dict[str, Any]:
    """Evaluate one model on every suite it has no finished evaluation for, and nothing else."""
    logger = get_run_logger()
    resolve_models([model], load_registry())  # an unknown model names the known ones
    init_weave(weave_project)
    # Every suite is asked before anything runs: a store that cannot be read (WeaveStoreError)
    # stops the backfill before it sends a request; only a missing leaderboard means "none".
    missing = [s for s in suite_names() if model not in models_on_leaderboard(s)]
    logger.info("model %s lacks %d suite(s): %s", model, len(missing), missing)
    return {
        suite: evaluate(suite=suite, models=[model], limit=limit, weave_project=weave_project)
        for suite in missing
    }

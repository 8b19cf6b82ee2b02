"""Nightly: every suite against every registered model usable here, leaderboards republished,
and what changed since the previous night."""

from __future__ import annotations

from typing import Annotated, Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from pydantic import Field

from evalflow.config import ModelName, SuiteName, load_registry, suite_names, usable_models
from evalflow.errors import EvalflowError
from evalflow.forms import form_help
from evalflow.runs import run_day
from flows.evaluate import evaluate
from tasks.regressions import detect_changes, plot_trends, publish_trends, publish_what_changed


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _day() -> str:
    try:
        return run_day().isoformat()
    except EvalflowError:  # a malformed EVALFLOW_RUN_DAY: the flow itself says so
        return "(bad EVALFLOW_RUN_DAY)"


def _run_name() -> str:
    """`nightly 2025-01-31: 3 suites x 2 models` (the UI's name of a flow run)."""
    parameters = flow_run.parameters
    try:
        suites = parameters.get("suites") or suite_names()
        models = parameters.get("models") or usable_models(load_registry())[0]
    except EvalflowError:  # the flow reports a broken suite folder or registry itself
        return f"nightly {_day()}"
    return f"nightly {_day()}: {_count(len(suites), 'suite')} x {_count(len(models), 'model')}"


@form_help
@flow(name="nightly-evals", flow_run_name=_run_name)
def nightly(
    suites: Annotated[
        list[SuiteName] | None,
        Field(description="suites to evaluate (evals/<name>.yaml); default: every suite"),
    ] = None,
    models: Annotated[
        list[ModelName] | None,
        Field(
            description="registered models to evaluate on each suite; default: every "
            "registered model whose key is set on the worker"
        ),
    ] = None,
    limit: Annotated[
        int | None,
        Field(
            ge=1,
            description="first N rows of each suite only (a partial run: not on the "
            "leaderboard, not in the history, not compared)",
        ),
    ] = None,
    weave_project: Annotated[
        str | None, Field(description="Weave project (entity/project); default: local/evalflow")
    ] = None,
    alpha: Annotated[
        float,
        Field(
            gt=0,
            lt=1,
            description="significance level of the night's comparisons with the previous "
            "evaluations (Holm-corrected over every suite x model x scorer)",
        ),
    ] = 0.05,
    min_effect: Annotated[
        float,
        Field(
            ge=0,
            description="smallest change of a mean score (absolute, e.g. 0.02) reported as a "
            "regression or an improvement; 0: any significant change",
        ),
    ] = 0.0,
) -> dict[str, Any]:
    """Evaluate every suite with every registered model whose key is set here, republish the
    leaderboards, and compare each (suite, model) with its previous finished evaluation of the
    same rows: a significant drop emits `evalflow.regression.detected`, a rise
    `evalflow.improvement.detected`; the run's "what-changed" artifact lists every comparison.
    One suite failing does not stop the others."""
    logger = get_run_logger()
    chosen, skipped = usable_models(load_registry(), models)
    for name, why in skipped.items():
        logger.warning("skipping model %s: %s", name, why)
    results: dict[str, Any] = {}
    runs: dict[str, str | None] = {}
    failures: dict[str, str] = {}
    for suite in suites or suite_names():
        try:
            results[suite] = evaluate(
                suite=suite, models=chosen, limit=limit, weave_project=weave_project
            )
            runs[suite] = results[suite]["run_id"]
        except Exception as exc:  # one suite failing does not stop the others
            failures[suite] = str(exc)
            runs[suite] = None
            logger.error("suite %s failed: %s", suite, exc)
    night = detect_changes(runs, alpha, min_effect)
    publish_what_changed(night, f"What changed tonight ({_day()})")
    publish_trends(plot_trends([s for s, run_id in runs.items() if run_id]))
    if failures:
        raise RuntimeError(f"{len(failures)} suite(s) failed: {failures}")
    return {
        "evaluations": results,
        "regressions": [c.__dict__ for c in night.regressions],
        "improvements": [c.__dict__ for c in night.improvements],
    }

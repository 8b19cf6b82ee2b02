"""Nightly: every suite against every registered model usable here, leaderboards republished,
and what changed since the previous night.

Run as a deployment on a work pool where the `evaluate` deployment exists, it fans out: each
(suite, model) is its own flow run of `evaluate` (any worker of the pool may take it), at
most `max_parallel` at once; a child that crashed (its worker lost) or failed for a transient
reason is started again up to `evaluation_retries` times, a user's mistake (a bad suite, model,
row or key, a spent budget) is not (evalflow/fanout.py). Then each suite's leaderboard is
published once, and the night compared with the previous ones. Called directly (no
deployment), it evaluates the suites one after another in this process, all models at once.
"""

from __future__ import annotations

from typing import Annotated, Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from pydantic import Field

from evalflow.config import ModelName, SuiteName, load_registry, suite_names, usable_models
from evalflow.errors import EvalflowError
from evalflow.fanout import Child, night_failed, plan_children
from evalflow.forms import form_help
from evalflow.regressions import Evaluated, Night
from evalflow.runs import run_day
from evalflow.weave_setup import init_weave
from flows.evaluate import evaluate
from tasks.fanout import fans_out, run_children
from tasks.leaderboard import publish_entries
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
    chunk_size: Annotated[
        int, Field(ge=1, le=10_000, description="rows per task of each evaluation")
    ] = 200,
    max_parallel: Annotated[
        int,
        Field(
            ge=1,
            le=1000,
            description="evaluations (one per suite x model) running at once on the work pool, "
            "when the nightly runs as a deployment",
        ),
    ] = 4,
    evaluation_retries: Annotated[
        int,
        Field(
            ge=0,
            le=10,
            description="times an evaluation that crashed (its worker lost) or failed for a "
            "transient reason is started again on the pool; a user's mistake (bad suite, "
            "model, row or key, spent budget) is not; saved answers are reused",
        ),
    ] = 2,
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
    chosen_suites = suites or suite_names()
    if not fans_out():
        return _in_process(
            chosen_suites, chosen, limit, weave_project, chunk_size, alpha, min_effect
        )
    children = plan_children(chosen_suites, chosen)
    parameters = {
        "limit": limit,
        "weave_project": weave_project,
        "chunk_size": chunk_size,
        "publish_leaderboard": False,
    }
    entries = run_children(children, parameters, max_parallel, evaluation_retries)
    init_weave(weave_project)
    for suite in chosen_suites:
        publish_entries(suite, entries)
    night = _what_changed(
        [Evaluated(c.suite, c.run_id, c.model) for c in children], alpha, min_effect
    )
    if failed := night_failed(children):
        raise failed
    return {
        "evaluations": {c.name: _child_result(c) for c in children},
        "regressions": [c.__dict__ for c in night.regressions],
        "improvements": [c.__dict__ for c in night.improvements],
    }


def _child_result(child: Child) -> dict[str, Any]:
    return {
        "suite": child.suite,
        "model": child.model,
        "run_id": child.run_id,
        "state": child.state,
        "flow_runs": child.flow_runs,
    }


def _what_changed(
    runs: dict[str, str | None] | list[Evaluated], alpha: float, min_effect: float
) -> Night:
    """Compare tonight with the previous nights, publish the report and the trend charts."""
    night = detect_changes(runs, alpha, min_effect)
    publish_what_changed(night, f"What changed tonight ({_day()})")
    done = [(e.suite, e.run_id) for e in runs] if isinstance(runs, list) else runs.items()
    suites = sorted({suite for suite, run_id in done if run_id})
    publish_trends(plot_trends(suites))
    return night


def _in_process(
    suites: list[str],
    models: list[str],
    limit: int | None,
    weave_project: str | None,
    chunk_size: int,
    alpha: float,
    min_effect: float,
) -> dict[str, Any]:
    """Every suite one after another in this flow run, all models at once (no deployment)."""
    logger = get_run_logger()
    results: dict[str, Any] = {}
    runs: dict[str, str | None] = {}
    failures: dict[str, str] = {}
    for suite in suites:
        try:
            results[suite] = evaluate(
                suite=suite,
                models=models,
                limit=limit,
                weave_project=weave_project,
                chunk_size=chunk_size,
            )
            runs[suite] = results[suite]["run_id"]
        except Exception as exc:  # one suite failing does not stop the others
            failures[suite] = str(exc)
            runs[suite] = None
            logger.error("suite %s failed: %s", suite, exc)
    night = _what_changed(runs, alpha, min_effect)
    if failures:
        raise RuntimeError(f"{len(failures)} suite(s) failed: {failures}")
    return {
        "evaluations": results,
        "regressions": [c.__dict__ for c in night.regressions],
        "improvements": [c.__dict__ for c in night.improvements],
    }

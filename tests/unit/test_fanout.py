"""The nightly's fan-out rules (evalflow/fanout.py): which children are started again, what a
failed night says; and the heartbeat period prefect.yaml sets is the one the lost-run
automation counts on."""

from __future__ import annotations

from pathlib import Path

import yaml

from evalflow.fanout import CRASHED, FAILED, Child, night_failed, plan_children, should_retry
from evalflow.lost_runs import HEARTBEAT_SECONDS, TAG, lost_run_automation

ROOT = Path(__file__).resolve().parents[2]
PREFECT_MESSAGE = "Flow run encountered an exception: "


def ended(state: str, message: str = "", attempts: int = 1) -> Child:
    child = Child("qa", "m1", flow_runs=[f"run-{i}" for i in range(attempts)])
    child.state, child.message = state, message
    return child


def test_a_crashed_child_is_started_again_until_its_retries_are_spent() -> None:
    assert should_retry(ended(CRASHED, "no heartbeat for 90 s"), retries=2)
    assert should_retry(ended(CRASHED, attempts=2), retries=2)
    assert not should_retry(ended(CRASHED, attempts=3), retries=2)
    assert not should_retry(ended(CRASHED), retries=0)


def test_a_users_mistake_is_not_retried_a_transient_failure_is() -> None:
    mistakes = [
        "FatalRequestError: model m1 at http://x/v1: 401 Unauthorized (check its key)",
        "ConfigError: suite 'qa': bad scorer",
        "UnknownNameError: unknown model 'm9'; known models: m1",
        "BudgetExceededError: token budget of 1,000 spent",
    ]
    for text in mistakes:
        assert not should_retry(ended(FAILED, PREFECT_MESSAGE + text), retries=2), text
    transient = [
        "ChunkFailedError: chunk 3 of m1 took the run past its error budget",
        "RunInProgressError: run qa-20250101-abc is already running",
        "RuntimeError: something unexpected",
        "",
    ]
    for text in transient:
        assert should_retry(ended(FAILED, PREFECT_MESSAGE + text), retries=2), text
    assert not should_retry(ended("CANCELLED"), retries=2)


def test_a_failed_night_names_each_failed_pair() -> None:
    children = plan_children(["qa", "mc"], ["m1", "m2"])
    for child in children:
        child.flow_runs, child.state = ["r"], "COMPLETED"
    assert night_failed(children) is None
    children[1].state, children[1].message = FAILED, PREFECT_MESSAGE + "FatalRequestError: 401"
    children[2].state, children[2].flow_runs = CRASHED, ["a", "b", "c"]
    error = night_failed(children)
    assert error is not None
    text = str(error)
    assert text.startswith("2 of 4 evaluation(s) failed: qa / m2: failed after 1 attempt(s)")
    assert "mc / m1: crashed after 3 attempt(s)" in text
    assert "qa / m1" not in text and "mc / m2" not in text


def test_every_deployment_sends_the_heartbeats_the_automation_expects() -> None:
    project = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    for deployment in project["deployments"]:
        env = deployment["work_pool"]["job_variables"]["env"]
        assert env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == str(HEARTBEAT_SECONDS)
        assert TAG in deployment["tags"]
    trigger = lost_run_automation(periods=3).trigger
    assert trigger.within.total_seconds() == 3 * HEARTBEAT_SECONDS
    assert trigger.posture == "Proactive" and trigger.after == {"prefect.flow-run.heartbeat"}


def test_evalflow_runs_own_flow_run_sends_heartbeats_only_when_the_user_sets_them() -> None:
    """`evalflow run`'s flow run is watched by no automation (it is not a deployment's): no
    heartbeat thread, whose one-second sleeps the flow's end waits for. A period the user set
    is kept, as a deployment's job variables set it."""
    from prefect.settings import (
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        get_current_settings,
        temporary_settings,
    )

    from evalflow.cli import _prefect_api

    assert get_current_settings().flows.heartbeat_frequency is not None  # Prefect's default
    with _prefect_api(None):
        assert get_current_settings().flows.heartbeat_frequency is None
    user_set = {PREFECT_FLOWS_HEARTBEAT_FREQUENCY: HEARTBEAT_SECONDS}
    with temporary_settings(updates=user_set), _prefect_api("http://127.0.0.1:4200/api"):
        settings = get_current_settings()
        assert settings.flows.heartbeat_frequency == HEARTBEAT_SECONDS
        assert settings.api.url == "http://127.0.0.1:4200/api"

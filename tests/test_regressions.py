"""What changed tonight: the nightly compares each (suite, model) with its previous finished
evaluation, emits `evalflow.regression.detected` for a significant drop, and the alert
automation posts it to a webhook. On the simulated endpoint, a real Prefect server (the
session's test harness, whose server runs the triggers and actions services), and a real
local HTTP receiver."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterTextSearch
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
from prefect.variables import Variable

from evalflow.alerts import AUTOMATION_NAME, BLOCK_NAME, SETTING_NAME, setup_alerts
from evalflow.endpoints import SimEndpoint
from evalflow.endpoints.sim import unit_hash
from evalflow.history import read_history
from evalflow.regressions import IMPROVEMENT_EVENT, REGRESSION_EVENT
from flows.nightly import nightly
from tests.receiver import Receiver
from tests.suites import answer_key, questions, write_suite

EVENTS = [REGRESSION_EVENT, IMPROVEMENT_EVENT]


@pytest.fixture(scope="module")
def receiver(prefect_server: str) -> Iterator[Receiver]:
    """A local webhook, and the alert automation on the session's server posting to it."""
    hook = Receiver()
    setup_alerts(hook.url)
    yield hook
    hook.close()


@pytest.fixture
def private_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The test's own EVALFLOW_HOME (runs, history) and evals folder."""
    monkeypatch.setenv("EVALFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("EVALFLOW_EVALS_DIR", str(tmp_path / "evals"))
    return tmp_path / "evals"


def events_of(resource_prefix: str) -> list[Any]:
    """The regression and improvement events of the last day whose resource starts so."""
    query = EventFilter(
        event=EventNameFilter(name=EVENTS),
        resource=EventResourceFilter(id_prefix=[resource_prefix]),
    )
    with get_client(sync_client=True) as client:
        return list(client.read_events(filter=query, limit=50).events)


def logs_with(text: str) -> list[str]:
    """The messages of the flow and task run logs on the server that hold `text`."""
    query = LogFilter(text=LogFilterTextSearch(query=text))
    with get_client(sync_client=True) as client:
        return [log.message for log in client.read_logs(log_filter=query, limit=50)]


def wait_for(condition: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.5)


def night(day: str, monkeypatch: pytest.MonkeyPatch, **parameters: Any) -> Any:
    """One nightly run as of `day` (YYYYMMDD); returns its final state."""
    monkeypatch.setenv("EVALFLOW_RUN_DAY", day)
    state = nightly(return_state=True, **parameters)
    assert state.is_completed(), state
    return state


def what_changed(state: Any) -> str:
    """The markdown of the "what-changed" artifact of a nightly flow run."""
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts()
    mine = [
        a
        for a in artifacts
        if a.key == "what-changed" and a.flow_run_id == state.state_details.flow_run_id
    ]
    assert len(mine) == 1, [a.key for a in artifacts]
    return str(mine[0].data)


def test_a_drop_from_0_9_to_0_7_on_300_rows_is_one_event_and_one_notification(
    receiver: Receiver, private_home: Path, sim: SimEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = questions(300)
    write_suite(private_home, "drop300", rows, sim.base_url, {"sim-good": {}})
    sim.configure(answer_key=answer_key(rows), models={"sim-good": 0.9})
    before = len(receiver.posts)
    project = "local/regress-drop"

    first = night("20250101", monkeypatch, weave_project=project)
    assert "first evaluation of these rows" in what_changed(first)
    sim.configure(answer_key=answer_key(rows), models={"sim-good": 0.7})
    second = night("20250102", monkeypatch, weave_project=project)

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(second.state_details.flow_run_id)
    assert run.name == "nightly 2025-01-02: 1 suite x 1 model"
    resource = "evalflow.suite.drop300.model.sim-good"
    wait_for(lambda: len(events_of(resource)) >= 1 and len(receiver.posts) > before)
    time.sleep(3)  # anything more would have arrived by now
    events = events_of(resource)
    assert [e.event for e in events] == [REGRESSION_EVENT]
    event = events[0]
    assert event.resource.id == resource
    assert event.resource["evalflow.suite"] == "drop300"
    assert event.resource["evalflow.model"] == "sim-good"

    # The payload against what the simulated endpoint's rule gives: right when hash < accuracy.
    h = {r["id"]: unit_hash("answer", "sim-good", r["question"]) for r in rows}
    worse = sorted(i for i, x in h.items() if 0.7 <= x < 0.9)
    payload = event.payload
    assert payload["delta"] == pytest.approx(-len(worse) / 300)
    assert payload["ci_low"] < payload["delta"] < payload["ci_high"] < 0
    assert payload["p"] < 1e-6 and payload["test"] == "mcnemar"
    assert sorted(payload["rows_worse"]) == worse and payload["rows_better"] == []
    runs = read_history("drop300")["run_id"].tolist()
    assert [payload["before_run"], payload["after_run"]] == runs
    assert runs[0].startswith("drop300-20250101-") and runs[1].startswith("drop300-20250102-")

    notes = receiver.posts[before:]
    assert len(notes) == 1
    assert "regression in drop300 / sim-good" in notes[0]["subject"]
    assert f"delta {payload['delta']:+.3f}" in notes[0]["body"]

    # The evaluation's log says its run id, where its results are and its figures.
    evaluation = second.result()["evaluations"]["drop300"]
    wait_for(lambda: len(logs_with(evaluation["run_id"])) >= 1)
    logged = "\n".join(logs_with(evaluation["run_id"]))
    assert f"run {evaluation['run_id']} (all 300 rows): results in {evaluation['folder']}" in logged
    accuracy = 1 - sum(x >= 0.7 for x in h.values()) / 300
    assert f"sim-good: exact_match {accuracy:.3f} [" in "\n".join(logs_with("exact_match"))

    report = what_changed(second)
    assert "**REGRESSION**" in report and "- **Regression**: drop300 / sim-good" in report
    assert f"{payload['delta']:+.3f} [{payload['ci_low']:+.3f}, {payload['ci_high']:+.3f}]" in (
        report
    )
    chart = private_home.parent / "home" / "history" / "drop300" / "trend.png"
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # the night's trend chart
    with get_client(sync_client=True) as client:
        charts = [
            a
            for a in client.read_artifacts()
            if a.key == "trend-charts" and a.flow_run_id == second.state_details.flow_run_id
        ]
    assert len(charts) == 1 and str(chart) in str(charts[0].data)


def test_an_unchanged_model_over_ten_nights_emits_nothing(
    receiver: Receiver, private_home: Path, sim: SimEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = questions(12)
    for suite in ("steady-a", "steady-b"):
        write_suite(private_home, suite, rows, sim.base_url, {"sim-half": {}})
    sim.configure(answer_key=answer_key(rows))
    before = len(receiver.posts)
    states = [
        night(f"202502{day:02d}", monkeypatch, weave_project="local/regress-steady")
        for day in range(1, 11)
    ]
    time.sleep(3)
    assert events_of("evalflow.suite.steady-") == []
    assert receiver.posts[before:] == []
    assert len(read_history("steady-a")) == len(read_history("steady-b")) == 10
    for state in states[1:]:
        report = what_changed(state)
        assert "**No change**: no significant difference in 2 comparison(s)." in report
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(states[-1].state_details.flow_run_id)
    assert run.name == "nightly 2025-02-10: 2 suites x 1 model"


def test_alert_setup_is_idempotent_and_reads_its_setting_from_the_server(
    prefect_server: str, receiver: Receiver
) -> None:
    env = {**os.environ, "PREFECT_API_URL": prefect_server}
    env.pop("EVALFLOW_ALERT_WEBHOOK", None)
    command = [sys.executable, "-m", "evalflow.cli", "alerts", "setup"]

    def setup() -> subprocess.CompletedProcess[str]:
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)

    Variable.unset(SETTING_NAME)
    missing = setup()
    assert missing.returncode == 1
    assert "no alert webhook: pass --webhook URL, or set EVALFLOW_ALERT_WEBHOOK" in missing.stderr
    assert "Traceback" not in missing.stderr

    hook = Receiver()
    try:
        Variable.set(SETTING_NAME, hook.url, overwrite=True)
        for _ in range(2):
            done = setup()
            assert done.returncode == 0, done.stderr
            assert "evalflow.regression.detected event posts to the webhook" in done.stdout
            assert hook.url not in done.stdout + done.stderr  # the URL is a secret
        with get_client(sync_client=True) as client:
            assert len(client.read_automations_by_name(AUTOMATION_NAME)) == 1
            shown = client.read_block_document_by_name(
                BLOCK_NAME, "custom-webhook", include_secrets=False
            )  # as the UI reads it
            kept = client.read_block_document_by_name(BLOCK_NAME, "custom-webhook")
        assert hook.url not in json.dumps(shown.data, default=str)  # a secret value
        assert kept.data["secrets"] == {"webhook_url": hook.url}
    finally:
        Variable.unset(SETTING_NAME)
        hook.close()
        setup_alerts(receiver.url)  # the module's receiver again

    env["EVALFLOW_ALERT_WEBHOOK"] = "ftp://example.invalid/x"
    bad = setup()
    assert bad.returncode == 1 and "not an http(s) URL" in bad.stderr
    assert "example.invalid/x" not in bad.stderr

"""The deployments of prefect.yaml on a real Prefect server: deploy, schedules, validation,
and a run triggered through the API and executed by a real worker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.exceptions import PrefectHTTPStatusError

from evalflow.endpoints import SimEndpoint
from evalflow.evaluation import read_leaderboard
from evalflow.weave_setup import init_weave
from tests.suites import answer_key, questions, write_suite

REPO = Path(__file__).resolve().parent.parent
ROWS = questions(20)


def prefect_cli(
    api_url: str, *args: str, evals_dir: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PREFECT_API_URL": api_url, "EVALFLOW_REPO": str(REPO)}
    if evals_dir is not None:
        env["EVALFLOW_EVALS_DIR"] = str(evals_dir)
    return subprocess.run(
        [sys.executable, "-m", "prefect", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def run_worker_once(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A real process worker on the evalflow pool that takes one scheduled run and exits."""
    return subprocess.run(
        [sys.executable, "-m", "prefect", "worker", "start", "--pool", "evalflow", "--run-once"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def deployed_evals(tmp_path_factory: pytest.TempPathFactory, sim_server: SimEndpoint) -> Path:
    """The evals folder the deployments are made from (their form lists its suites)."""
    folder = tmp_path_factory.mktemp("deployed-evals")
    write_suite(folder, "deployed", ROWS, sim_server.base_url, {"oracle": {}})
    write_suite(folder, "other", ROWS, sim_server.base_url, {"oracle": {}})
    return folder


@pytest.fixture(scope="module")
def deployed(prefect_server: str, deployed_evals: Path) -> str:
    pool = prefect_cli(prefect_server, "work-pool", "create", "evalflow", "--type", "process")
    assert pool.returncode == 0, pool.stdout + pool.stderr
    deploy = prefect_cli(prefect_server, "--no-prompt", "deploy", "--all", evals_dir=deployed_evals)
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr
    return prefect_server


def test_deploy_all_creates_the_three_deployments_with_the_nightly_schedule(
    deployed: str,
) -> None:
    with get_client(sync_client=True) as client:
        nightly = client.read_deployment_by_name("nightly-evals/nightly-evals")
        evaluate = client.read_deployment_by_name("evaluate/evaluate")
        backfill = client.read_deployment_by_name("backfill-model/backfill-model")
    assert [s.schedule.cron for s in nightly.schedules] == ["0 2 * * *"]  # type: ignore[union-attr]
    form = evaluate.parameter_openapi_schema["properties"]
    assert form["limit"]["anyOf"][0]["minimum"] == 1
    assert form["suite"]["enum"] == ["deployed", "other"]  # a choice of the suites in evals/
    assert form["models"]["anyOf"][0]["items"]["enum"] == ["oracle"]
    assert backfill.work_pool_name == "evalflow"


def form_of(name: str) -> dict[str, dict[str, object]]:
    with get_client(sync_client=True) as client:
        return client.read_deployment_by_name(name).parameter_openapi_schema["properties"]


def test_every_field_of_the_nightly_form_has_help_text(deployed: str) -> None:
    form = form_of("nightly-evals/nightly-evals")
    assert [p for p, field in form.items() if not field.get("description")] == []
    assert (form["alpha"]["default"], form["min_effect"]["default"]) == (0.05, 0.0)
    assert "Holm" in str(form["alpha"]["description"])
    assert form["alpha"]["exclusiveMinimum"] == 0  # the constraints are kept too


def test_every_field_of_the_evaluate_form_has_help_text(deployed: str) -> None:
    form = form_of("evaluate/evaluate")
    assert [p for p, field in form.items() if not field.get("description")] == []
    assert "default: the suite's" in str(form["models"]["description"])


def test_bad_parameters_are_refused_before_a_run_exists(deployed: str) -> None:
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("evaluate/evaluate")
        before = len(client.read_flow_runs())
        for bad in ({"suite": "deployed", "limit": 0}, {"suite": "no-such-suite"}):
            with pytest.raises(PrefectHTTPStatusError, match=r"409|422"):
                client.create_flow_run_from_deployment(deployment.id, parameters=bad)
        assert len(client.read_flow_runs()) == before


def test_a_run_triggered_through_the_api_is_run_by_a_worker_and_reaches_the_leaderboard(
    deployed: str, deployed_evals: Path, sim: SimEndpoint, evalflow_home: Path
) -> None:
    folder = deployed_evals
    sim.configure(answer_key=answer_key(ROWS))
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("evaluate/evaluate")
        run = client.create_flow_run_from_deployment(
            deployment.id,
            parameters={"suite": "deployed", "weave_project": "local/deployed"},
        )
    env = {
        **os.environ,
        "PREFECT_API_URL": deployed,
        "EVALFLOW_EVALS_DIR": str(folder),
        "EVALFLOW_REPO": str(REPO),
    }
    worker = run_worker_once(env)
    assert worker.returncode == 0, worker.stdout[-3000:] + worker.stderr[-3000:]
    deadline = time.monotonic() + 120
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            state = client.read_flow_run(run.id).state
            if state is not None and state.is_final():
                break
            time.sleep(1)
    assert state is not None and state.is_completed(), (state, worker.stderr[-3000:])
    assert sim.stats()["by_status"] == {"200": 20}
    init_weave("local/deployed")
    assert [row["model"] for row in read_leaderboard("deployed")] == ["oracle"]


def test_registering_a_model_triggers_its_backfill_and_a_second_backfill_sends_nothing(
    deployed: str, tmp_path: Path, sim: SimEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.evaluate import evaluate

    folder = tmp_path / "evals"
    write_suite(folder, "first", ROWS, sim.base_url, {"oracle": {}, "coin": {}})
    write_suite(folder, "second", questions(30), sim.base_url, {"oracle": {}, "coin": {}})
    (folder / "models.yaml").write_text(
        f"models:\n  - {{name: oracle, model: oracle, endpoint: '{sim.base_url}'}}\n"
    )
    sim.configure(answer_key=answer_key(questions(30)), models={"oracle": 1.0, "coin": 0.5})
    monkeypatch.setenv("EVALFLOW_EVALS_DIR", str(folder))
    monkeypatch.setenv("EVALFLOW_WEAVE_PROJECT", "local/backfill")
    evaluate(suite="first", models=["oracle"])  # oracle is already on the first suite
    env = {**os.environ, "PREFECT_API_URL": deployed, "EVALFLOW_REPO": str(REPO)}
    added = subprocess.run(
        [
            sys.executable,
            "-m",
            "evalflow.cli",
            "models",
            "add",
            "coin",
            "--model",
            "coin",
            "--endpoint",
            sim.base_url,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert added.returncode == 0, added.stderr
    assert "announced evalflow.model.registered" in added.stdout
    sim.reset()
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("backfill-model/backfill-model")
        deadline = time.monotonic() + 60
        runs = []
        while not runs and time.monotonic() < deadline:
            runs = [r for r in client.read_flow_runs() if r.deployment_id == deployment.id]
            time.sleep(1)
    assert runs and runs[0].parameters == {"model": "coin"}
    worker = run_worker_once(env)
    assert worker.returncode == 0, worker.stderr[-3000:]
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(runs[0].id).state
    assert state is not None and state.is_completed(), state
    # coin was on no suite: both are evaluated for it, and nothing for oracle.
    assert sim.stats()["by_model"] == {"coin": {"200": 50}}
    # Run again: nothing is missing any more, nothing is sent.
    from flows.backfill import backfill_model

    sim.reset()
    assert backfill_model(model="coin") == {}
    assert sim.stats()["total"] == 0

"""Resilience against the simulated endpoint, counted at /_stats: faults, crashes and resume,
fail-fast errors, a limit shared by two processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from evalflow.endpoints import SimEndpoint
from evalflow.errors import FatalRequestError
from flows.evaluate import evaluate
from tests.suites import answer_key, questions, start_shared_runs, write_suite

ROWS = questions(2000)
FAST = {"limits": {"max_concurrency": 64, "timeout_s": 1.0, "max_attempts": 10}}


def results(folder: str) -> pd.DataFrame:
    frame = pd.read_parquet(Path(folder) / "results.parquet")
    return frame[["model", "row_id", "output", "error_class"]]


def test_faults_leave_every_row_answered_as_in_a_fault_free_run(
    prefect_server: str, tmp_path: Path, sim: SimEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = {"oracle": 1.0, "coin": 0.5}
    for name in ("clean", "faulty"):
        folder = write_suite(tmp_path / "e", name, ROWS, sim.base_url, {m: FAST for m in models})
    monkeypatch.setenv("EVALFLOW_EVALS_DIR", str(folder))
    sim.configure(answer_key=answer_key(ROWS), models=models)
    clean = evaluate(suite="clean", chunk_size=250, weave_project="local/faults-clean")
    clean_stats = sim.stats()
    sim.configure(
        answer_key=answer_key(ROWS),
        models=models,
        seed=5,
        error_500=0.05,
        error_502=0.03,
        error_503=0.02,
        error_429=0.05,
        hang=0.02,
        hang_seconds=3.0,
        drop=0.01,
        malformed=0.01,
    )
    faulty = evaluate(suite="faulty", chunk_size=250, weave_project="local/faults-faulty")
    stats = sim.stats()
    assert clean_stats["by_status"] == {"200": 4000}
    assert stats["by_status"]["200"] == 4000  # every row answered exactly once
    assert stats["total"] > 4400  # and the faults were real
    pd.testing.assert_frame_equal(results(clean["folder"]), results(faulty["folder"]))


def test_insufficient_quota_fails_fast(
    prefect_server: str, tmp_path: Path, sim: SimEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = write_suite(tmp_path / "q", "quota", ROWS[:200], sim.base_url, {"oracle": FAST})
    monkeypatch.setenv("EVALFLOW_EVALS_DIR", str(folder))
    sim.configure(answer_key=answer_key(ROWS), quota=1.0)
    started = time.monotonic()
    with pytest.raises(FatalRequestError, match=r"\(429\): You exceeded your current quota"):
        evaluate(suite="quota", chunk_size=20, weave_project="local/quota")
    assert time.monotonic() - started < 15
    # 10 chunks of 20 on 4 threads: the chunks running at the first refusal send their first
    # wave (80 at most, nothing retried); chunks started after it send nothing, bar a race or
    # two with the flow noticing it.
    assert sim.stats()["total"] <= 120


def test_a_killed_run_started_again_does_not_ask_again_for_saved_answers(
    prefect_server: str, tmp_path: Path, sim: SimEndpoint
) -> None:
    limits = {"limits": {"max_concurrency": 16, "timeout_s": 5.0}}
    folder = write_suite(tmp_path / "k", "killed", ROWS, sim.base_url, {"oracle": limits})
    sim.configure(answer_key=answer_key(ROWS), latency_ms=20)
    env = {**os.environ, "EVALFLOW_EVALS_DIR": str(folder), "PREFECT_API_URL": prefect_server}
    command = [
        sys.executable,
        "-m",
        "evalflow.cli",
        "run",
        "killed",
        "--chunk-size",
        "100",
        "--weave-project",
        "local/killed",
    ]
    sent_before_kills = []
    for point in (300, 900, 1500):  # three kills at different points of the run
        proc = subprocess.Popen(
            command,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while sim.stats()["by_status"].get("200", 0) < point and time.monotonic() < deadline:
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        sent_before_kills.append(sim.stats()["by_status"].get("200", 0))
    assert 0 < sent_before_kills[0] < sent_before_kills[-1] < 2000
    final = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr
    sent = sim.stats()["by_status"]["200"]
    # Only requests in flight at each kill (16 at most) may be sent twice.
    assert 2000 <= sent <= 2000 + 3 * 16
    run_folder = next(
        line.split(": ", 1)[1] for line in final.stdout.splitlines() if line.startswith("results: ")
    )
    frame = results(run_folder)
    assert len(frame) == 2000 and frame["error_class"].isna().all()
    assert list(frame["output"]) == [r["answer"] for r in ROWS]


def test_two_processes_share_one_rate_limit(
    prefect_server: str, tmp_path: Path, sim: SimEndpoint
) -> None:
    rows = questions(300)
    sim.configure(answer_key=answer_key(rows), latency_ms=10)
    procs = start_shared_runs(tmp_path, rows, sim.base_url, prefect_server, rpm=1200)  # 20/s
    try:
        for proc in procs:
            assert proc.wait(timeout=300) == 0, proc.stderr.read() if proc.stderr else ""
    finally:  # a failed run must not leave the other one talking to the shared endpoint
        for proc in procs:
            proc.kill()
            proc.wait()
    stats = sim.stats()
    assert stats["by_status"] == {"200": 600}
    rate = 599 / stats["answering_seconds"]
    print(f"combined rate {rate:.2f} requests/s under a shared limit of 20")
    assert 0.9 * 20 <= rate <= 1.05 * 20, rate


def test_a_token_budget_stops_new_requests_and_saves_what_exists(
    prefect_server: str, tmp_path: Path, sim: SimEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from evalflow.errors import BudgetExceededError

    folder = write_suite(
        tmp_path / "b",
        "budget",
        ROWS[:300],
        sim.base_url,
        {"oracle": {"limits": {"max_concurrency": 4}}},
    )
    monkeypatch.setenv("EVALFLOW_EVALS_DIR", str(folder))
    sim.configure(answer_key=answer_key(ROWS))
    with pytest.raises(BudgetExceededError, match=r"token budget of 1,000 \(\d[\d,]* spent") as e:
        evaluate(suite="budget", max_tokens=1000, weave_project="local/budget")
    stats = sim.stats()
    sent, tokens = stats["total"], stats["tokens"]["prompt"] + stats["tokens"]["completion"]
    assert 0 < sent < 300
    assert 1000 <= tokens <= 1000 + 4 * 15  # past the budget by what was in flight (4 at most)
    run_folder = Path(str(e.value).split("saved in ")[1].split(",")[0])
    summary = json.loads((run_folder / "summary.json").read_text())
    assert summary["complete"] is False
    frame = pd.read_parquet(run_folder / "results.parquet")
    assert (frame["error_class"] == "BudgetStop").sum() == 300 - sent


def test_a_canary_key_reaches_no_file_log_or_artifact(
    prefect_server: str,
    tmp_path: Path,
    sim: SimEndpoint,
    monkeypatch: pytest.MonkeyPatch,
    evalflow_home: Path,
) -> None:
    canary = "sk-canary-0a1b2c3d4e5f60718293a4b5c6d7e8f9"
    monkeypatch.setenv("SIM_KEY", canary)
    folder = write_suite(
        tmp_path / "c", "canary", ROWS[:50], sim.base_url, {"oracle": {"api_key_env": "SIM_KEY"}}
    )
    monkeypatch.setenv("EVALFLOW_EVALS_DIR", str(folder))
    sim.configure(answer_key=answer_key(ROWS), api_key=canary)
    evaluate(suite="canary", weave_project="local/canary-run")
    assert sim.stats()["by_status"] == {"200": 50}  # the key was used
    for path in evalflow_home.rglob("*"):
        if path.is_file():
            assert canary.encode() not in path.read_bytes(), path
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        logs = client.read_logs()
        artifacts = client.read_artifacts()
        runs = client.read_flow_runs()
    assert all(canary not in log.message for log in logs)
    assert all(canary not in str(a.data) + str(a.description) for a in artifacts)
    assert all(canary not in str(r.parameters) for r in runs)


def test_retry_errors_re_runs_only_the_failed_rows_of_a_run(
    prefect_server: str, tmp_path: Path, sim: SimEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = ROWS[:200]
    once = {"limits": {"max_attempts": 1, "max_concurrency": 8}}  # a 500 fails its row
    folder = write_suite(tmp_path / "e", "flaky", rows, sim.base_url, {"oracle": once})
    env = {**os.environ, "EVALFLOW_EVALS_DIR": str(folder), "PREFECT_API_URL": prefect_server}
    sim.configure(answer_key=answer_key(rows), error_500=0.2)
    monkeypatch.setenv("EVALFLOW_EVALS_DIR", str(folder))
    first = evaluate(suite="flaky", max_error_fraction=1.0, weave_project="local/flaky")
    failed = results(first["folder"])["error_class"].notna().sum()
    assert 10 < failed < 80  # about 20% of 200

    sim.configure(error_500=0.0)  # healthy again; counters reset
    command = [sys.executable, "-m", "evalflow.cli", "run", "flaky"]
    retry = subprocess.run(
        [*command, "--retry-errors", first["run_id"]],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert retry.returncode == 0, retry.stderr
    assert sim.stats()["total"] == failed  # the answered rows were not asked again
    assert f"run {first['run_id']} finished" in retry.stdout
    frame = results(first["folder"])
    assert len(frame) == 200 and frame["error_class"].isna().all()
    assert list(frame["output"]) == [r["answer"] for r in rows]

    wrong_suite = subprocess.run(
        [sys.executable, "-m", "evalflow.cli", "run", "other", "--retry-errors", first["run_id"]],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    unknown = subprocess.run(
        [*command, "--retry-errors", "flaky-20260101-0000000000"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    for refused in (wrong_suite, unknown):
        assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr
    assert "evaluated suite 'flaky', not 'other'" in wrong_suite.stderr
    assert "no run 'flaky-20260101-0000000000'" in unknown.stderr
    assert first["run_id"] in unknown.stderr  # the known runs are listed
    assert sim.stats()["total"] == failed  # the refused commands sent nothing

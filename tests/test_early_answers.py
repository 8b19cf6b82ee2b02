"""`evalflow run` asks a run's rows while Prefect gets ready: the first request goes out before
the flow run starts, every row is still asked once, and a run that ends before its flow takes
those answers keeps them (journaled) and sends nothing more. Real Prefect server, the
simulated endpoint counting at /_stats, the real openai client."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
from prefect.client.schemas.sorting import FlowRunSort

from evalflow.early_answers import asking_early
from evalflow.endpoints import SimEndpoint
from evalflow.plan import RunPlan, RunRequest, plan_run
from evalflow.run_context import RunContext, open_run
from evalflow.weave_setup import init_weave
from flows.evaluate import evaluate
from tests.suites import answer_key, questions, write_suite

LIMITS = {"limits": {"max_concurrency": 8, "timeout_s": 10.0}}


def test_the_first_request_goes_out_before_the_flow_run_starts_and_each_request_is_sent_once(
    prefect_server: str, tmp_path: Path, sim: SimEndpoint
) -> None:
    rows = questions(300)
    folder = write_suite(tmp_path / "e", "early", rows, sim.base_url, {"oracle": LIMITS})
    sim.configure(answer_key=answer_key(rows), latency_ms=20)
    reset_at = time.time()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "evalflow.cli",
            "run",
            "early",
            "--chunk-size",
            "100",
            "--epochs",
            "2",
        ],
        env={**os.environ, "EVALFLOW_EVALS_DIR": str(folder), "PREFECT_API_URL": prefect_server},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    stats = sim.stats()
    assert stats["by_status"] == {"200": 600}  # 300 rows, 2 epochs: each request once
    first_request = reset_at + stats["first_request_after_s"]
    named = FlowRunFilter(name=FlowRunFilterName(any_=["early: the suite's models"]))
    with get_client(sync_client=True) as client:
        (flow_run,) = client.read_flow_runs(
            flow_run_filter=named,
            sort=FlowRunSort.START_TIME_DESC,
            limit=1,
        )
    assert flow_run.start_time is not None
    assert first_request < flow_run.start_time.timestamp(), (first_request, flow_run.start_time)
    folder_line = next(line for line in done.stdout.splitlines() if line.startswith("results: "))
    results = pd.read_parquet(Path(folder_line.removeprefix("results: ")) / "results.parquet")
    assert len(results) == 600 and results["error"].isna().all()
    assert sorted(results.groupby("row_id")["epoch"].apply(sorted).map(tuple).unique()) == [(0, 1)]
    # oracle answers every question right: each answer went to its own row and epoch
    assert (results["output"] == results["target"]).all()
    assert "oracle  1.000" in done.stdout


def test_a_run_ended_before_its_flow_took_the_early_answers_keeps_them_and_sends_no_more(
    prefect_server: str, tmp_path: Path, sim: SimEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = _planned("halted", 400, 100, tmp_path, sim, monkeypatch)
    with open_run(plan) as run, asking_early(plan, run):
        _wait_answered(run, 40)
    # The context closed: nothing is in flight, nothing more is sent.
    sent = sim.stats()["by_status"].get("200", 0)
    time.sleep(0.5)
    assert sim.stats()["by_status"].get("200", 0) == sent
    assert 40 <= sent < 400  # closed while asking: not the whole dataset
    journaled = sum(
        len(path.read_text().splitlines())
        for path in (Path(run.folder) / "answers").rglob("*.jsonl")
    )
    assert journaled == sent  # every answer paid for is saved

    result = evaluate(suite="halted", chunk_size=50, weave_project="local/halted")
    stats = sim.stats()
    assert stats["by_status"] == {"200": 400}  # across both: each row paid once
    assert stats["repeated"] == 0
    assert result["run_id"] == plan.run_id
    (figures,) = result["summary"]
    assert figures["rows"] == 400 and figures["exact_match"] == 1.0


def test_rows_are_asked_past_the_task_runners_chunks_before_the_flow_takes_any(
    prefect_server: str, tmp_path: Path, sim: SimEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 600 rows in chunks of 50: twelve chunks, three times the flow's task runner threads. The
    # cold temporary server is ready seconds after the first request; the asking goes on
    # meanwhile (EARLY_ROWS), not only the runner's four chunks (200 rows).
    plan = _planned("ahead", 600, 5, tmp_path, sim, monkeypatch)
    assert plan.early_chunks() > 4
    with open_run(plan) as run, asking_early(plan, run):
        _wait_answered(run, 600)
        assert run.progress.snapshot()["done"] == 600  # no chunk was taken
    assert sim.stats()["by_status"] == {"200": 600}


def _planned(
    name: str,
    n: int,
    latency_ms: int,
    tmp_path: Path,
    sim: SimEndpoint,
    monkeypatch: pytest.MonkeyPatch,
) -> RunPlan:
    """A planned run of suite `name` (n rows, chunks of 50, oracle on the simulated endpoint
    at `latency_ms`) on the local Weave project of the same name."""
    rows = questions(n)
    folder = write_suite(tmp_path / "e", name, rows, sim.base_url, {"oracle": LIMITS})
    monkeypatch.setenv("EVALFLOW_EVALS_DIR", str(folder))
    sim.configure(answer_key=answer_key(rows), latency_ms=latency_ms)
    plan = plan_run(RunRequest(suite=name, chunk_size=50, weave_project=f"local/{name}"))
    init_weave(f"local/{name}")
    return plan


def _wait_answered(run: RunContext, n: int) -> None:
    """Until `n` rows are answered (at most 60 s)."""
    deadline = time.monotonic() + 60
    while run.progress.snapshot()["done"] < n and time.monotonic() < deadline:
        time.sleep(0.05)

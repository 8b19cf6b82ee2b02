"""The evaluation flow on a real Prefect server, the real weave client on the local store, and
the simulated endpoint (counted at /_stats)."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest

from evalflow.dataset import BLOCK_ROWS, Row
from evalflow.endpoints import SimEndpoint
from evalflow.errors import ConfigError, DatasetError, FatalRequestError, UnknownNameError
from evalflow.evaluation import read_leaderboard
from evalflow.weave_setup import init_weave
from flows.evaluate import evaluate
from tests.suites import answer_key, expected_accuracy, questions, write_suite

ROWS = questions(150)


@pytest.fixture
def evals(tmp_path: Path, sim: SimEndpoint, monkeypatch: pytest.MonkeyPatch) -> Path:
    sim.configure(answer_key=answer_key(ROWS), models={"oracle": 1.0, "coin": 0.5})
    folder = write_suite(
        tmp_path / "evals", "arith", ROWS, sim.base_url, {"oracle": {}, "coin": {}}
    )
    monkeypatch.setenv("EVALFLOW_EVALS_DIR", str(folder))
    return folder


def test_n_rows_m_models_send_n_times_m_requests_and_rank_as_expected(
    prefect_server: str, evals: Path, sim: SimEndpoint
) -> None:
    result = evaluate(suite="arith", chunk_size=40, weave_project="local/flow-counts")
    assert sim.stats()["by_model"] == {"oracle": {"200": 150}, "coin": {"200": 150}}
    frame = pd.read_parquet(Path(result["folder"]) / "results.parquet")
    assert len(frame) == 300 and frame["error_class"].isna().all()
    coin = expected_accuracy("coin", 0.5, ROWS)
    board = {row["model"]: row for row in read_leaderboard("arith")}
    assert board["oracle"]["exact_match"] == 1.0
    assert board["coin"]["exact_match"] == pytest.approx(coin)
    summary = json.loads((Path(result["folder"]) / "summary.json").read_text())
    by_model = {s["model"]: s for s in summary["summary"]}
    assert by_model["coin"]["exact_match"] == pytest.approx(coin)
    assert 0 < by_model["coin"]["exact_match stderr"] < 0.1


def test_the_leaderboard_command_prints_the_same_table_in_a_new_process(
    prefect_server: str, evals: Path, evalflow_home: Path
) -> None:
    evaluate(suite="arith", weave_project="local/flow-cli")
    expected = read_leaderboard("arith")
    env = {**os.environ, "EVALFLOW_EVALS_DIR": str(evals)}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "evalflow.cli",
            "leaderboard",
            "arith",
            "--json",
            "--weave-project",
            "local/flow-cli",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    printed = json.loads(out.stdout)
    assert [e.pop("vs_leader")["status"] for e in printed] == ["behind", "leader"]  # coin, oracle
    assert printed == expected


def test_bad_rows_fail_before_any_request(
    prefect_server: str, tmp_path: Path, sim: SimEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [json.dumps(r) for r in ROWS[:3]] + ["{broken", json.dumps({"id": "x"})]
    folder = write_suite(tmp_path / "e", "bad", rows, sim.base_url, {"oracle": {}})
    monkeypatch.setenv("EVALFLOW_EVALS_DIR", str(folder))
    with pytest.raises(DatasetError, match=r"line 4: not valid JSON[\s\S]*line 5: missing"):
        evaluate(suite="bad", weave_project="local/flow-bad")
    assert sim.stats()["total"] == 0


def test_unknown_model_and_suite_name_the_known_ones(prefect_server: str, evals: Path) -> None:
    with pytest.raises(UnknownNameError, match="known models: coin, oracle"):
        evaluate(suite="arith", models=["gpt-99"], weave_project="local/flow-unknown")
    with pytest.raises(UnknownNameError, match="known suites: arith"):
        evaluate(suite="nope", weave_project="local/flow-unknown")


@pytest.mark.parametrize(
    ("profile", "status"), [({"api_key": "k"}, "401"), ({"models": {}}, "404")]
)
def test_fatal_endpoint_errors_fail_fast_and_publish_nothing(
    prefect_server: str, evals: Path, sim: SimEndpoint, profile: dict[str, object], status: str
) -> None:
    sim.configure(answer_key=answer_key(ROWS), **profile)
    project = f"local/flow-fatal-{status}"
    with pytest.raises(FatalRequestError, match=status):
        evaluate(suite="arith", models=["oracle"], weave_project=project)
    init_weave(project)
    with pytest.raises(UnknownNameError):
        read_leaderboard("arith")


def test_broken_suite_config_is_one_clear_error(
    prefect_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "broken.yaml").write_text(
        "dataset: {path: x.jsonl}\nscorers: [{kind: telepathy}]\n"
    )
    monkeypatch.setenv("EVALFLOW_EVALS_DIR", str(tmp_path))
    with pytest.raises(ConfigError, match=r"broken.yaml: scorers.0.kind"):
        evaluate(suite="broken", weave_project="local/flow-broken")


def test_the_run_command_shows_progress_and_prints_its_own_figures(
    prefect_server: str, evals: Path, sim: SimEndpoint
) -> None:
    """Also: every request the endpoint answered is traced in Weave once, with its answer and
    its times, though the first ones are sent while weave is imported (early_traces.py)."""
    env = {**os.environ, "EVALFLOW_EVALS_DIR": str(evals), "PREFECT_API_URL": prefect_server}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "evalflow.cli",
            "run",
            "arith",
            "--limit",
            "30",
            "--weave-project",
            "local/cli-run",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "60/60 rows" in out.stderr  # the progress line
    lines = {line.split()[0]: line.split() for line in out.stdout.splitlines() if line.strip()}
    assert lines["oracle"][1] == "1.000"
    assert lines["oracle"][-2:] == ["30", "0"]  # n scored, errors
    assert "not on the leaderboard: a partial run (the first 30 rows" in out.stdout
    client = init_weave("local/cli-run")
    op = f"weave:///{client.project_id}/op/openai.chat.completions.create:*"
    calls = list(client.get_calls(filter={"op_names": [op]}))
    assert sim.stats()["total"] == len(calls) == 60
    assert (
        len({(c.attributes["evalflow.model"], c.attributes["evalflow.row_id"]) for c in calls})
        == 60
    )
    for call in calls:
        assert call.attributes["evalflow.suite"] == "arith" and call.exception is None
        assert call.output["choices"][0]["message"]["content"]
        assert call.started_at < call.ended_at


def test_the_run_command_fails_with_one_line_on_a_bad_key(
    prefect_server: str, evals: Path, sim: SimEndpoint
) -> None:
    sim.configure(api_key="the-real-key")
    env = {**os.environ, "EVALFLOW_EVALS_DIR": str(evals), "PREFECT_API_URL": prefect_server}
    out = subprocess.run(
        [sys.executable, "-m", "evalflow.cli", "run", "arith", "--weave-project", "local/cli-401"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert "error: model 'oracle'" in out.stderr or "error: model 'coin'" in out.stderr
    assert "(401)" in out.stderr


def _rows_alive() -> int:
    """Rows something holds: garbage the collector has not reached yet is not counted."""
    gc.collect()
    return sum(isinstance(o, Row) for o in gc.get_objects())


def test_answering_holds_a_few_chunks_of_rows_not_the_dataset(
    prefect_server: str, tmp_path: Path, sim: SimEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the rows are answered, the dataset's rows are made a chunk at a time as the
    chunks are taken up, so the rows alive at once are a few chunks' (plus the block of the
    stored dataset being read), whatever the dataset's size (bench/scale_findings.md)."""
    rows = questions(2_500)
    sim.configure(answer_key=answer_key(rows), models={"oracle": 1.0})
    folder = write_suite(tmp_path / "e", "many", rows, sim.base_url, {"oracle": {}})
    monkeypatch.setenv("EVALFLOW_EVALS_DIR", str(folder))
    del rows
    peak = 0
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not done.wait(0.1):
            if sim.stats()["total"] < 2_500:  # still answering (the steps after read rows)
                peak = max(peak, _rows_alive())

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        result = evaluate(suite="many", chunk_size=25, weave_project="local/flow-held")
    finally:
        done.set()
        watcher.join()
    assert sim.stats()["by_model"] == {"oracle": {"200": 2_500}}
    frame = pd.read_parquet(Path(result["folder"]) / "results.parquet")
    assert len(frame) == 2_500 and list(frame["row_id"]) == [f"q{i:04d}" for i in range(2_500)]
    assert peak <= BLOCK_ROWS + 16 * 25, f"{peak} rows alive at once while answering"


def test_chunks_smaller_than_the_concurrency_still_keep_every_slot_busy(
    prefect_server: str, tmp_path: Path, sim: SimEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model allowed 16 requests in flight, asked in chunks of 4 rows: the endpoint sees 16
    at once (several chunks run together), not one or two chunks' worth."""
    rows = questions(96)
    sim.configure(answer_key=answer_key(rows), models={"oracle": 1.0}, latency_ms=300)
    limits = {"limits": {"max_concurrency": 16}}
    folder = write_suite(tmp_path / "e", "small", rows, sim.base_url, {"oracle": limits})
    monkeypatch.setenv("EVALFLOW_EVALS_DIR", str(folder))
    evaluate(suite="small", chunk_size=4, weave_project="local/flow-small")
    stats = sim.stats()
    assert stats["by_model"] == {"oracle": {"200": 96}}
    assert stats["peak_in_flight"] == 16

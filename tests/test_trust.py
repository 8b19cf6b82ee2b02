"""Trust the numbers: every figure belongs to its run, no answer is paid twice, every mistake
is named before a request is sent. On a real Prefect server, the simulated endpoint counted at
/_stats, the real weave client on the local store."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from evalflow.endpoints import SimEndpoint, sim_endpoint
from evalflow.errors import (
    BudgetExceededError,
    EndpointUnreachableError,
    FatalRequestError,
    RunInProgressError,
    StorageError,
)
from evalflow.evaluation import read_leaderboard
from evalflow.runs import run_lock
from flows.evaluate import evaluate
from tests.suites import answer_key, expected_accuracy, questions, write_suite

ROWS = questions(40)


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "evalflow.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def evals(tmp_path: Path, sim: SimEndpoint, monkeypatch: pytest.MonkeyPatch) -> Path:
    sim.configure(answer_key=answer_key(ROWS), models={"oracle": 1.0, "coin": 0.5})
    folder = write_suite(
        tmp_path / "evals", "trust", ROWS, sim.base_url, {"oracle": {}, "coin": {}}
    )
    monkeypatch.setenv("EVALFLOW_EVALS_DIR", str(folder))
    return folder


def printed_figures(stdout: str) -> dict[str, str]:
    """model -> the mean printed for the first scorer, from `evalflow run`'s table."""
    figures = {}
    for line in stdout.splitlines():
        cells = line.split()
        if cells and cells[0] in ("oracle", "coin"):
            figures[cells[0]] = cells[1]
    return figures


def test_the_printed_figures_are_the_runs_own(
    prefect_server: str, evals: Path, evalflow_home: Path
) -> None:
    env = {"EVALFLOW_EVALS_DIR": str(evals), "PREFECT_API_URL": prefect_server}
    args = ["run", "trust", "--weave-project", "local/trust-figures"]
    outs = [cli(*args, "--limit", str(n), env=env) for n in (12, 4, 12)]
    for out, n in zip(outs, (12, 4, 12), strict=True):
        assert out.returncode == 0, out.stderr
        folder = next(x.split(": ", 1)[1] for x in out.stdout.splitlines() if "results: " in x)
        summary = json.loads((Path(folder) / "summary.json").read_text())
        own = {s["model"]: f"{s['exact_match']:.3f}" for s in summary["summary"]}
        assert printed_figures(out.stdout) == own
        assert own["coin"] == f"{expected_accuracy('coin', 0.5, ROWS[:n]):.3f}"
    assert printed_figures(outs[0].stdout) == printed_figures(outs[2].stdout)
    assert printed_figures(outs[1].stdout) != printed_figures(outs[0].stdout)


def test_partial_runs_stay_off_the_leaderboard_unless_asked(
    prefect_server: str, evals: Path, sim: SimEndpoint
) -> None:
    project = "local/trust-partial"
    full = evaluate(suite="trust", weave_project=project)
    assert full["leaderboard"] and full["scope"] == "all 40 rows"
    before = read_leaderboard("trust")
    assert [(e["model"], e["n"]) for e in before] == [("coin", 40), ("oracle", 40)]
    partial = evaluate(suite="trust", limit=4, weave_project=project)
    assert partial["leaderboard"] is None and "first 4 rows" in partial["scope"]
    assert read_leaderboard("trust") == before
    asked = evaluate(suite="trust", limit=4, leaderboard=True, weave_project=project)
    assert asked["leaderboard"]
    assert read_leaderboard("trust") != before


def test_an_edited_row_is_asked_again_and_the_others_are_reused(
    prefect_server: str, evals: Path, sim: SimEndpoint
) -> None:
    first = evaluate(suite="trust", models=["oracle"], weave_project="local/trust-edit")
    assert sim.stats()["total"] == 40
    edited = [dict(r) for r in ROWS]
    for i in (3, 7):  # new questions under the same ids
        edited[i]["question"] = f"What is {i} times 100?"
        edited[i]["answer"] = str(i * 100)
    (evals / "trust.jsonl").write_text("".join(json.dumps(r) + "\n" for r in edited))
    sim.configure(answer_key=answer_key(edited), models={"oracle": 1.0})
    second = evaluate(suite="trust", models=["oracle"], weave_project="local/trust-edit")
    assert sim.stats()["total"] == 2  # only the edited rows
    assert first["run_id"] == second["run_id"]
    frame = pd.read_parquet(Path(second["folder"]) / "results.parquet")
    assert list(frame["output"]) == [r["answer"] for r in edited]
    assert frame["input"].str.contains("3 times 100").sum() == 1
    assert second["summary"][0]["exact_match"] == 1.0


def test_fresh_asks_every_row_again(prefect_server: str, evals: Path, sim: SimEndpoint) -> None:
    evaluate(suite="trust", models=["oracle"], limit=5, weave_project="local/trust-fresh")
    evaluate(suite="trust", models=["oracle"], limit=5, weave_project="local/trust-fresh")
    assert sim.stats()["total"] == 5
    evaluate(suite="trust", models=["oracle"], limit=5, fresh=True, weave_project="local/t-fresh")
    assert sim.stats()["total"] == 10


def test_a_run_held_by_another_process_is_refused_and_sends_nothing(
    prefect_server: str, evals: Path, sim: SimEndpoint
) -> None:
    project = "local/trust-lock"
    done = evaluate(suite="trust", models=["oracle"], limit=3, weave_project=project)
    sim.configure(answer_key=answer_key(ROWS), models={"oracle": 1.0})
    with (
        run_lock(done["run_id"]),
        pytest.raises(RunInProgressError, match=f"run {done['run_id']} is already running"),
    ):
        evaluate(suite="trust", models=["oracle"], limit=3, fresh=True, weave_project=project)
    assert sim.stats()["total"] == 0


def test_two_identical_commands_at_once_pay_each_answer_once(
    prefect_server: str, tmp_path: Path, sim: SimEndpoint
) -> None:
    rows = questions(600)
    limits = {"limits": {"max_concurrency": 8, "timeout_s": 5.0}}
    folder = write_suite(tmp_path / "e", "twice", rows, sim.base_url, {"oracle": limits})
    sim.configure(answer_key=answer_key(rows), latency_ms=20)
    env = {**os.environ, "EVALFLOW_EVALS_DIR": str(folder), "PREFECT_API_URL": prefect_server}
    command = [sys.executable, "-m", "evalflow.cli", "run", "twice", "--weave-project", "local/tw"]
    procs = [
        subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 1], outs
    refused = next(err for (_, err), p in zip(outs, procs, strict=True) if p.returncode == 1)
    assert "is already running (process" in refused and "Traceback" not in refused
    assert sim.stats()["by_status"] == {"200": 600}


def _mount(path: Path, size: str, *options: str) -> None:
    opts = ",".join((f"size={size}", *options))
    subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], check=True)


def _can_mount(tmp_path: Path) -> bool:
    probe = tmp_path / "probe"
    probe.mkdir()
    try:
        _mount(probe, "64k")
    except (subprocess.CalledProcessError, FileNotFoundError):
        return False
    subprocess.run(["umount", str(probe)], check=True)
    return True


def test_a_full_disk_stops_the_run_and_loses_no_saved_answer(
    prefect_server: str, tmp_path: Path, sim: SimEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not _can_mount(tmp_path):
        pytest.skip(
            "a full disk is made as a 256 KB tmpfs of the test's own, and mounting one needs "
            "root (the README's test command runs as root, as CI does)"
        )
    rows = questions(3000)
    limits = {"limits": {"max_concurrency": 8, "timeout_s": 5.0}}
    folder = write_suite(tmp_path / "e", "full", rows, sim.base_url, {"oracle": limits})
    monkeypatch.setenv("EVALFLOW_EVALS_DIR", str(folder))
    monkeypatch.setenv("EVALFLOW_HOME", str(tmp_path / "home"))
    runs = tmp_path / "home" / "runs"
    runs.mkdir(parents=True)
    sim.configure(answer_key=answer_key(rows))
    _mount(runs, "256k")
    try:
        with pytest.raises(StorageError, match="No space left on device") as failure:
            evaluate(suite="full", chunk_size=500, weave_project="local/full")
        assert "\n" not in str(failure.value)
        paid = sim.stats()["by_status"]["200"]
        journals = list(runs.glob("*/answers/*/*.jsonl"))
        saved = sum(
            1
            for path in journals
            for line in path.read_bytes().split(b"\n")
            if line.strip() and _complete(line)
        )
        assert 0 < saved <= paid <= saved + 4 * 8  # lost: only what was in flight
        assert paid < 3000  # it stopped at once
        subprocess.run(["mount", "-o", "remount,size=64m", str(runs)], check=True)
        sim.configure(answer_key=answer_key(rows))
        result = evaluate(suite="full", chunk_size=500, weave_project="local/full")
        assert sim.stats()["by_status"]["200"] == 3000 - saved  # every saved line was read
        frame = pd.read_parquet(Path(result["folder"]) / "results.parquet")
        assert list(frame["output"]) == [r["answer"] for r in rows]
    finally:
        subprocess.run(["umount", "-l", str(runs)], check=False)


def _complete(line: bytes) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


def test_a_dead_endpoint_is_named_before_any_row_is_sent(
    prefect_server: str, evals: Path, sim: SimEndpoint
) -> None:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    dead = f"http://127.0.0.1:{port}/v1"
    started = time.monotonic()
    with pytest.raises(EndpointUnreachableError, match=f"endpoint {dead} cannot be reached"):
        evaluate(suite="trust", models=["oracle"], base_url=dead, weave_project="local/t-dead")
    assert time.monotonic() - started < 30  # not 60 retries over 29 s
    out = cli("run", "trust", "-m", "oracle", "--base-url", dead, env={"PREFECT_API_URL": ""})
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [out.stderr.strip()]
    assert f"endpoint {dead} cannot be reached" in out.stderr


def test_a_registered_model_keeps_its_key_on_another_base_url(
    prefect_server: str, tmp_path: Path, sim: SimEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = {"oracle": {"api_key_env": "TRUST_SIM_KEY"}}
    folder = write_suite(tmp_path / "e", "keyed", ROWS[:5], "http://127.0.0.1:9/v1", models)
    monkeypatch.setenv("EVALFLOW_EVALS_DIR", str(folder))
    monkeypatch.setenv("TRUST_SIM_KEY", "the-right-key-123")
    sim.configure(answer_key=answer_key(ROWS), api_key="the-right-key-123")
    result = evaluate(suite="keyed", base_url=sim.base_url, weave_project="local/t-key")
    assert result["summary"][0]["exact_match"] == 1.0
    assert sim.stats()["by_status"] == {"200": 5}


def test_a_key_echoed_by_the_endpoint_is_shown_and_stored_nowhere(
    prefect_server: str, tmp_path: Path, sim: SimEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.client.orchestration import get_client

    canary = "sk-canary-echoed-0123456789"
    models = {"oracle": {"api_key_env": "TRUST_WRONG_KEY"}}
    folder = write_suite(tmp_path / "e", "echo", ROWS[:5], sim.base_url, models)
    monkeypatch.setenv("EVALFLOW_EVALS_DIR", str(folder))
    monkeypatch.setenv("TRUST_WRONG_KEY", canary)
    sim.configure(answer_key=answer_key(ROWS), api_key="another", echo_key=True)
    with pytest.raises(FatalRequestError, match="refused its key") as failure:
        evaluate(suite="echo", weave_project="local/t-echo")
    assert canary not in str(failure.value)
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(limit=20)
        messages = " ".join(str(r.state.message) for r in runs if r.state)
    assert canary not in messages
    out = cli("run", "echo", env={"PREFECT_API_URL": prefect_server})
    assert out.returncode == 1 and canary not in out.stderr + out.stdout


def test_any_model_name_stays_inside_the_home(
    prefect_server: str, tmp_path: Path, sim: SimEndpoint, evalflow_home: Path
) -> None:
    hostile = "../../../../../" + str(tmp_path / "elsewhere" / "x").lstrip("/")
    folder = write_suite(tmp_path / "e", "names", ROWS[:3], sim.base_url, {"oracle": {}})
    sim.configure(answer_key=answer_key(ROWS), models={hostile: 1.0})
    os.environ["EVALFLOW_EVALS_DIR"] = str(folder)
    try:
        result = evaluate(
            suite="names", models=[hostile], base_url=sim.base_url, weave_project="local/t-n"
        )
    finally:
        del os.environ["EVALFLOW_EVALS_DIR"]
    assert not (tmp_path / "elsewhere").exists()
    journals = list(Path(result["folder"]).glob("answers/*/*.jsonl"))
    assert len(journals) == 1 and journals[0].resolve().is_relative_to(evalflow_home)


def test_wandb_inference_usage_is_billed_to_the_project(
    prefect_server: str, tmp_path: Path, sim: SimEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = {"oracle": {"endpoint": "wandb", "project": "my-team/my-evals"}}
    folder = write_suite(tmp_path / "e", "billed", ROWS[:4], "http://unused", models)
    (folder / "models.yaml").write_text(
        "models:\n  - {name: oracle, model: oracle, endpoint: wandb, project: my-team/my-evals}\n"
    )
    monkeypatch.setenv("EVALFLOW_EVALS_DIR", str(folder))
    monkeypatch.setenv("EVALFLOW_WANDB_BASE_URL", sim.base_url)
    monkeypatch.setenv("WANDB_API_KEY", "wandb-key-for-the-test")
    sim.configure(answer_key=answer_key(ROWS), api_key="wandb-key-for-the-test")
    evaluate(suite="billed", weave_project="local/t-billed")
    assert sim.stats()["projects"] == {"my-team/my-evals": 4}


def test_two_runs_in_one_process_keep_their_own_budgets_and_figures(
    prefect_server: str, tmp_path: Path, sim: SimEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = questions(300)
    limits = {"limits": {"max_concurrency": 4}}
    with sim_endpoint(answer_key=answer_key(rows), latency_ms=5) as other:
        write_suite(tmp_path / "e", "left", rows, sim.base_url, {"oracle": limits})
        folder = write_suite(tmp_path / "e", "right", rows, other.base_url, {"coin": limits})
        (folder / "models.yaml").write_text(
            "models:\n"
            f"  - {{name: oracle, model: oracle, endpoint: '{sim.base_url}'}}\n"
            f"  - {{name: coin, model: sim-half, endpoint: '{other.base_url}'}}\n"
        )
        monkeypatch.setenv("EVALFLOW_EVALS_DIR", str(folder))
        sim.configure(answer_key=answer_key(rows), latency_ms=5)
        outcomes: dict[str, Any] = {}

        def run(name: str, **options: Any) -> None:
            try:
                outcomes[name] = evaluate(suite=name, weave_project=f"local/t-{name}", **options)
            except BaseException as exc:
                outcomes[name] = exc

        threads = [
            threading.Thread(target=run, args=("left",), kwargs={"max_tokens": 2000}),
            threading.Thread(target=run, args=("right",)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        right_stats = other.stats()
    assert isinstance(outcomes["left"], BudgetExceededError), outcomes["left"]
    assert sim.stats()["total"] < 300  # the budget stopped the left run
    right = outcomes["right"]
    assert isinstance(right, dict), right
    assert right_stats["total"] == 300  # the right run's budget was its own (none)
    [summary] = right["summary"]
    assert summary["rows"] == 300 and summary["errors"] == 0
    assert summary["exact_match"] == pytest.approx(expected_accuracy("sim-half", 0.5, rows))


def test_failures_lists_a_runs_failed_and_wrong_rows(
    prefect_server: str, evals: Path, sim: SimEndpoint
) -> None:
    result = evaluate(suite="trust", models=["coin"], limit=10, weave_project="local/t-fail")
    out = cli("failures", result["run_id"], "--json")
    assert out.returncode == 0, out.stderr
    listed = json.loads(out.stdout)
    wrong = round(10 * (1 - result["summary"][0]["exact_match"]))
    assert len(listed) == wrong and all(r["problem"] == "wrong: exact_match" for r in listed)
    unknown = cli("failures", "../../etc")
    assert unknown.returncode == 1 and "Traceback" not in unknown.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["run", "nosuch"], "unknown suite 'nosuch'"),
        (["run", "trust", "-m", "gpt-99"], "unknown model 'gpt-99'"),
        (["run", "trust", "--base-url", "notaurl"], "is not an http(s) URL"),
        (["run", "trust", "--base-url", "http://"], "names no host"),
        (["run", "trust", "--concurrency", "5000"], "concurrency"),
        (["run", "trust", "--chunk-size", "20000"], "chunk-size"),
        (["run", "trust", "--max-error-fraction", "2"], "max-error-fraction"),
        (["run", "trust", "--no-such-option"], "No such option"),
        (["failures"], "Missing argument"),
    ],
)
def test_a_users_mistake_is_one_line_before_prefect_starts(
    evals: Path, sim: SimEndpoint, args: list[str], says: str
) -> None:
    started = time.monotonic()
    out = cli(*args, env={"PREFECT_API_URL": ""})
    took = time.monotonic() - started
    print(f"{args}: {took:.2f} s")
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr
    assert says in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert took < 10  # Prefect never started (it takes 6 s or more here)
    assert sim.stats()["total"] == 0


def test_a_prefect_api_url_where_nothing_answers_is_one_line_and_sends_nothing(
    evals: Path, sim: SimEndpoint
) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = cli("run", "trust", env={"PREFECT_API_URL": f"http://127.0.0.1:{port}/api"})
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr
    assert f"PREFECT_API_URL http://127.0.0.1:{port}/api: no Prefect server answers" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert sim.stats()["total"] == 0


def test_a_read_only_home_is_one_line(evals: Path, tmp_path: Path, sim: SimEndpoint) -> None:
    home = tmp_path / "ro-home"
    home.mkdir()
    mounted = _can_mount(tmp_path)
    if mounted:  # root ignores file modes: a read-only filesystem
        _mount(home, "1m", "ro")
    else:
        home.chmod(0o555)
    try:
        out = cli("run", "trust", env={"EVALFLOW_HOME": str(home), "PREFECT_API_URL": ""})
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(home)], check=False)
        home.chmod(0o755)
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    why = "Read-only file system" if mounted else "Permission denied"
    assert why in out.stderr and str(home) in out.stderr
    assert sim.stats()["total"] == 0


def test_a_scorer_mistake_is_one_line_before_any_request(tmp_path: Path, sim: SimEndpoint) -> None:
    scorers = [{"kind": "python", "path": "tests.scorer_fixtures.wants_a_rationale"}]
    folder = write_suite(
        tmp_path / "e", "scored", ROWS[:5], sim.base_url, {"oracle": {}}, scorers=scorers
    )
    out = cli("run", "scored", env={"EVALFLOW_EVALS_DIR": str(folder), "PREFECT_API_URL": ""})
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert "rationale" in out.stderr
    assert sim.stats()["total"] == 0


def test_a_run_past_its_error_budget_shows_its_failed_chunks(
    prefect_server: str, tmp_path: Path, sim: SimEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    limits = {"limits": {"max_attempts": 1}}
    folder = write_suite(tmp_path / "e", "broken", ROWS, sim.base_url, {"oracle": limits})
    monkeypatch.setenv("EVALFLOW_EVALS_DIR", str(folder))
    sim.configure(answer_key=answer_key(ROWS), error_500=1.0)
    state = evaluate(
        suite="broken", chunk_size=10, weave_project="local/t-broken", return_state=True
    )
    assert state.is_failed()
    with pytest.raises(BudgetExceededError, match="error budget"):
        state.result()
    with get_client(sync_client=True) as client:
        flow_run_id = state.state_details.flow_run_id
        tasks = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    chunks = [t for t in tasks if t.name.startswith("infer-oracle-")]
    assert chunks and all(t.state is not None and t.state.is_failed() for t in chunks)


def test_models_list_names_the_registry_it_reads(tmp_path: Path) -> None:
    empty = cli("models", "list", env={"EVALFLOW_EVALS_DIR": str(tmp_path)})
    assert empty.returncode == 0, empty.stderr
    assert f"{tmp_path / 'models.yaml'} (not found: no models registered)" in empty.stdout
    registry = tmp_path / "elsewhere.yaml"
    registry.write_text(
        "models:\n  - {name: mine, model: m-1, endpoint: 'http://127.0.0.1:9/v1'}\n"
    )
    found = cli(
        "models",
        "list",
        env={"EVALFLOW_EVALS_DIR": str(tmp_path), "EVALFLOW_MODELS": str(registry)},
    )
    assert found.returncode == 0, found.stderr
    assert str(registry) in found.stdout and "mine" in found.stdout and "m-1" in found.stdout


def test_a_cost_budget_stops_new_requests_and_saves_what_exists(
    prefect_server: str, tmp_path: Path, sim: SimEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = questions(300)
    priced = {"limits": {"max_concurrency": 4}, "price_in": 1000.0, "price_out": 2000.0}
    folder = write_suite(tmp_path / "e", "costly", rows, sim.base_url, {"oracle": priced})
    monkeypatch.setenv("EVALFLOW_EVALS_DIR", str(folder))
    sim.configure(answer_key=answer_key(rows))
    with pytest.raises(BudgetExceededError, match=r"cost budget of \$1\.00"):
        evaluate(suite="costly", max_cost=1.0, weave_project="local/t-cost")
    stats = sim.stats()
    spent = (stats["tokens"]["prompt"] * 1000 + stats["tokens"]["completion"] * 2000) / 1e6
    assert 0 < stats["total"] < 300
    assert 1.0 <= spent <= 1.0 + 4 * 0.05  # past it by what was in flight (4 at most)


def test_a_cost_budget_needs_prices(evals: Path, sim: SimEndpoint) -> None:
    out = cli("run", "trust", "--max-cost", "5", env={"PREFECT_API_URL": ""})
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "--max-cost needs the prices of every model" in out.stderr
    assert sim.stats()["total"] == 0

"""A Weave store that cannot be read or written says so in one line naming its file; only a
leaderboard that does not exist means "no evaluations"; secrets stay out of every call record."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import weave
from weave.flow.leaderboard import Leaderboard, LeaderboardColumn

from evalflow.endpoints import SimEndpoint
from evalflow.errors import UnknownNameError, WeaveStoreError
from evalflow.evaluation import read_leaderboard
from evalflow.weave_setup import flush_weave, init_weave
from tests.suites import answer_key, questions, write_suite

CANARY = "sk-canary-0d9c8b7a6f5e4d3c2b1a00112233445566"


def _store(home: Path, name: str) -> Path:
    return home / "weave" / f"{name}.sqlite"


def _run(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def _publish_boards(project: str, suites: list[str]) -> None:
    """In another process: a leaderboard per suite (the store's file is then closed)."""
    out = _run(
        f"""
        import weave
        from weave.flow.leaderboard import Leaderboard, LeaderboardColumn
        from evalflow.weave_setup import flush_weave, init_weave
        client = init_weave({project!r})
        data = weave.Dataset(name="filler", rows=[{{"i": i, "t": "x" * 200}} for i in range(400)])
        weave.publish(data)
        for suite in {suites!r}:
            column = LeaderboardColumn(
                evaluation_object_ref="weave:///{project}/object/e:1",
                scorer_name="exact_match",
                summary_metric_path="correct.mean",
            )
            weave.publish(Leaderboard(name=suite + "-leaderboard", columns=[column]),
                          name=suite + "-leaderboard")
        flush_weave(client)
        """
    )
    assert out.returncode == 0, out.stderr


def _checkpoint(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


@pytest.mark.parametrize("damage", ["random bytes", "a directory", "under a file"])
def test_an_unusable_store_file_is_one_line_naming_it(evalflow_home: Path, damage: str) -> None:
    name = f"unusable-{damage.replace(' ', '-')}"
    path = _store(evalflow_home, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    if damage == "random bytes":
        path.write_bytes(os.urandom(64 * 1024))
    elif damage == "a directory":
        path.mkdir()
    else:
        (evalflow_home / "weave-blocker").write_text("a file, not a folder")
        path = evalflow_home / "weave-blocker" / f"{name}.sqlite"
    code = f"""
        import weave
        from evalflow.weave_local.server import LocalTraceServer
        from evalflow.weave_setup import init_weave
        from pathlib import Path
        server = LocalTraceServer(Path({str(path)!r}))
        """
    out = _run(code)
    assert out.returncode == 1
    assert "WeaveStoreError" in out.stderr and str(path) in out.stderr
    if damage != "under a file":  # the same through init_weave and the CLI
        cli = subprocess.run(
            [sys.executable, "-m", "evalflow.cli", "weave", "calls", "--project", f"local/{name}"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert cli.returncode == 1
        assert "Traceback" not in cli.stderr
        (line,) = cli.stderr.strip().splitlines()
        assert line.startswith("error: Weave store") and str(path) in line


def test_a_truncated_store_is_an_error_not_an_unknown_leaderboard(evalflow_home: Path) -> None:
    project = "local/truncated"
    _publish_boards(project, ["arith"])
    path = _store(evalflow_home, "truncated")
    _checkpoint(path)
    with path.open("r+b") as f:
        f.truncate(path.stat().st_size // 4)
    with pytest.raises(WeaveStoreError, match=str(path)):  # when opened, or when first read
        init_weave(project)
        read_leaderboard("arith")


def test_a_damaged_leaderboard_record_is_an_error(evalflow_home: Path) -> None:
    project = "local/damaged-board"
    _publish_boards(project, ["arith"])
    path = _store(evalflow_home, "damaged-board")
    conn = sqlite3.connect(path)
    damaged = 'UPDATE objects SET val=\'{"_type": "Leaderb\' WHERE object_id=?'
    conn.execute(damaged, ("arith-leaderboard",))
    conn.commit()
    conn.close()
    init_weave(project)
    with pytest.raises(WeaveStoreError, match=str(path) + r": cannot read .*'arith-leaderboard'"):
        read_leaderboard("arith")


def test_an_unknown_leaderboard_names_the_existing_ones(evalflow_home: Path) -> None:
    project = "local/known-boards"
    _publish_boards(project, ["arith", "qa"])
    init_weave(project)
    with pytest.raises(UnknownNameError, match=r"unknown leaderboard 'TYPO'.*: arith, qa$"):
        read_leaderboard("TYPO")


@pytest.fixture
def arith_on_sim(tmp_path: Path, sim: SimEndpoint, monkeypatch: pytest.MonkeyPatch) -> SimEndpoint:
    """A 20-row suite `arith` of one model, oracle, on the simulated endpoint (returned)."""
    rows = questions(20)
    sim.configure(answer_key=answer_key(rows))
    folder = write_suite(tmp_path / "evals", "arith", rows, sim.base_url, {"oracle": {}})
    monkeypatch.setenv("EVALFLOW_EVALS_DIR", str(folder))
    return sim


def _evalflow(prefect_server: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The evalflow command, run against the test's Prefect server."""
    return subprocess.run(
        [sys.executable, "-m", "evalflow.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PREFECT_API_URL": prefect_server},
        timeout=300,
    )


def test_backfill_on_a_truncated_store_stops_before_sending_anything(
    prefect_server: str, evalflow_home: Path, arith_on_sim: SimEndpoint
) -> None:
    project = "local/backfill-truncated"
    _publish_boards(project, ["arith"])
    path = _store(evalflow_home, "backfill-truncated")
    _checkpoint(path)
    with path.open("r+b") as f:
        f.truncate(path.stat().st_size // 4)
    out = _evalflow(prefect_server, "backfill", "oracle", "--weave-project", project)
    assert out.returncode == 1
    assert f"error: Weave store {path}" in out.stderr
    assert arith_on_sim.stats()["total"] == 0


def test_a_failed_write_is_reported_by_flush_weave(evalflow_home: Path) -> None:
    """The store's writer thread meets a write error (here a file size limit; a full disk or a
    read-only file likewise): flush_weave() raises one error naming the file."""
    out = _run(
        """
        import resource, signal, weave
        from evalflow.errors import WeaveStoreError
        from evalflow.weave_setup import flush_weave, init_weave
        client = init_weave("local/write-fails")
        @weave.op
        def work(i: int, text: str) -> int:
            return i
        work(0, "warm up")
        flush_weave(client)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (2_000_000, resource.RLIM_INFINITY))
        for i in range(400):
            work(i, "x" * 20_000)
        try:
            flush_weave(client)
        except WeaveStoreError as exc:
            print("raised:", exc)
        else:
            print("nothing raised")
        """
    )
    path = _store(evalflow_home, "write-fails")
    assert out.stdout.startswith("raised: Weave store"), out.stdout + out.stderr
    assert str(path) in out.stdout
    assert "disk I/O error" in out.stdout or "full" in out.stdout
    assert len(out.stdout.strip().splitlines()) == 1
    assert "Traceback" not in out.stderr


def test_a_secret_in_an_exception_never_reaches_the_store(
    evalflow_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROVIDER_API_KEY", CANARY)
    project = "local/canary-exception"
    init_weave(project)

    @weave.op
    def call_endpoint(prompt: str) -> str:
        key = os.environ["PROVIDER_API_KEY"]  # an error body that echoes the key it was sent
        raise RuntimeError(f"401 from the endpoint: invalid key {key!r} for {prompt}")

    @weave.op
    def outer() -> None:
        key = os.environ["PROVIDER_API_KEY"]
        with weave.attributes({"note": f"key {key}"}):
            call_endpoint(f"hello {key}")

    with pytest.raises(RuntimeError):
        outer()
    flush_weave(init_weave(project))
    files = list((evalflow_home / "weave").glob("canary-exception.sqlite*"))
    assert files
    for path in files:
        assert CANARY.encode() not in path.read_bytes(), path
    calls = list(init_weave(project).get_calls())
    failed = [c for c in calls if c.exception]
    assert failed and all("REDACTED" in c.exception for c in failed)


def test_weave_calls_shows_inputs_and_outputs_redacted(
    evalflow_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROVIDER_API_KEY", CANARY)
    project = "local/calls-view"
    init_weave(project)

    @weave.op
    def shout(text: str) -> str:
        return text.upper() + "!"

    @weave.op
    def refuse(text: str) -> str:
        raise ValueError(f"refused {text}")

    shout("hello there")
    with pytest.raises(ValueError):
        refuse("key " + os.environ["PROVIDER_API_KEY"])
    flush_weave(init_weave(project))

    def cli(*args: str) -> Any:
        out = subprocess.run(
            [sys.executable, "-m", "evalflow.cli", "weave", "calls", "--project", project, *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr
        return out.stdout

    calls = {c["op"]: c for c in json.loads(cli("--json"))}
    assert calls["shout"]["inputs"] == {"text": "hello there"}
    assert calls["shout"]["output"] == "HELLO THERE!"
    assert calls["shout"]["exception"] is None
    assert calls["refuse"]["inputs"] == {"text": "key REDACTED"}
    assert "refused key REDACTED" in calls["refuse"]["exception"]
    table = cli()
    assert "hello there" in table and "HELLO THERE!" in table
    assert CANARY not in table


def test_a_leaderboard_that_exists_reads_back(evalflow_home: Path) -> None:
    project = "local/board-reads"
    init_weave(project)
    column = LeaderboardColumn(
        evaluation_object_ref=f"weave:///{project}/object/e:1",
        scorer_name="exact_match",
        summary_metric_path="correct.mean",
    )
    weave.publish(Leaderboard(name="arith-leaderboard", columns=[column]), name="arith-leaderboard")
    flush_weave()
    assert read_leaderboard("arith") == []


def test_a_run_on_an_unusable_store_stops_before_sending_anything(
    prefect_server: str, evalflow_home: Path, arith_on_sim: SimEndpoint
) -> None:
    """`evalflow run` sends its first rows before weave is imported, but only once the local
    store has been opened and checked: a store that is not a database is one line, nothing sent."""
    path = _store(evalflow_home, "run-unusable")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(64 * 1024))
    out = _evalflow(prefect_server, "run", "arith", "--weave-project", "local/run-unusable")
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert f"error: Weave store {path}" in out.stderr
    assert arith_on_sim.stats()["total"] == 0


def test_switching_projects_never_leaves_weave_without_a_client(evalflow_home: Path) -> None:
    """Two runs of one process on two projects: while one switches weave's client, the other
    traces all along. The old client stays until the new one is made (opening a store
    reads its file), then the new one takes its place: weave never has no client."""
    import threading

    from weave.trace.context.weave_client_context import get_weave_client

    init_weave("local/switch-a")
    unset = 0
    stop = threading.Event()

    def trace_meanwhile() -> None:
        nonlocal unset
        while not stop.is_set():
            unset += get_weave_client() is None

    before = sys.getswitchinterval()
    sys.setswitchinterval(0.05)  # the other thread runs when a switch waits on the disk
    other = threading.Thread(target=trace_meanwhile)
    other.start()
    try:
        for n in range(6):
            init_weave(f"local/switch-{'ba'[n % 2]}")
    finally:
        stop.set()
        other.join()
        sys.setswitchinterval(before)
    assert unset == 0


def test_a_refused_switch_to_w_and_b_keeps_the_project_in_use(
    evalflow_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from weave.trace.context.weave_client_context import get_weave_client

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    client = init_weave("local/kept")
    with pytest.raises(WeaveStoreError, match="needs a key"):
        init_weave("team/proj")
    assert get_weave_client() is client  # what is traced still goes to local/kept
    assert init_weave("local/kept") is client

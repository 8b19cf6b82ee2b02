"""What evalflow leaves behind when it is stopped: on SIGTERM, SIGINT (and SIGKILL where the
kernel can help) no process it started keeps running, its ports are free, and the answers a
run already received are kept for the rerun. And where Prefect's state goes."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from evalflow.endpoints import SimEndpoint, SimProfile
from evalflow.endpoints.process import free_port, port_in_use
from evalflow.home import temporary_server_database_url
from evalflow.temporary_server import MIGRATE_VARS, migration_settings
from tests.suites import answer_key, questions, write_suite

REPO = Path(__file__).resolve().parent.parent


# --- processes, read from /proc --------------------------------------------------------------


def _stat(pid: int) -> tuple[int, str, str]:
    """(parent pid, start time, state) of a process."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2 :].split()
    return int(fields[1]), fields[19], fields[0]


def descendants(pid: int) -> dict[int, str]:
    """Every process below pid: {pid: start time} (the start time tells a reused pid apart)."""
    table: dict[int, tuple[int, str, str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                table[int(entry.name)] = _stat(int(entry.name))
    found: dict[int, str] = {}
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for child, (ppid, started, _state) in table.items():
            if ppid == parent and child not in found:
                found[child] = started
                frontier.append(child)
    return found


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return "?"


def still_running(procs: dict[int, str]) -> dict[int, str]:
    """Those of procs still running (not exited, not zombies): {pid: command line}."""
    left: dict[int, str] = {}
    for pid, started in procs.items():
        try:
            _ppid, now_started, state = _stat(pid)
        except (OSError, ValueError, IndexError):
            continue
        if now_started == started and state != "Z":
            left[pid] = command_line(pid)
    return left


def wait_until_gone(procs: dict[int, str], timeout: float) -> dict[int, str]:
    deadline = time.monotonic() + timeout
    while (left := still_running(procs)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def kill_all(procs: dict[int, str]) -> None:
    """Clean up after a failed test: nothing of ours stays on the shared machine."""
    for pid in still_running(procs):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def start(argv: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """A process writing to a file: a pipe would be held open by any child it leaves behind."""
    with log.open("w") as sink:
        return subprocess.Popen(
            argv, cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT, text=True
        )


def wait_for(condition: object, timeout: float, what: str, log: Path) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    pytest.fail(f"{what} within {timeout:.0f} s; its output:\n{log.read_text()[-3000:]}")


# --- the local LLM ---------------------------------------------------------------------------

SERVE_LLM = {
    "direct": [sys.executable, "-m", "evalflow.cli", "serve", "llm"],
    "uv-run": ["uv", "run", "--frozen", "evalflow", "serve", "llm"],
}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("how", "signum"),
    [("direct", signal.SIGTERM), ("uv-run", signal.SIGTERM), ("direct", signal.SIGKILL)],
)
def test_a_stopped_serve_llm_leaves_no_llama_process_and_frees_its_port(
    how: str, signum: int, tmp_path: Path
) -> None:
    assert shutil.which("uv"), "uv runs the tests (README), so it is on PATH"
    port = free_port()
    log = tmp_path / "serve.log"
    proc = start([*SERVE_LLM[how], "--port", str(port)], log)
    children: dict[int, str] = {}
    try:
        wait_for(
            lambda: httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200,
            180,
            "the local LLM did not answer",
            log,
        )
        children = descendants(proc.pid)
        assert any("llama_server" in command_line(pid) for pid in children), children
        proc.send_signal(signum)
        proc.wait(timeout=30)
        assert wait_until_gone(children, timeout=10) == {}
        deadline = time.monotonic() + 10  # a killed process's threads end a moment later
        while port_in_use("127.0.0.1", port) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not port_in_use("127.0.0.1", port)
    finally:
        proc.kill()
        kill_all(children)


def test_a_killed_owner_of_a_simulated_endpoint_leaves_no_server(tmp_path: Path) -> None:
    """sim_endpoint() in a program that is SIGKILLed: its server dies with it (no exit code
    of that program runs, so this is the kernel's doing: PR_SET_PDEATHSIG)."""
    log = tmp_path / "owner.log"
    owner = start(
        [
            sys.executable,
            "-c",
            "import time\n"
            "from evalflow.endpoints import sim_endpoint\n"
            "with sim_endpoint() as sim:\n"
            "    print(sim.base_url, flush=True)\n"
            "    time.sleep(600)\n",
        ],
        log,
    )
    children: dict[int, str] = {}
    try:
        wait_for(lambda: "http://" in log.read_text(), 60, "the endpoint did not start", log)
        url = log.read_text().strip().splitlines()[-1]
        children = descendants(owner.pid)
        assert children
        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=10)
        assert wait_until_gone(children, timeout=10) == {}
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/models", timeout=2)
    finally:
        owner.kill()
        kill_all(children)


# --- the simulated endpoint's command --------------------------------------------------------


def serve_sim_output(tmp_path: Path, *options: str) -> tuple[str, int]:
    """What `evalflow serve sim` prints until it listens, and its exit code after SIGTERM."""
    log = tmp_path / "sim.log"
    port = str(free_port())
    proc = start(
        [sys.executable, "-m", "evalflow.cli", "serve", "sim", "--port", port, *options], log
    )
    try:
        wait_for(lambda: "listening on" in log.read_text(), 60, "serve sim did not listen", log)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=15)
    finally:
        proc.kill()
    return log.read_text(), code


def test_serve_sim_without_an_answer_key_warns_that_every_model_answers_i_dont_know(
    tmp_path: Path,
) -> None:
    output, code = serve_sim_output(tmp_path)
    assert "warning: no --answer-key" in output and "I don't know." in output
    assert code == 128 + signal.SIGTERM
    key = tmp_path / "key.json"
    key.write_text(json.dumps({"What is 1 plus 1?": "2"}))
    output, _ = serve_sim_output(tmp_path, "--answer-key", str(key))
    assert "warning" not in output


# --- a run stopped midway, and where Prefect keeps its state ---------------------------------


@dataclass
class StoppedRun:
    code: int
    left: dict[int, str]
    # Each temporary Prefect server seen: (in the command's session, leads its own group).
    server_groups: list[tuple[bool, bool]]
    saved: int
    rows: int
    rerun_requests: int
    rerun: subprocess.CompletedProcess[str]
    home: Path
    user_home: Path
    output: str


def journal_answers(home: Path) -> int:
    """Complete answer lines in the runs' journals (EVALFLOW_HOME/runs/*/answers/**.jsonl)."""
    count = 0
    for path in home.glob("runs/*/answers/**/*.jsonl"):
        for line in path.read_text().splitlines():
            try:
                json.loads(line)
            except json.JSONDecodeError:
                continue
            count += 1
    return count


@pytest.fixture(scope="module")
def stopped_run(
    tmp_path_factory: pytest.TempPathFactory, sim_server: SimEndpoint
) -> Iterator[StoppedRun]:
    """`evalflow run` without PREFECT_API_URL (so on a temporary Prefect server) against a slow
    endpoint, SIGTERMed once 8 answers are in; then the same command again, to the end."""
    folder = tmp_path_factory.mktemp("stopped-run")
    rows = questions(40)
    # The session's endpoint as the default profile makes it (no key asked), whatever ran before.
    sim_server.configure(**SimProfile(answer_key=answer_key(rows), latency_ms=400).model_dump())
    evals = write_suite(folder / "evals", "slow", rows, sim_server.base_url, {"oracle": {}})
    home, user_home = folder / "home", folder / "user"
    user_home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(EVALFLOW_HOME=str(home), HOME=str(user_home), EVALFLOW_EVALS_DIR=str(evals))
    command = [sys.executable, "-m", "evalflow.cli", "run", "slow", "--chunk-size", "10"]
    command += ["--concurrency", "4"]
    log = folder / "run.log"
    proc = start(command, log, env)
    children: dict[int, str] = {}
    try:
        wait_for(lambda: sim_server.stats()["total"] >= 8, 240, "the run sent no 8 requests", log)
        children = descendants(proc.pid)
        servers = [pid for pid in children if "uvicorn" in command_line(pid)]
        groups = [(os.getsid(pid) == os.getsid(0), os.getpgid(pid) == pid) for pid in servers]
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            code = -999
        left = wait_until_gone(children, timeout=10)
        saved = journal_answers(home)
        time.sleep(2)  # the requests still in flight at the endpoint end (400 ms) and are counted
        sim_server.reset()
        rerun = subprocess.run(
            command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600
        )
        yield StoppedRun(
            code=code,
            left=left,
            server_groups=groups,
            saved=saved,
            rows=len(rows),
            rerun_requests=sim_server.stats()["total"],
            rerun=rerun,
            home=home,
            user_home=user_home,
            output=log.read_text()[-3000:],
        )
    finally:
        proc.kill()
        kill_all(children)
        sim_server.configure(latency_ms=0)


@pytest.mark.slow
def test_a_run_stopped_by_sigterm_leaves_no_process_and_its_rerun_reuses_its_answers(
    stopped_run: StoppedRun,
) -> None:
    run = stopped_run
    assert run.server_groups, run.output  # a temporary Prefect server was running
    assert run.code == 128 + signal.SIGTERM, run.output
    assert run.left == {}, run.output  # the temporary Prefect server (uvicorn) is gone
    assert run.saved >= 8, run.output
    assert run.rerun.returncode == 0, run.rerun.stderr[-3000:]
    assert run.rerun_requests == run.rows - run.saved


@pytest.mark.slow
def test_the_temporary_prefect_server_shares_the_commands_session_not_its_ctrl_c(
    stopped_run: StoppedRun,
) -> None:
    """In the command's session, the server's idle-priority imports give way to the run (Linux
    shares the CPU between sessions first); in a process group of its own, a Ctrl-C at the
    terminal reaches only evalflow, which stops the server after the run's last logs."""
    assert stopped_run.server_groups == [(True, True)], stopped_run.output


@pytest.mark.slow
def test_the_temporary_prefect_server_keeps_its_database_under_evalflow_home(
    stopped_run: StoppedRun,
) -> None:
    assert not (stopped_run.user_home / ".prefect").exists()
    assert (stopped_run.home / "prefect" / "temporary-server.db").stat().st_size > 0


def completed_flow_runs(database: Path) -> int:
    """The flow runs whose completion event the server has persisted (0 while it is busy)."""
    try:
        with contextlib.closing(sqlite3.connect(database, timeout=1)) as conn:
            (count,) = conn.execute(
                "SELECT count(*) FROM events WHERE event = 'prefect.flow-run.Completed'"
            ).fetchone()
    except sqlite3.OperationalError:  # locked by the server's last writes
        return 0
    return int(count)


@pytest.mark.slow
def test_the_temporary_server_persists_the_runs_last_events_after_the_command_returns(
    stopped_run: StoppedRun,
) -> None:
    """The command asks its temporary server to stop and returns without waiting for uvicorn's
    shutdown; the server finishes it by itself, the run's completion event persisted."""
    assert stopped_run.rerun.returncode == 0, stopped_run.rerun.stderr[-3000:]
    database = stopped_run.home / "prefect" / "temporary-server.db"
    deadline = time.monotonic() + 10
    while completed_flow_runs(database) == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert completed_flow_runs(database) == 1  # the rerun's; the stopped run did not complete


@pytest.mark.slow
def test_the_temporary_servers_database_is_migrated_once(
    stopped_run: StoppedRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A temporary server that got ready noted the database's migration: the next server
    started on it skips the check, unless the database's revision changed since or the user
    chose the setting."""
    for var in MIGRATE_VARS:
        monkeypatch.delenv(var, raising=False)
    url = temporary_server_database_url(stopped_run.home)
    database = stopped_run.home / "prefect" / "temporary-server.db"
    assert json.loads(database.with_name("temporary-server.db.migrated").read_text())["revision"]
    assert migration_settings(url) == {"PREFECT_SERVER_DATABASE_MIGRATE_ON_START": "false"}
    assert stopped_run.rerun.returncode == 0, stopped_run.rerun.stderr[-3000:]
    with contextlib.closing(sqlite3.connect(database)) as conn:
        (revision,) = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        conn.execute("UPDATE alembic_version SET version_num = 'an-older-one'")
        conn.commit()
        assert migration_settings(url) == {}
        conn.execute("UPDATE alembic_version SET version_num = ?", (revision,))
        conn.commit()
    monkeypatch.setenv("PREFECT_SERVER_DATABASE_MIGRATE_ON_START", "true")  # the user's choice
    assert migration_settings(url) == {}


@pytest.mark.slow
def test_a_flow_whose_temporary_server_lost_its_port_runs_on_the_one_started_again(
    stopped_run: StoppedRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The port chosen for the temporary server can be taken before the server binds it: it
    exits, evalflow starts it again on another port, and the flow runs with Prefect's client
    on that one, not on the URL prepared while the first was starting."""
    from prefect.settings import PREFECT_API_URL

    from evalflow import temporary_server
    from evalflow.cli import _call_when_ready
    from evalflow.home import DATABASE_URL_VAR

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv(DATABASE_URL_VAR, temporary_server_database_url(stopped_run.home))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        ports = iter([taken.getsockname()[1]])
        monkeypatch.setattr(temporary_server, "free_port", lambda: next(ports, None) or free_port())
        first = temporary_server.start_temporary_server()
        assert first is not None
        seen = _call_when_ready(lambda: {"api": str(PREFECT_API_URL.value())}, first)
    assert first.process.proc.returncode == temporary_server.PORT_TAKEN
    assert seen["api"] != first.api_url
    assert httpx.get(f"{seen['api']}/health", timeout=10).json() is True


@pytest.mark.slow
def test_a_killed_run_leaves_no_temporary_prefect_server(
    tmp_path: Path, sim_server: SimEndpoint
) -> None:
    """SIGKILL gives evalflow no chance to stop anything: the temporary Prefect server it
    started ends with it all the same (the kernel's parent-death signal)."""
    rows = questions(40)
    # The session's endpoint as the default profile makes it (no key asked), whatever ran before.
    sim_server.configure(**SimProfile(answer_key=answer_key(rows), latency_ms=400).model_dump())
    evals = write_suite(tmp_path / "evals", "slow", rows, sim_server.base_url, {"oracle": {}})
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(EVALFLOW_HOME=str(tmp_path / "home"), EVALFLOW_EVALS_DIR=str(evals))
    command = [sys.executable, "-m", "evalflow.cli", "run", "slow", "--concurrency", "4"]
    log = tmp_path / "run.log"
    proc = start(command, log, env)
    children: dict[int, str] = {}
    try:
        wait_for(lambda: sim_server.stats()["total"] >= 4, 240, "the run sent no request", log)
        children = descendants(proc.pid)
        assert any("uvicorn" in command_line(pid) for pid in children), children
        proc.kill()
        proc.wait(timeout=30)
        assert wait_until_gone(children, timeout=10) == {}
    finally:
        kill_all(children)
        sim_server.configure(latency_ms=0)


# --- Prefect's home: the user's choice first, and `evalflow up` apart ------------------------


def environment_of_a_new_process(env: dict[str, str], code: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    ).stdout.strip()


def test_a_prefect_home_the_user_chose_is_kept(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(EVALFLOW_HOME=str(tmp_path / "home"), PREFECT_HOME=str(tmp_path / "mine"))
    printed = environment_of_a_new_process(
        env,
        "import os, evalflow\n"
        "print(os.environ['PREFECT_HOME'], 'PREFECT_SERVER_DATABASE_CONNECTION_URL' in os.environ)",
    )
    assert printed == f"{tmp_path / 'mine'} False"


def test_evalflow_up_keeps_its_own_database_apart_from_the_temporary_servers(
    tmp_path: Path,
) -> None:
    """The stack's server keeps prefect.db under EVALFLOW_HOME/prefect (and reads no user
    profile), while runs without PREFECT_API_URL use temporary-server.db there."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(EVALFLOW_HOME=str(tmp_path / "home"), HOME=str(tmp_path / "user"))
    printed = environment_of_a_new_process(
        env,
        "import json, os\n"
        "from evalflow.stack import Stack\n"
        "stack = Stack(api_url='http://127.0.0.1:4200/api').env()\n"
        "keys = ('PREFECT_HOME', 'PREFECT_PROFILES_PATH',"
        " 'PREFECT_SERVER_DATABASE_CONNECTION_URL')\n"
        "print(json.dumps({'run': {k: os.environ.get(k) for k in keys},"
        " 'stack': {k: stack.get(k) for k in keys}}))",
    )
    seen = json.loads(printed)
    prefect_home = str((tmp_path / "home" / "prefect").resolve())
    assert seen["run"]["PREFECT_HOME"] == prefect_home
    assert seen["run"]["PREFECT_SERVER_DATABASE_CONNECTION_URL"].endswith(
        f"{prefect_home}/temporary-server.db"
    )
    assert seen["stack"] == {
        "PREFECT_HOME": prefect_home,
        "PREFECT_PROFILES_PATH": None,
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": None,
    }


# --- a deployment run cancelled through the Prefect API --------------------------------------


@pytest.mark.slow
def test_a_deployment_run_cancelled_through_the_api_leaves_no_process(
    prefect_server: str, sim: SimEndpoint, tmp_path: Path
) -> None:
    """A worker runs `evaluate` on a slow simulated model and the local LLM (which the flow run
    starts itself); the run is cancelled through the API: the flow run process, its llama.cpp
    server and the worker are all gone, and the run is Cancelled."""
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelling

    from tests.test_deployments import prefect_cli

    rows = questions(60)
    sim.configure(answer_key=answer_key(rows), latency_ms=500)
    evals = write_suite(tmp_path / "evals", "cancelled", rows, sim.base_url, {"oracle": {}})
    limits = {"max_concurrency": 2}
    registry = [
        {"name": "oracle", "model": "oracle", "endpoint": sim.base_url, "limits": limits},
        {"name": "gemma", "model": "gemma-3-270m", "endpoint": "local", "limits": limits},
    ]
    (evals / "models.yaml").write_text(json.dumps({"models": registry}))
    env = {k: v for k, v in os.environ.items() if k != "EVALFLOW_LOCAL_LLM_URL"}
    env.update(PREFECT_API_URL=prefect_server, EVALFLOW_EVALS_DIR=str(evals))
    env.update(EVALFLOW_REPO=str(REPO))
    if prefect_cli(prefect_server, "work-pool", "inspect", "evalflow").returncode != 0:
        pool = ("work-pool", "create", "evalflow", "--type", "process")
        created = prefect_cli(prefect_server, *pool)
        assert created.returncode == 0, created.stdout + created.stderr
    deployed = prefect_cli(prefect_server, "--no-prompt", "deploy", "--all", evals_dir=evals)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("evaluate/evaluate")
        run = client.create_flow_run_from_deployment(
            deployment.id,
            parameters={
                "suite": "cancelled",
                "models": ["oracle", "gemma"],
                "chunk_size": 10,
                "weave_project": "local/cancelled",
            },
        )
    log = tmp_path / "worker.log"
    worker_command = ["prefect", "worker", "start", "--pool", "evalflow", "--run-once"]
    worker = start([sys.executable, "-m", *worker_command], log, env)
    children: dict[int, str] = {}
    try:

        def llm_and_answers() -> bool:
            running = descendants(worker.pid)
            llm = any("llama_server" in command_line(pid) for pid in running)
            return llm and sim.stats()["total"] >= 4

        wait_for(llm_and_answers, 300, "the flow run did not start the LLM and ask", log)
        children = {worker.pid: _stat(worker.pid)[1], **descendants(worker.pid)}
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(run.id, Cancelling(), force=True)
        deadline = time.monotonic() + 120
        with get_client(sync_client=True) as client:
            while time.monotonic() < deadline:
                state = client.read_flow_run(run.id).state
                if state is not None and state.is_final():
                    break
                time.sleep(1)
        assert state is not None and state.is_cancelled(), (state, log.read_text()[-3000:])
        assert wait_until_gone(children, timeout=60) == {}, log.read_text()[-3000:]
        assert sim.stats()["total"] < len(rows)
    finally:
        worker.kill()
        kill_all(children)

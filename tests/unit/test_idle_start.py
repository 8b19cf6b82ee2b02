"""evalflow.idle_start: the module named first is imported at a low CPU priority (nice +10),
then the server module runs as `python -m` would run it, at normal priority (Prefect's
temporary server's imports give way to the run that started it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PROBE = """
import os, threading
PROBED = {"nice": os.getpriority(os.PRIO_PROCESS, 0), "thread": threading.current_thread().name}
"""
SERVE = """
import json, os, sys
probe = sys.modules.get("probe")
print(json.dumps({
    "argv": sys.argv[1:],
    "probe": probe.PROBED if probe else None,
    "nice": os.getpriority(os.PRIO_PROCESS, 0),
}))
"""


# A server that notes a SIGTERM and stops on it, or ignores it ("ignore" as its argument).
LINGER = """
import signal, sys, time
def stop(*_):
    print("SIGTERM", flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, signal.SIG_IGN if sys.argv[1:] == ["ignore"] else stop)
print("serving", flush=True)
time.sleep(60)
"""


def with_modules(tmp_path: Path) -> dict[str, str]:
    """The test's modules written to tmp_path; an environment that imports them."""
    (tmp_path / "probe.py").write_text(PROBE)
    (tmp_path / "serve.py").write_text(SERVE)
    (tmp_path / "linger.py").write_text(LINGER)
    (tmp_path / "broken.py").write_text("raise ImportError('broken on purpose')\n")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}


def run_idle_start(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "evalflow.idle_start", *args],
        env=with_modules(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_import_runs_at_a_low_priority_and_the_server_at_normal(tmp_path: Path) -> None:
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    done = run_idle_start(tmp_path, "probe", "-m", "serve", "--port", "8123")
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["argv"] == ["--port", "8123"]
    assert seen["probe"] == {"nice": min(ours + 10, 19), "thread": "idle-imports"}
    assert seen["nice"] == ours


def test_an_import_that_fails_is_left_to_the_server(tmp_path: Path) -> None:
    done = run_idle_start(tmp_path, "broken", "-m", "serve")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["argv"] == []


def test_a_command_without_a_module_to_run_says_how_to_call_it(tmp_path: Path) -> None:
    done = run_idle_start(tmp_path, "probe", "serve")
    assert done.returncode == 1
    assert "IMPORT -m MODULE" in done.stderr
    assert "Traceback" not in done.stderr


def start_with_lifeline(tmp_path: Path, *serve_args: str) -> subprocess.Popen[str]:
    command = ["-m", "evalflow.idle_start", "--until-stdin-closes", "1.5", "probe", "-m"]
    server = subprocess.Popen(
        [sys.executable, *command, "linger", *serve_args],
        env=with_modules(tmp_path),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None and server.stdout.readline() == "serving\n"
    return server


def test_a_server_with_a_lifeline_stops_gracefully_when_its_starter_lets_go(
    tmp_path: Path,
) -> None:
    """Its starter's end closes the pipe (as the kernel does at any exit, SIGKILL too): the
    server gets a SIGTERM, as from a stop, and shuts down in its own way."""
    server = start_with_lifeline(tmp_path)
    assert server.stdin is not None and server.stdout is not None
    time.sleep(0.5)
    assert server.poll() is None  # the pipe open: it serves on
    server.stdin.close()
    assert server.wait(timeout=10) == 0
    assert server.stdout.read() == "SIGTERM\n"


def test_a_server_that_ignores_the_stop_ends_after_its_grace(tmp_path: Path) -> None:
    server = start_with_lifeline(tmp_path, "ignore")
    assert server.stdin is not None
    closed = time.monotonic()
    server.stdin.close()
    assert server.wait(timeout=10) == 1
    assert time.monotonic() - closed >= 1.5


def test_a_lifeline_without_its_grace_says_how_to_call_it(tmp_path: Path) -> None:
    done = run_idle_start(tmp_path, "--until-stdin-closes", "soon", "probe", "-m", "serve")
    assert done.returncode == 1
    assert "usage: python -m evalflow.idle_start [--until-stdin-closes GRACE_S]" in done.stderr
    assert "Traceback" not in done.stderr

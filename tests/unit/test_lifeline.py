"""evalflow.lifeline: the server module runs as `python -m` would run it, at the command's own
CPU priority, and is stopped (SIGTERM, then ended after its grace) when its starter lets go of
its stdin."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SERVE = """
import json, os, sys
print(json.dumps({"argv": sys.argv[1:], "nice": os.getpriority(os.PRIO_PROCESS, 0)}))
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
    (tmp_path / "serve.py").write_text(SERVE)
    (tmp_path / "linger.py").write_text(LINGER)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}


def lifeline(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    """`python -m evalflow.lifeline ARGS...`, its stdin a pipe held open (as its starter holds
    it), its output piped."""
    return subprocess.Popen(
        [sys.executable, "-m", "evalflow.lifeline", *args],
        env=with_modules(tmp_path),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_lifeline(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The command run to its end with its stdin held open."""
    with lifeline(tmp_path, *args) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        out, err = proc.stdout.read(), proc.stderr.read()
        code = proc.wait(timeout=60)
    return subprocess.CompletedProcess(proc.args, code, out, err)


def test_the_server_runs_as_python_m_would_at_the_commands_priority(tmp_path: Path) -> None:
    done = run_lifeline(tmp_path, "1.5", "-m", "serve", "--port", "8123")
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen == {"argv": ["--port", "8123"], "nice": os.getpriority(os.PRIO_PROCESS, 0)}


def test_a_command_without_a_module_to_run_says_how_to_call_it(tmp_path: Path) -> None:
    done = run_lifeline(tmp_path, "1.5", "serve")
    assert done.returncode == 1
    assert "GRACE_S -m MODULE" in done.stderr
    assert "Traceback" not in done.stderr


def start_with_lifeline(tmp_path: Path, *serve_args: str) -> subprocess.Popen[str]:
    server = lifeline(tmp_path, "1.5", "-m", "linger", *serve_args)
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
    done = run_lifeline(tmp_path, "soon", "-m", "serve")
    assert done.returncode == 1
    assert "usage: python -m evalflow.lifeline GRACE_S -m MODULE" in done.stderr
    assert "Traceback" not in done.stderr

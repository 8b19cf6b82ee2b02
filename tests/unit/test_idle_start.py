"""evalflow.idle_start: the module named first is imported at idle CPU priority, then the
server module runs as `python -m` would run it, at normal priority (Prefect's temporary
server's imports give way to the run that started it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PROBE = """
import os, threading
PROBED = {"policy": os.sched_getscheduler(0), "thread": threading.current_thread().name}
"""
SERVE = """
import json, os, sys
probe = sys.modules.get("probe")
print(json.dumps({
    "argv": sys.argv[1:],
    "probe": probe.PROBED if probe else None,
    "policy": os.sched_getscheduler(0),
}))
"""


def run_idle_start(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "probe.py").write_text(PROBE)
    (tmp_path / "serve.py").write_text(SERVE)
    (tmp_path / "broken.py").write_text("raise ImportError('broken on purpose')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    return subprocess.run(
        [sys.executable, "-m", "evalflow.idle_start", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_import_runs_at_idle_priority_and_the_server_at_normal(tmp_path: Path) -> None:
    done = run_idle_start(tmp_path, "probe", "-m", "serve", "--port", "8123")
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["argv"] == ["--port", "8123"]
    assert seen["probe"] == {"policy": os.SCHED_IDLE, "thread": "idle-imports"}
    assert seen["policy"] == os.SCHED_OTHER


def test_an_import_that_fails_is_left_to_the_server(tmp_path: Path) -> None:
    done = run_idle_start(tmp_path, "broken", "-m", "serve")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["argv"] == []


def test_a_command_without_a_module_to_run_says_how_to_call_it(tmp_path: Path) -> None:
    done = run_idle_start(tmp_path, "probe", "serve")
    assert done.returncode == 1
    assert "usage: python -m evalflow.idle_start IMPORT -m MODULE" in done.stderr
    assert "Traceback" not in done.stderr

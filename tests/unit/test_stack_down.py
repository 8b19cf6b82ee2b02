"""`evalflow down` stops a background stack's processes, and kills one that outlives SIGTERM
(a Prefect worker once hung in its shutdown and outlived the stack)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evalflow.stack import Stopped, down, stack_file

POLITE = "import time\nwhile True: time.sleep(1)"
STUBBORN = (
    "import signal, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "open(__import__('sys').argv[1], 'w').close()\n"
    "while True: time.sleep(1)"
)


def _background(code: str, *args: str) -> int:
    """A process in a session of its own, reparented to init as `evalflow up --background`'s
    are (its starter exits at once); its pid."""
    shell = 'setsid "$0" -c "$1" "${@:2}" </dev/null >/dev/null 2>&1 & echo $!'
    out = subprocess.run(
        ["bash", "-c", shell, sys.executable, code, *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout)


def _running(pid: int) -> bool:
    """Whether the process runs (neither gone nor ended and waiting to be reaped)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return text[text.rindex(")") + 2] != "Z"


def test_down_kills_a_process_still_running_after_its_grace(
    evalflow_home: Path, tmp_path: Path
) -> None:
    ready = tmp_path / "ready"
    polite, stubborn = _background(POLITE), _background(STUBBORN, str(ready))
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():  # its SIGTERM handler is set
            assert time.monotonic() < deadline, "the stubborn process did not start"
            time.sleep(0.05)
        stack_file().write_text(json.dumps({"api_url": "", "pids": [polite, stubborn]}))
        started = time.monotonic()
        assert down(grace_s=1.0) == Stopped(stopped=2, killed=1)
        assert time.monotonic() - started < 10
        assert not _running(polite) and not _running(stubborn)
        assert not stack_file().exists()
    finally:
        for pid in (polite, stubborn):
            if _running(pid):
                subprocess.run(["kill", "-9", str(pid)], check=False)


def test_down_without_a_stack_stops_nothing(evalflow_home: Path) -> None:
    assert down(grace_s=0.1) == Stopped()


@pytest.fixture(autouse=True)
def _no_stack_left(evalflow_home: Path) -> None:
    stack_file().unlink(missing_ok=True)

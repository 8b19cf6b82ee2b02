"""Start a server whose imports yield the CPU: `python -m evalflow.idle_start IMPORT -m MODULE
ARGS...` imports the module IMPORT in a thread at a low CPU priority (nice +10), then runs
`python -m MODULE ARGS...` as usual, at normal priority.

Prefect's temporary server spends about 3 s of CPU before it answers, most of it (2.6 s)
importing `prefect.server.api.server`. `evalflow run` starts it first, so that it is ready when
the flow is; meanwhile the run is already asking its rows on the same two cores. On Linux, a
thread's nice value weighs its share of a busy CPU against the other threads of its session
(sched(7): the autogroup), so the imports take less of the CPU while the run wants it, and the
rest when it pauses. The server then builds its app and serves at normal priority: an
unprivileged process cannot raise a thread's priority again, so only the imports run in the
low-priority thread. (Building Prefect's app in that thread too was measured and left out: the
flow run's last state change then took 0.2 s instead of 0.03 s, for a reason not found.)
Elsewhere the imports run at normal priority, as before.

Why +10, not idle: under SCHED_IDLE (the imports ran only when no thread of the session wanted
the CPU) the run, whose Python threads keep about one core busy while it imports weave and
Prefect and asks its rows, starved the imports; the server got ready near the loop's end, and
the flow's work came after the last answer: 1,000 rows against the simulated endpoint on this
machine took 9.9-12.1 s (tail after the last answer 1.0-2.3 s) against 9.1-9.8 s at +10 (tail
0.65-0.76 s), four runs each, taken in turn.

An import that fails is left for the server's own import to report, with its own message.

With `--until-stdin-closes GRACE_S` first, the server also ends when the process that started
it ends: its stdin is a pipe that process holds and never writes, which the kernel closes when
that process exits, however it exits. The server is then asked to stop (SIGTERM: a graceful
shutdown, which for Prefect's server persists the run's last events) and ended GRACE_S seconds
later if it still runs. So `evalflow run` signals its temporary server at its exit and returns
at once, without waiting for the 0.2 s of uvicorn's shutdown, and a SIGKILLed run leaves no
server behind either.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import runpy
import signal
import sys
import threading
import time

USAGE = (
    "usage: python -m evalflow.idle_start [--until-stdin-closes GRACE_S] IMPORT -m MODULE [ARGS...]"
)
LIFELINE = "--until-stdin-closes"


IMPORTS_NICE = 10  # added to the imports thread's nice value (Linux: that thread's alone)


def low_priority() -> bool:
    """Lower the calling thread's CPU priority by IMPORTS_NICE (on Linux a thread's own);
    whether it was."""
    if not hasattr(os, "setpriority"):
        return False
    try:
        os.setpriority(os.PRIO_PROCESS, 0, os.getpriority(os.PRIO_PROCESS, 0) + IMPORTS_NICE)
    except OSError:
        return False
    return True


def import_idle(name: str) -> None:
    """Import `name` at a low priority (anything it raises is left for its next import)."""
    low_priority()
    with contextlib.suppress(Exception):
        importlib.import_module(name)


def end_with_stdin(grace_s: float) -> None:
    """Wait until stdin closes, then SIGTERM this process, and end it `grace_s` later."""
    with contextlib.suppress(OSError):
        while os.read(0, 4096):  # nothing is written: only its end is awaited
            pass
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(grace_s)
    os._exit(1)


def main(argv: list[str]) -> None:
    if argv[:1] == [LIFELINE]:
        try:
            grace_s = float(argv[1])
        except (IndexError, ValueError):
            sys.exit(USAGE)
        argv = argv[2:]
        threading.Thread(
            target=end_with_stdin, args=(grace_s,), name="lifeline", daemon=True
        ).start()
    if len(argv) < 3 or argv[1] != "-m":
        sys.exit(USAGE)
    name, module, args = argv[0], argv[2], argv[3:]
    imports = threading.Thread(target=import_idle, args=(name,), name="idle-imports")
    imports.start()
    imports.join()
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])

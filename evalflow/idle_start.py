"""Start a server whose imports yield the CPU: `python -m evalflow.idle_start IMPORT -m MODULE
ARGS...` imports the module IMPORT in a thread at idle CPU priority, then runs
`python -m MODULE ARGS...` as usual, at normal priority.

Prefect's temporary server spends about 3 s of CPU before it answers, most of it (2.6 s)
importing `prefect.server.api.server`. `evalflow run` starts it first, so that it is ready when
the flow is; meanwhile the run is already asking its rows on the same two cores. On Linux, a
thread under SCHED_IDLE (sched(7)) runs only when no other thread of its session wants the CPU,
and gives way at once when one wakes: the imports take what the run leaves. The server then
builds its app and serves at normal priority: an unprivileged process cannot raise a thread's
priority again, so only the imports run in the idle thread. (Building Prefect's app in that
thread too was measured and left out: the flow run's last state change then took 0.2 s instead
of 0.03 s, for a reason not found.) Elsewhere the imports run at normal priority, as before.

An import that fails is left for the server's own import to report, with its own message.

A limit: a process of the same session that keeps every core busy (a CPU-bound job started
from the same shell) holds the imports back until it pauses; the server's start then waits,
within its startup timeout, while the run's first rows are asked. `evalflow up` or
PREFECT_API_URL needs no temporary server at all.

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


def idle_priority() -> bool:
    """Put the calling thread under SCHED_IDLE (Linux); whether it is."""
    if not hasattr(os, "SCHED_IDLE"):
        return False
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except OSError:
        return False
    return True


def import_idle(name: str) -> None:
    """Import `name` at idle priority (anything it raises is left for its next import)."""
    idle_priority()
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

"""Run a server that ends with the process that started it: `python -m evalflow.lifeline
GRACE_S -m MODULE ARGS...` runs `python -m MODULE ARGS...` as usual, and watches its stdin.

Its stdin is a pipe the starting process holds and never writes, which the kernel closes when
that process exits, however it exits. The server is then asked to stop (SIGTERM: a graceful
shutdown, which for Prefect's server persists the run's last events) and ended GRACE_S seconds
later if it still runs. So `evalflow run` signals its temporary server at its exit and returns
at once, without waiting for the 0.2 s of uvicorn's shutdown, and a SIGKILLed run leaves no
server behind either.

The server runs at the command's own CPU priority. Its imports ran at a lower one before (nice
+10, and SCHED_IDLE before that) to leave the CPU to the run's rows; measured again once the
client's CPU per row had come down, the lower priority made the server ready later (in 9 of 12
pairs of runs, by a median of 1.05 s on this 2-core machine), which could put the flow's start
after the last answer, and the loop was no faster: 1,000 rows, six runs of each in turn, median
whole command 9.82 -> 9.61 s on the simulated endpoint and 10.61 -> 10.45 s on the plain one
(0.8-1.5 s less in three of three pairs while the machine was busy).
"""

from __future__ import annotations

import contextlib
import os
import runpy
import signal
import sys
import threading
import time

USAGE = "usage: python -m evalflow.lifeline GRACE_S -m MODULE [ARGS...]"


def end_with_stdin(grace_s: float) -> None:
    """Wait until stdin closes, then SIGTERM this process, and end it `grace_s` later."""
    with contextlib.suppress(OSError):
        while os.read(0, 4096):  # nothing is written: only its end is awaited
            pass
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(grace_s)
    os._exit(1)


def main(argv: list[str]) -> None:
    try:
        grace_s = float(argv[0])
    except (IndexError, ValueError):
        sys.exit(USAGE)
    if len(argv) < 3 or argv[1] != "-m":
        sys.exit(USAGE)
    module, args = argv[2], argv[3:]
    threading.Thread(target=end_with_stdin, args=(grace_s,), name="lifeline", daemon=True).start()
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])

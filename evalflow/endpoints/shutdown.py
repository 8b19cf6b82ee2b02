"""Ending evalflow on SIGTERM, SIGINT or SIGHUP with nothing it started left running.

A stop signal becomes KeyboardInterrupt in the main thread (the Ctrl-C path), so context
managers (`local_llm()`, `sim_endpoint()`, the stack of `evalflow up`) stop their children.
The CLI then leaves with `exit_after_signal`: it stops the server processes still running, the
temporary Prefect server prefect started (which prefect itself stops only at exit, and a
signal without a handler skips exit handlers), runs the exit handlers (Weave's flush), and
exits without waiting for the worker threads of a run: they would go on sending the requests
of their chunks. The answers already received are in the run's journal; a rerun reuses them.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import threading
from dataclasses import dataclass
from types import FrameType
from typing import NoReturn

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


@dataclass
class _Received:
    """The first stop signal this process received (one per process, as signals are)."""

    signum: int | None = None


_received = _Received()


def _interrupt(signum: int, frame: FrameType | None) -> None:
    if _received.signum is None:
        _received.signum = signum
    raise KeyboardInterrupt


def install_stop_signals() -> None:
    """Turn SIGTERM, SIGINT and SIGHUP into KeyboardInterrupt in the main thread.

    A signal the process was told to ignore (nohup, a background job) stays ignored."""
    for signum in STOP_SIGNALS:
        if signal.getsignal(signum) in (signal.SIG_DFL, signal.default_int_handler):
            signal.signal(signum, _interrupt)


def stop_signal() -> int | None:
    """The stop signal received so far, if any."""
    return _received.signum


def note_termination(exc: BaseException) -> bool:
    """True (and SIGTERM noted) if exc is Prefect's TerminationSignal: Prefect's own SIGTERM
    handler, installed while a flow runs in the main thread, raises it instead of ours."""
    if type(exc).__name__ == "TerminationSignal" and type(exc).__module__.startswith("prefect"):
        if _received.signum is None:
            _received.signum = signal.SIGTERM
        return True
    return False


def stop_temporary_prefect_servers() -> None:
    """Stop the temporary Prefect servers (uvicorn) prefect started in this process (found
    through the guarded read in evalflow/patches/prefect.py; without it, the exit handler
    prefect registered for each server stops it in exit_after_signal)."""
    from evalflow.patches.prefect import temporary_servers

    for server in temporary_servers():
        with contextlib.suppress(Exception):
            server.stop()


def exit_after_signal(signum: int, grace_s: float = 20.0) -> NoReturn:
    """Stop everything this process started, then exit with 128 + signum at once.

    Further stop signals are ignored meanwhile; after grace_s the process exits regardless."""
    for each in STOP_SIGNALS:
        signal.signal(each, signal.SIG_IGN)
    watchdog = threading.Timer(grace_s, os._exit, (128 + signum,))
    watchdog.daemon = True
    watchdog.start()
    sys.stderr.write(f"\nstopped by {signal.Signals(signum).name}\n")
    started = sys.modules.get("evalflow.endpoints.process")  # not imported: none started
    if started is not None:
        started.stop_all()
    stop_temporary_prefect_servers()
    with contextlib.suppress(Exception):
        atexit._run_exitfuncs()  # CPython's own runner of exit handlers (os._exit skips them)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(128 + signum)

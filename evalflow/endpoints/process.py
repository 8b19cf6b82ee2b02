"""Start a server as a child process, wait until it answers, and always stop it."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from evalflow.errors import EndpointError
from evalflow.home import offline_environment
from evalflow.tls import ssl_context


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


PR_SET_PDEATHSIG = 1  # linux/prctl.h

_LIVE: weakref.WeakSet[ServerProcess] = weakref.WeakSet()


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn that makes the child get SIGKILL when the thread that started it ends
    (on Linux; None elsewhere), so not even a SIGKILLed evalflow leaves its servers behind."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def arm() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before the line above
            os._exit(1)

    return arm


def stop_all() -> None:
    """Stop every server process this process started and has not stopped."""
    for proc in list(_LIVE):
        with contextlib.suppress(Exception):
            proc.stop(timeout=5.0)


class ServerProcess:
    """A child process serving HTTP; its output is kept (last lines) for error messages.

    With a log file, the child writes to it directly and we follow the file; without one, we
    read a pipe. The child ends with the thread that started it (die_with_parent, on Linux),
    unless it is meant to outlive us (`evalflow up --background`): start it from a thread that
    lives as long as the server is used.

    The child leads a process group of its own, so a Ctrl-C at the terminal reaches only
    evalflow, which stops it in order. It also leads a session of its own unless
    `own_session` is false. Linux's scheduler (autogroup, on by default) gives each session
    an equal share of the CPU: a child that only helps this command (Prefect's temporary
    server) stays in the command's session, its threads sharing the command's share.

    With `lifeline`, the child's stdin is a pipe this process holds, closed by the kernel when
    this process ends: a child that watches it (python -m evalflow.lifeline GRACE_S -m ...)
    stops by itself then, gracefully, instead of the kernel's SIGKILL of die_with_parent; and
    `stop(wait=False)` may leave it to finish its shutdown after this process is gone.
    """

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str] | None = None,
        log_path: Path | None = None,
        die_with_parent: bool = True,
        own_session: bool = True,
        lifeline: bool = False,
    ) -> None:
        self.name = name
        self.tail: deque[str] = deque(maxlen=40)
        self.first_line = threading.Event()
        self.url: str | None = None
        full_env = {**os.environ, **offline_environment(), **(env or {})}
        sink: Any = subprocess.PIPE
        offset = 0
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            sink = log_path.open("a", encoding="utf-8")
            offset = sink.tell()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, *argv],
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.PIPE if lifeline else subprocess.DEVNULL,
                env=full_env,
                text=True,
                bufsize=1,
                start_new_session=own_session,
                process_group=None if own_session else 0,
                preexec_fn=_die_with_parent() if die_with_parent and not lifeline else None,
            )
        finally:
            if log_path is not None:
                sink.close()  # the child has its own handle
        self._reader = threading.Thread(
            target=self._read_pipe if log_path is None else self._follow,
            args=() if log_path is None else (log_path, offset),
            daemon=True,
        )
        self._reader.start()
        _LIVE.add(self)

    def _take(self, line: str) -> None:
        self.tail.append(line.rstrip("\n"))
        if line.startswith("listening on ") and self.url is None:
            self.url = line.removeprefix("listening on ").strip()
            self.first_line.set()

    def _read_pipe(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._take(line)
        self.first_line.set()

    def _follow(self, path: Path, offset: int) -> None:
        with path.open(encoding="utf-8", errors="replace") as handle:
            handle.seek(offset)
            pending = ""
            while True:
                piece = handle.readline()
                if piece:
                    pending += piece
                    if pending.endswith("\n"):
                        self._take(pending)
                        pending = ""
                    continue
                if self.proc.poll() is not None:  # gone: read what it wrote last
                    for line in (pending + handle.read()).splitlines():
                        self._take(line)
                    break
                time.sleep(0.05)
        self.first_line.set()

    def output(self) -> str:
        return "\n".join(self.tail)

    def wait_ready(self, probe: Callable[[], bool], timeout: float) -> None:
        """Wait until probe() is true; raise EndpointError if the process dies or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._reader.join(timeout=2)
                raise EndpointError(
                    f"{self.name} exited with code {self.proc.returncode} while starting:\n"
                    f"{self.output()}"
                )
            try:
                if probe():
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise EndpointError(f"{self.name} did not answer within {timeout:.0f} s:\n{self.output()}")

    def wait_url(self, timeout: float) -> str:
        """Wait for the `listening on URL` line the process prints once bound."""
        self.wait_ready(lambda: self.url is not None, timeout)
        assert self.url is not None
        return self.url

    def stop(self, timeout: float = 10.0, wait: bool = True) -> None:
        """SIGTERM the process group, then SIGKILL if it lingers; without `wait`, only the
        SIGTERM (a child with a lifeline ends by itself at the latest after this process)."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            if not wait:
                _LIVE.discard(self)
                return
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=timeout)
        _LIVE.discard(self)
        self._reader.join(timeout=2)


def answers(url: str) -> bool:
    """True when GET url answers 200."""
    return httpx.get(url, timeout=2.0, verify=ssl_context()).status_code == 200

"""Start a server as a child process, wait until it answers, and always stop it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import httpx

from evalflow.errors import EndpointError
from evalflow.home import offline_environment


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


class ServerProcess:
    """A child process serving HTTP; its output is kept (last lines) for error messages."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str] | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.name = name
        self.tail: deque[str] = deque(maxlen=40)
        self.first_line = threading.Event()
        self.url: str | None = None
        full_env = {**os.environ, **offline_environment(), **(env or {})}
        self._log = log_path.open("a", encoding="utf-8") if log_path else None
        self.proc = subprocess.Popen(
            [sys.executable, *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=full_env,
            text=True,
            bufsize=1,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.tail.append(line.rstrip("\n"))
            if self._log is not None:
                self._log.write(line)
                self._log.flush()
            if line.startswith("listening on ") and self.url is None:
                self.url = line.removeprefix("listening on ").strip()
                self.first_line.set()
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

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group, then SIGKILL if it lingers."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=timeout)
        self._reader.join(timeout=2)
        if self._log is not None:
            self._log.close()
            self._log = None


def answers(url: str) -> bool:
    """True when GET url answers 200."""
    return httpx.get(url, timeout=2.0).status_code == 200

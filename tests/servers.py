"""Servers the multi-worker tests start: PostgreSQL 15 (Debian's package) in a temporary
directory, a Prefect server on it as its own process, and an S3-compatible server (moto).

PostgreSQL refuses to run as root: as root (CI), initdb and pg_ctl run as the `postgres` user
(`runuser -u postgres --`) in a directory that user owns; otherwise as the current user. It
listens on a free loopback port, its unix socket in the same directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from evalflow.endpoints.process import ServerProcess, answers, free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _as_postgres() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def _run(*argv: str, timeout: float = 120) -> None:
    done = subprocess.run(
        [*_as_postgres(), *argv], capture_output=True, text=True, timeout=timeout, cwd="/"
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")


@contextmanager
def postgres(timeout: float = 180) -> Iterator[str]:
    """A fresh PostgreSQL 15 cluster with a database `prefect`; yields its SQLAlchemy URL for
    asyncpg (postgresql+asyncpg://postgres@127.0.0.1:PORT/prefect). Stopped and removed after."""
    root = Path(tempfile.mkdtemp(prefix="evalflow-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    data, port = root / "data", free_port()
    started = False
    try:
        initdb = [str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"]
        _run(*initdb, "-E", "UTF8", timeout=timeout)
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(root / "postgres.log")
        pg_ctl = [str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", options, "-l", log]
        _run(*pg_ctl, "-w", "-t", str(int(timeout)), "start", timeout=timeout)
        started = True
        createdb = [str(PG_BIN / "createdb"), "-h", str(root), "-p", str(port)]
        _run(*createdb, "-U", "postgres", "prefect")
        yield f"postgresql+asyncpg://postgres@127.0.0.1:{port}/prefect"
    finally:
        if started:
            stop = [str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]
            subprocess.run([*_as_postgres(), *stop], capture_output=True, timeout=60, cwd="/")
        shutil.rmtree(root, ignore_errors=True)


@dataclass(frozen=True)
class PrefectServer:
    api_url: str
    database: str  # "postgresql", or "sqlite" when PostgreSQL could not start here


@contextmanager
def prefect_server_process(database_url: str, home: Path) -> Iterator[str]:
    """`prefect server start` on `database_url` (its PREFECT_HOME under `home`); yields its
    API URL."""
    port = free_port()
    env = {
        "PREFECT_HOME": str(home),
        "PREFECT_API_DATABASE_CONNECTION_URL": database_url,
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_API_URL": "",
        "DO_NOT_TRACK": "1",
    }
    server = ServerProcess(
        "Prefect server",
        ["-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        log_path=home / "server.log",
    )
    api_url = f"http://127.0.0.1:{port}/api"
    try:
        server.wait_ready(lambda: answers(f"{api_url}/health"), timeout=180)
        yield api_url
    finally:
        server.stop()


@contextmanager
def prefect_on_postgres(home: Path) -> Iterator[PrefectServer]:
    """A Prefect server on PostgreSQL; on SQLite (saying so) when PostgreSQL cannot start."""
    begun = time.monotonic()
    try:
        database = postgres()
        url = database.__enter__()
    except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"PostgreSQL could not start ({exc}); the Prefect server runs on SQLite")
        with prefect_server_process(f"sqlite+aiosqlite:///{home / 'prefect.db'}", home) as api:
            yield PrefectServer(api, "sqlite")
        return
    try:
        print(f"PostgreSQL 15 up in {time.monotonic() - begun:.1f} s")
        with prefect_server_process(url, home) as api:
            yield PrefectServer(api, "postgresql")
    finally:
        database.__exit__(None, None, None)


@dataclass
class S3Server:
    """A real S3-compatible server (moto's server mode, in its own process) for the session;
    the standard AWS settings point at it while it runs (so child processes use it too)."""

    endpoint_url: str

    def env(self) -> dict[str, str]:
        """The AWS settings a process needs to use it (fake keys: moto accepts any)."""
        return {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
        }

    def _client(self) -> Any:
        import boto3

        settings = self.env()
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=settings["AWS_DEFAULT_REGION"],
            aws_access_key_id=settings["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=settings["AWS_SECRET_ACCESS_KEY"],
        )

    def new_bucket(self, prefix: str = "runs") -> str:
        """A fresh, empty bucket; returns the s3:// URL of `prefix` in it (EVALFLOW_STORAGE)."""

        name = f"evalflow-{uuid.uuid4().hex[:12]}"
        self._client().create_bucket(Bucket=name)
        return f"s3://{name}/{prefix}" if prefix else f"s3://{name}"

    def keys(self, url: str) -> list[str]:
        """Every object key under an s3:// URL."""

        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        client = self._client()
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]


@contextmanager
def s3_on_moto(log_path: Path, timeout: float = 60) -> Iterator[S3Server]:
    """moto's S3 server (its server mode, in its own process) on a free loopback port."""
    port = free_port()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = S3Server(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                httpx.get(server.endpoint_url, timeout=2)
                break
            except httpx.HTTPError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto's S3 server did not start (see {log_path})") from None
                time.sleep(0.2)
        yield server
    finally:
        proc.terminate()
        proc.wait(timeout=10)

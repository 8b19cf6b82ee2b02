"""Prefect's temporary API server, started the moment `evalflow run` knows it needs one.

Without PREFECT_API_URL (and no `evalflow up` stack running), a flow run needs a temporary
Prefect server. Prefect starts one when the flow first calls its client, that is after evalflow
has imported prefect, weave and the flow; its start (uvicorn and Prefect's server app) was then
waited for, on top. Started first, as a child process running Prefect's own command
(evalflow/patches/prefect.py, for the verified Prefect versions), it gets ready on the other
core while this process imports, plans, checks the endpoints and asks the first rows (at the
command's own CPU priority: a lower one only made it ready later, evalflow/lifeline.py). The
flow is then run inside `prefect.settings.temporary_settings` pointing at it (made while the
server gets ready); the server is asked to stop when the command ends, after Prefect's own exit
handlers have sent the run's last logs and events to it, and finishes its shutdown by itself
(it persists those events) while the command returns.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.metadata
import json
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from evalflow.endpoints.process import ServerProcess, answers, free_port
from evalflow.errors import EndpointError
from evalflow.home import DATABASE_URL_VAR

STARTUP_TIMEOUT_VAR = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
PORT_TAKEN = 3  # uvicorn's exit code when its port is taken meanwhile
GRACE_S = 5.0  # the server's shutdown, at most, after this process's end
MIGRATE_VARS = ("PREFECT_SERVER_DATABASE_MIGRATE_ON_START", "PREFECT_API_DATABASE_MIGRATE_ON_START")
SQLITE_PREFIX = "sqlite+aiosqlite:///"


def _sqlite_file(database_url: str | None) -> Path | None:
    """The file of a SQLite database URL as Prefect's server takes it (None: not SQLite)."""
    if not database_url or not database_url.startswith(SQLITE_PREFIX):
        return None
    return Path(database_url.removeprefix(SQLITE_PREFIX))


def _revision(database: Path) -> str | None:
    """The database's Alembic revision (None: no database, or none recorded)."""
    if not database.is_file():
        return None
    try:
        uri = f"{database.resolve().as_uri()}?mode=ro"  # any name: as_uri quotes it
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
            found = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    except sqlite3.Error:
        return None
    return str(found[0][0]) if len(found) == 1 else None


def _marker(database: Path) -> Path:
    return database.with_name(f"{database.name}.migrated")


def _stamp(database: Path) -> dict[str, str | None]:
    """What a migration leaves: the Prefect version that ran it, and the database's revision."""
    return {"prefect": importlib.metadata.version("prefect"), "revision": _revision(database)}


def migration_settings(database_url: str | None) -> dict[str, str]:
    """Settings for a temporary server on `database_url`: its check of the database's
    migrations is skipped (a quarter of a second of the server's start, on a core the run
    needs) when this Prefect version migrated this very database before (`record_migration`)
    and its revision has not changed since. Anything else, or a choice of the user's: none."""
    database = _sqlite_file(database_url)
    if database is None or any(var in os.environ for var in MIGRATE_VARS):
        return {}
    try:
        recorded = json.loads(_marker(database).read_text())
    except (OSError, ValueError):
        return {}
    stamp = _stamp(database)
    if stamp["revision"] is None or recorded != stamp:
        return {}
    return {MIGRATE_VARS[0]: "false"}


def record_migration(database_url: str | None) -> None:
    """Note that the server that just got ready on `database_url` migrated it (nothing if the
    note cannot be written: the next server checks the migrations again)."""
    database = _sqlite_file(database_url)
    if database is None:
        return
    stamp = _stamp(database)
    if stamp["revision"] is not None:
        with contextlib.suppress(OSError):
            _marker(database).write_text(json.dumps(stamp))


@dataclass
class TemporaryServer:
    """A temporary Prefect API server this process started, and its API URL."""

    process: ServerProcess
    api_url: str
    migrated: bool  # it checks the database's migrations as it starts

    def ready(self) -> str:
        """Wait until it answers (EndpointError, with its output, if it cannot start); its URL."""
        timeout = float(os.environ.get(STARTUP_TIMEOUT_VAR) or 120)
        self.process.wait_ready(lambda: answers(f"{self.api_url}/health"), timeout)
        if self.migrated:
            record_migration(os.environ.get(DATABASE_URL_VAR))
        return self.api_url

    def stop(self) -> None:
        """Ask it to stop and go on: its graceful shutdown (the run's last events persisted,
        then uvicorn's 0.1 s ticks) finishes by itself; it is ended GRACE_S after this
        process at the latest (its lifeline, evalflow/lifeline.py)."""
        self.process.stop(timeout=GRACE_S, wait=False)


def _launch() -> TemporaryServer | None:
    from evalflow.patches.prefect import SERVER_SETTINGS, temporary_server_command

    port = free_port()
    command = temporary_server_command(port)
    if command is None:
        return None
    skip = migration_settings(os.environ.get(DATABASE_URL_VAR))
    process = ServerProcess(
        "Prefect's temporary server",
        ["-m", "evalflow.lifeline", str(GRACE_S), *command],
        env={**SERVER_SETTINGS, **skip},
        own_session=False,  # its threads and the run's share the session's CPU, as measured
        lifeline=True,  # it stops when this process ends, gracefully
    )
    return TemporaryServer(process, f"http://127.0.0.1:{port}/api", migrated=not skip)


def start_temporary_server() -> TemporaryServer | None:
    """Start Prefect's temporary server now, unless a Prefect API is configured (None then, or
    when the patch stands aside: Prefect starts its own later, as it always did). It stops
    at the process's exit, after the exit handlers Prefect registers later (they run first)."""
    if os.environ.get("PREFECT_API_URL"):
        return None
    server = _launch()
    if server is None:
        return None
    atexit.register(server.stop)
    return server


def ready_server(server: TemporaryServer) -> TemporaryServer:
    """The server once it answers; started again once on another port if its port was taken
    between choosing it and binding it."""
    try:
        server.ready()
        return server
    except EndpointError:
        if server.process.proc.returncode != PORT_TAKEN:
            raise
    again = start_temporary_server()
    if again is None:
        raise EndpointError("Prefect's temporary server could not start: its port was taken")
    again.ready()
    return again

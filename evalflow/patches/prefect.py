"""Prefect's temporary API server: the command that starts it, and stopping those prefect
started in this process on a stop signal.

Prefect starts its temporary ("ephemeral") API server as a uvicorn subprocess and stops it
from an exit handler; a SIGTERM without a handler skips exit handlers, and evalflow's
(evalflow/endpoints/shutdown.py) leaves with os._exit once it has stopped what it started.
Prefect keeps its servers in the class attribute `SubprocessASGIServer._instances` (a dict of
the live servers by port), each with `stop()`: read, never changed. Otherwise the exit
handler prefect registered for each server still stops it when shutdown runs them.

`temporary_server_command` is the command `SubprocessASGIServer._run_uvicorn_command` runs
(tests/test_patches.py compares the two), for `evalflow run` to start the server first.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

from evalflow.patches._gate import stand_aside, version_problem

DISTRIBUTION = "prefect"
VERIFIED = ">=3.9,<3.10"
PATCH = "prefect: temporary servers stopped on a stop signal"
MODULE = "prefect.server.api.server"


def drift() -> list[str]:
    """What differs upstream from the internals this read relies on (empty: nothing)."""
    import importlib

    module = importlib.import_module(MODULE)
    server = getattr(module, "SubprocessASGIServer", None)
    if server is None:
        return [f"{MODULE}.SubprocessASGIServer is gone"]
    problems = []
    if not isinstance(getattr(server, "_instances", None), dict):
        problems.append("SubprocessASGIServer._instances is no longer a dict of servers")
    if not callable(getattr(server, "stop", None)):
        problems.append("SubprocessASGIServer has no stop()")
    return problems


def temporary_servers() -> list[Any]:
    """The temporary servers prefect started in this process (none if prefect's server module
    was never imported, or when the read stands aside)."""
    module = sys.modules.get(MODULE)
    if module is None:
        return []
    problems = [p for p in (version_problem(DISTRIBUTION, VERIFIED),) if p] or drift()
    if problems:
        stand_aside(PATCH, problems)
        return []
    return list(module.SubprocessASGIServer._instances.values())


SERVER_PATCH = "prefect: temporary server started by evalflow"
APP_FACTORY = "prefect.server.api.server:create_app"
# The settings prefect gives its temporary server's process (UI off, the ephemeral app).
SERVER_SETTINGS = {
    "PREFECT_UI_ENABLED": "0",
    "PREFECT__SERVER_EPHEMERAL": "1",
    "PREFECT__SERVER_FINAL": "1",
}


def temporary_server_command(port: int) -> list[str] | None:
    """The arguments (after the Python executable) with which prefect itself starts its
    temporary API server on `port` (`SubprocessASGIServer._run_uvicorn_command`: uvicorn over
    prefect's app factory), to be run with SERVER_SETTINGS; None outside the verified versions.
    Found without importing prefect (its import is what the early start overlaps)."""
    problem = version_problem(DISTRIBUTION, VERIFIED)
    spec = importlib.util.find_spec("prefect")
    if problem or spec is None or spec.origin is None:
        stand_aside(SERVER_PATCH, [problem or "prefect is not importable"])
        return None
    app_dir = Path(spec.origin).parent.parent  # prefect.__module_path__.parent
    return [
        "-m",
        "uvicorn",
        "--app-dir",
        str(app_dir),
        "--factory",
        APP_FACTORY,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "error",
        "--lifespan",
        "on",
    ]

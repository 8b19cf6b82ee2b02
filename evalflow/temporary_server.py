"""Prefect's temporary API server, started the moment `evalflow run` knows it needs one.

Without PREFECT_API_URL (and no `evalflow up` stack running), a flow run needs a temporary
Prefect server. Prefect starts one when the flow first calls its client, that is after evalflow
has imported prefect, weave and the flow; its start (uvicorn and Prefect's server app) was then
waited for, on top. Started first, as a child process running Prefect's own command
(evalflow/patches/prefect.py, for the verified Prefect versions), it gets ready on the other
core while this process imports, plans and checks the endpoints. The flow is then run inside
`prefect.settings.temporary_settings` pointing at it; the server stops when the command ends,
after Prefect's own exit handlers have sent the run's last logs and events to it.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

from evalflow.endpoints.process import ServerProcess, answers, free_port
from evalflow.errors import EndpointError

STARTUP_TIMEOUT_VAR = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
PORT_TAKEN = 3  # uvicorn's exit code when its port is taken meanwhile


@dataclass
class TemporaryServer:
    """A temporary Prefect API server this process started, and its API URL."""

    process: ServerProcess
    api_url: str

    def ready(self) -> str:
        """Wait until it answers (EndpointError, with its output, if it cannot start); its URL."""
        timeout = float(os.environ.get(STARTUP_TIMEOUT_VAR) or 120)
        self.process.wait_ready(lambda: answers(f"{self.api_url}/health"), timeout)
        return self.api_url

    def stop(self) -> None:
        self.process.stop(timeout=5.0)


def _launch() -> TemporaryServer | None:
    from evalflow.patches.prefect import SERVER_SETTINGS, temporary_server_command

    port = free_port()
    command = temporary_server_command(port)
    if command is None:
        return None
    process = ServerProcess("Prefect's temporary server", command, env=SERVER_SETTINGS)
    return TemporaryServer(process, f"http://127.0.0.1:{port}/api")


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

"""`evalflow up`: the whole local stack in one command, and `evalflow down`.

A Prefect server (state under EVALFLOW_HOME/prefect), the `evalflow` process work pool, the
deployments of prefect.yaml, the lost-run automation (evalflow/lost_runs.py), a worker, and
the local LLM (whose URL the worker's flows use); with an alert webhook set
(evalflow/alerts.py), the regression alert's block and automation.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from evalflow.endpoints.llm import start_llm_process
from evalflow.endpoints.process import ServerProcess, answers, port_in_use
from evalflow.errors import EndpointError
from evalflow.home import evalflow_prefect_defaults, home_dir, offline_environment
from evalflow.project import project_root
from evalflow.targets import LOCAL_LLM_ENV

if TYPE_CHECKING:
    from evalflow.alerts import Alerts

POOL = "evalflow"


def repo_root() -> Path:
    """The Prefect project the stack deploys (a checkout, or the copy inside the wheel)."""
    return project_root()


def stack_file() -> Path:
    return home_dir() / "stack.json"


@dataclass
class Stack:
    api_url: str
    processes: list[ServerProcess] = field(default_factory=list)
    alerts: Alerts | None = None  # the regression alert, when a webhook is set

    def env(self) -> dict[str, str]:
        """The stack's environment: its own Prefect home, prefect.db and profiles there, apart
        from the temporary servers of runs without PREFECT_API_URL (evalflow_prefect_defaults)."""
        defaults = evalflow_prefect_defaults()
        return {
            **{k: v for k, v in os.environ.items() if defaults.get(k) != v},
            **offline_environment(),
            "PREFECT_HOME": str(home_dir("prefect")),
            "PREFECT_API_URL": self.api_url,
            "EVALFLOW_REPO": str(repo_root()),
        }

    def prefect(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "prefect", *args],
            cwd=repo_root(),
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        if check and result.returncode != 0:
            raise EndpointError(f"prefect {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
        return result

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()
        stack_file().unlink(missing_ok=True)


def up(port: int = 4200, llm_port: int = 8000, detach: bool = False) -> Stack:
    """Start everything; return the running stack (stop it with Stack.stop or `evalflow down`).

    Its processes end with this one, unless detach: then they outlive it (`--background`)."""
    if port_in_use("127.0.0.1", port):
        raise EndpointError(f"port {port} is in use: is a stack already up? Try: evalflow down")
    stack = Stack(api_url=f"http://127.0.0.1:{port}/api")
    env = {k: v for k, v in stack.env().items() if k.startswith(("PREFECT_", "DO_NOT", "WANDB_"))}
    env["PREFECT_SERVER_API_PORT"] = str(port)
    log = home_dir("logs")
    try:
        server = ServerProcess(
            "Prefect server",
            ["-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            log_path=log / "prefect-server.log",
            die_with_parent=not detach,
        )
        stack.processes.append(server)
        server.wait_ready(lambda: answers(f"{stack.api_url}/health"), timeout=120)
        if stack.prefect("work-pool", "inspect", POOL, check=False).returncode != 0:
            stack.prefect("work-pool", "create", POOL, "--type", "process")
        stack.prefect("--no-prompt", "deploy", "--all")
        stack_lost_runs(stack)
        stack.alerts = stack_alerts(stack)
        llm, llm_url = start_llm_process(port=llm_port, die_with_parent=not detach)
        stack.processes.append(llm)
        worker = ServerProcess(
            "Prefect worker",
            ["-m", "prefect", "worker", "start", "--pool", POOL],
            env={**env, "EVALFLOW_REPO": str(repo_root()), LOCAL_LLM_ENV: llm_url},
            log_path=log / "prefect-worker.log",
            die_with_parent=not detach,
        )
        stack.processes.append(worker)
    except BaseException:
        stack.stop()
        raise
    stack_file().write_text(
        json.dumps(
            {
                "api_url": stack.api_url,
                "llm_url": llm_url,
                "pids": [p.proc.pid for p in stack.processes],
            }
        )
    )
    return stack


def stack_lost_runs(stack: Stack) -> None:
    """The automation that marks a flow run whose heartbeats stopped crashed, on the stack's
    server (created or updated)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from evalflow.lost_runs import setup_lost_runs

    with temporary_settings(updates={PREFECT_API_URL: stack.api_url}):
        setup_lost_runs()


def stack_alerts(stack: Stack) -> Alerts | None:
    """The regression alert on the stack's server, created or updated when a webhook is set
    (EVALFLOW_ALERT_WEBHOOK, or the server's Secret/Variable evalflow-alert-webhook)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from evalflow.alerts import setup_alerts

    with temporary_settings(updates={PREFECT_API_URL: stack.api_url}):
        return setup_alerts()


def running_stack() -> dict[str, str] | None:
    """The stack `evalflow up` started, if it is up: its Prefect API and local LLM URLs."""
    path = stack_file()
    try:
        recorded = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    api_url = recorded.get("api_url")
    if not isinstance(api_url, str) or not answers(f"{api_url}/health"):
        return None
    return {"api_url": api_url, "llm_url": str(recorded.get("llm_url") or "")}


@dataclass
class Stopped:
    """What `down` stopped: processes sent SIGTERM, and of them those still running after the
    grace period, then killed (SIGKILL)."""

    stopped: int = 0
    killed: int = 0


def _alive(pgid: int) -> bool:
    """Whether a process of the group still runs. One that ended but was not reaped yet (a
    zombie: a background stack's processes are reparented to init, which may reap them
    seconds later) does not."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    proc = Path("/proc")
    if not proc.is_dir():  # not Linux: the group exists
        return True
    for stat in proc.glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError):
            text = stat.read_text()
            state, _parent, group = text[text.rindex(")") + 2 :].split()[:3]
            if int(group) == pgid and state != "Z":
                return True
    return False


DOWN_GRACE_S = 15.0  # how long `down` waits after SIGTERM before SIGKILL


def down(grace_s: float = DOWN_GRACE_S) -> Stopped:
    """Stop a stack started in the background: SIGTERM to each process group, then SIGKILL to
    any still running after `grace_s` (a worker that hangs in its shutdown would otherwise
    outlive the stack, as one did in CI)."""
    path = stack_file()
    if not path.exists():
        return Stopped()
    pids = json.loads(path.read_text())["pids"]
    result = Stopped()
    for pid in reversed(pids):
        try:
            os.killpg(pid, signal.SIGTERM)
            result.stopped += 1
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace_s
    for pid in pids:
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
    for pid in pids:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
                result.killed += 1
            gone = time.monotonic() + 5  # SIGKILL lands at once; the process ends soon after
            while _alive(pid) and time.monotonic() < gone:
                time.sleep(0.05)
    path.unlink(missing_ok=True)
    return result


def ui_url(stack: Stack) -> str:
    return stack.api_url.removesuffix("/api")

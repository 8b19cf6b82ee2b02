"""The nightly's fan-out on the work pool: each (suite, model) evaluation a flow run of the
`evaluate` deployment (run_deployment, returning at once), at most `max_parallel` at once,
polled until final, started again when evalflow/fanout.py's rule says so."""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID

from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound
from prefect.runtime import deployment as this_deployment

from evalflow.fanout import FINAL, Child, should_retry
from evalflow.runs import RUN_DAY_ENV, run_day
from tasks.leaderboard import Entry, read_entries

EVALUATE = "evaluate/evaluate"
POLL_SECONDS = 2.0


def fans_out() -> bool:
    """Whether the nightly fans out: it runs as a deployment and the `evaluate` deployment
    exists (otherwise it evaluates in its own process)."""
    if this_deployment.id is None:
        return False
    try:
        with get_client(sync_client=True) as client:
            client.read_deployment_by_name(EVALUATE)
    except ObjectNotFound:
        return False
    return True


def _job_variables() -> dict[str, Any]:
    """The nightly's day pinned for its children (Prefect adds these to the deployment's
    own env), so a child started again after midnight keeps its run id and saved answers."""
    return {"env": {RUN_DAY_ENV: run_day().strftime("%Y%m%d")}}


def _submit(child: Child, parameters: dict[str, Any], job_variables: dict[str, Any]) -> None:
    run: FlowRun = run_deployment(  # type: ignore[assignment]  # sync here: a FlowRun
        EVALUATE,
        parameters={**parameters, "suite": child.suite, "models": [child.model]},
        job_variables=job_variables,
        timeout=0,
    )
    child.flow_runs.append(str(run.id))
    child.state, child.message = None, ""
    get_run_logger().info("%s: flow run %s (attempt %d)", child.name, run.name, child.attempts)


def _states(children: list[Child]) -> dict[str, tuple[str, str]]:
    """Each running child's last flow run id -> (state type, message)."""
    ids = [UUID(c.flow_runs[-1]) for c in children]
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)))
    return {
        str(r.id): (r.state.type.value, r.state.message or "") for r in runs if r.state is not None
    }


def _finish(child: Child, state: str, message: str, retries: int) -> bool:
    """Record a final state; return whether the child is started again."""
    logger = get_run_logger()
    child.state, child.message = state, message
    if child.succeeded:
        return False
    again = should_retry(child, retries)
    logger.warning(
        "%s: %s%s%s",
        child.name,
        state.lower(),
        f" ({message.splitlines()[0][:300]})" if message else "",
        "; starting it again" if again else "",
    )
    return again


def run_children(
    children: list[Child],
    parameters: dict[str, Any],
    max_parallel: int,
    retries: int,
) -> list[Entry]:
    """Run every child on the pool, at most max_parallel at once, each started again up to
    `retries` times (evalflow/fanout.py); return the leaderboard entries of those that
    completed. Returns when every child is final; raises nothing for a failed child."""
    job_variables = _job_variables()
    waiting, running, entries = list(children), list[Child](), list[Entry]()
    while waiting or running:
        while waiting and len(running) < max_parallel:
            child = waiting.pop(0)
            _submit(child, parameters, job_variables)
            running.append(child)
        time.sleep(POLL_SECONDS)
        states = _states(running)
        for child in list(running):
            state, message = states.get(child.flow_runs[-1], ("", ""))
            if state not in FINAL:
                continue
            running.remove(child)
            if _finish(child, state, message, retries):
                waiting.insert(0, child)
            elif child.succeeded:
                found = read_entries(child.flow_runs[-1])
                child.run_id = found[0].run_id if found else None
                entries += found
    return entries

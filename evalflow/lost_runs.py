"""Lost runs: a flow run whose worker died is marked CRASHED, as Prefect documents for "zombie"
flow runs, so the nightly can start it again elsewhere.

Every flow run of evalflow's deployments (prefect.yaml: the tag `evalflow`, and
PREFECT_FLOWS_HEARTBEAT_FREQUENCY=HEARTBEAT_SECONDS in the work pool's job variables) sends a
`prefect.flow-run.heartbeat` event every HEARTBEAT_SECONDS. The automation `evalflow lost
runs` (a proactive event trigger, one bucket per flow run) expects, after each heartbeat,
another heartbeat or a final state within `periods` heartbeat periods; when none comes, its
action sets the flow run CRASHED. Prefect's server runs it (its triggers and actions
services). Only runs tagged `evalflow` are watched: a flow run with Prefect's default period
(180 s) is not mistaken for a lost one.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

from evalflow.automations import save_automation
from evalflow.errors import LostRunSetupError

AUTOMATION_NAME = "evalflow lost runs"
TAG = "evalflow"  # prefect.yaml tags every evalflow deployment with it
HEARTBEAT_SECONDS = 30  # Prefect's minimum; prefect.yaml sets it for every deployment's runs
PERIODS = 3  # heartbeats missed before a run is declared lost
HEARTBEAT_EVENT = "prefect.flow-run.heartbeat"
FINAL_EVENTS = {
    "prefect.flow-run.Completed",
    "prefect.flow-run.Failed",
    "prefect.flow-run.Cancelled",
    "prefect.flow-run.Crashed",
}


def lost_run_automation(periods: int = PERIODS) -> Any:
    """The automation (not yet saved): CRASHED for a tagged flow run silent for `periods`
    heartbeat periods."""
    from prefect.automations import Automation, ChangeFlowRunState, EventTrigger, Posture
    from prefect.client.schemas.objects import StateType

    window = periods * HEARTBEAT_SECONDS
    return Automation(
        name=AUTOMATION_NAME,
        description=(
            f"Marks a flow run tagged {TAG!r} crashed when no heartbeat or final state follows "
            f"its last heartbeat within {window} s (its worker was lost); made by evalflow"
        ),
        trigger=EventTrigger(
            after={HEARTBEAT_EVENT},
            expect={HEARTBEAT_EVENT, *FINAL_EVENTS},
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={"prefect.resource.id": f"prefect.tag.{TAG}"},
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=window),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=f"no heartbeat for {window} s: its worker or process was lost",
            )
        ],
    )


def setup_lost_runs(periods: int = PERIODS) -> UUID:
    """Create or update (idempotent) the lost-run automation on the server PREFECT_API_URL
    names; return its id."""
    from prefect.settings import PREFECT_API_URL

    api_url = PREFECT_API_URL.value()
    if not api_url:
        raise LostRunSetupError(
            "the lost-run automation lives on a Prefect server: set PREFECT_API_URL (or start "
            "`evalflow up`) and run `evalflow workers setup` again"
        )
    automation = lost_run_automation(periods)
    try:
        save_automation(automation, AUTOMATION_NAME)
    except Exception as exc:  # the server refused or could not be reached
        raise LostRunSetupError(
            f"Prefect server {api_url}: cannot set up the automation {AUTOMATION_NAME!r} "
            f"({type(exc).__name__}: {str(exc)[:300]}); check that it is up and try again"
        ) from None
    assert automation.id is not None
    return UUID(str(automation.id))

"""Prefect automations evalflow keeps on a server (the regression alert, the lost-run one)."""

from __future__ import annotations

from typing import Any


def save_automation(automation: Any, name: str) -> bool:
    """Create `automation` on the server PREFECT_API_URL names, or update the one already named
    `name` (so setting it up again changes it, never duplicates it); whether it was created."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        existing = client.read_automations_by_name(name)
    if existing:
        automation.id = existing[0].id
        automation.update()
        return False
    automation.create()
    return True

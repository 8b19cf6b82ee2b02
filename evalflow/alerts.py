"""Alerts: a Prefect automation that, on `evalflow.regression.detected`, posts a notification
to a webhook (Slack's incoming webhooks and most chat tools take a JSON POST).

One setting: the webhook URL, from the environment variable EVALFLOW_ALERT_WEBHOOK, else a
Prefect Secret block or a Prefect Variable named `evalflow-alert-webhook` on the server. The
URL is kept in the notification block's secret values (never shown in the UI, logs or events).
`setup_alerts` creates (or updates: it is idempotent) the `evalflow-alerts` Custom Webhook
block and the automation `evalflow regression alert` on the server PREFECT_API_URL names;
`evalflow up` calls it when the setting is present, `evalflow alerts setup` against any server.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

from evalflow.automations import save_automation
from evalflow.errors import AlertSetupError
from evalflow.regressions import REGRESSION_EVENT

WEBHOOK_ENV = "EVALFLOW_ALERT_WEBHOOK"
SETTING_NAME = "evalflow-alert-webhook"  # a Prefect Secret block or Variable of that name
BLOCK_NAME = "evalflow-alerts"
AUTOMATION_NAME = "evalflow regression alert"
SUBJECT = "evalflow: regression in {{ event.payload.suite }} / {{ event.payload.model }}"
BODY = "{{ event.payload.message }}"
# What the webhook receives: `text` for Slack-like receivers, the rest for everyone else.
JSON_BODY = {
    "text": "{{subject}}\n{{body}}",
    "subject": "{{subject}}",
    "body": "{{body}}",
    "source": "evalflow",
}


@dataclass(frozen=True)
class Alerts:
    """What setup_alerts made on the server."""

    api_url: str
    block_id: UUID
    automation_id: UUID
    created: bool  # False: an automation of that name existed and was updated


def _from_server() -> str | None:
    """The webhook URL from a Prefect Secret block, else a Prefect Variable, named
    `evalflow-alert-webhook` (None when neither exists)."""
    from prefect.blocks.system import Secret
    from prefect.variables import Variable

    try:
        value: Any = Secret.load(SETTING_NAME).get()  # type: ignore[union-attr]
    except ValueError:  # no such block
        value = Variable.get(SETTING_NAME, default=None)
    return str(value) if value else None


def webhook_url() -> str | None:
    """The alert webhook's URL: EVALFLOW_ALERT_WEBHOOK, else the server's Secret or Variable
    `evalflow-alert-webhook`, else None."""
    return os.environ.get(WEBHOOK_ENV, "").strip() or _from_server()


def _check(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        shown = f"{parts.scheme}://{parts.hostname}" if parts.hostname else "(not a URL)"
        raise AlertSetupError(
            f"alert webhook {shown}...: not an http(s) URL; set {WEBHOOK_ENV} (or the Prefect "
            f"Secret {SETTING_NAME}) to the webhook's full https://... address"
        )
    return url


def _save_block(url: str) -> UUID:
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    block = CustomWebhookNotificationBlock(
        name="evalflow regression alerts",
        url="{{webhook_url}}",  # filled from the secret values when a notification is sent
        method="POST",
        json_data=JSON_BODY,
        secrets={"webhook_url": url},
    )
    block_id = block.save(BLOCK_NAME, overwrite=True)
    if not isinstance(block_id, UUID):  # save() is sync here: it returns the document's id
        raise AlertSetupError(f"saving the {BLOCK_NAME} block returned {type(block_id).__name__}")
    return block_id


def _automation(block_id: UUID) -> Any:
    from prefect.automations import Automation, EventTrigger, Posture, SendNotification

    return Automation(
        name=AUTOMATION_NAME,
        description=(
            f"Posts to the webhook of the `{BLOCK_NAME}` block when the nightly finds a "
            f"significant drop ({REGRESSION_EVENT}); made by evalflow (evalflow alerts setup)"
        ),
        trigger=EventTrigger(
            expect={REGRESSION_EVENT},
            match={"prefect.resource.id": "evalflow.suite.*"},
            posture=Posture.Reactive,
            threshold=1,
            within=timedelta(0),
        ),
        actions=[SendNotification(block_document_id=block_id, subject=SUBJECT, body=BODY)],
    )


def setup_alerts(url: str | None = None) -> Alerts | None:
    """Create or update the notification block and the automation on the server
    PREFECT_API_URL names, for `url` (default: webhook_url()); None when no webhook is set."""
    from prefect.settings import PREFECT_API_URL

    api_url = PREFECT_API_URL.value()
    if not api_url:
        raise AlertSetupError(
            "alerts live on a Prefect server: set PREFECT_API_URL (or start `evalflow up`) "
            "and run `evalflow alerts setup` again"
        )
    try:
        url = url or webhook_url()
        if not url:
            return None
        block_id = _save_block(_check(url))
        automation = _automation(block_id)
        created = save_automation(automation, AUTOMATION_NAME)
    except AlertSetupError:
        raise
    except Exception as exc:  # the server refused or could not be reached
        raise AlertSetupError(
            f"Prefect server {api_url}: cannot set up the alert ({type(exc).__name__}: "
            f"{str(exc).replace(url or '', '<webhook>')[:300]}); check that it is up and run "
            f"`evalflow alerts setup` again"
        ) from None
    return Alerts(str(api_url), block_id, automation.id, created=created)

"""The failure-alert automation: any moltbot run that fails, crashes or times out notifies ops."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from deployments.specs import MOLTBOT_TAG
from moltbot.errors import InputError

FAILURE_ALERT_NAME = "moltbot failure alerts"
FAILURE_EVENTS = frozenset(
    {"prefect.flow-run.Failed", "prefect.flow-run.Crashed", "prefect.flow-run.TimedOut"}
)
ALERT_SUBJECT = "moltbot: {{ flow.name }} run {{ flow_run.name }} {{ flow_run.state.name }}"
# The Prefect server renders this (Jinja) when it sends the notification. The state message is
# the run's one-line failure reason; moltbot's errors are masked before they are raised. The run's
# link needs PREFECT_UI_URL on the server.
ALERT_BODY = (
    "moltbot automation {{ flow.name }} ended {{ flow_run.state.name }}.\n"
    "Run: {{ flow_run.name }}{% if flow_run|ui_url %} {{ flow_run|ui_url }}{% endif %}\n"
    "Deployment: {{ flow.name }}/{{ deployment.name }}\n"
    "Reason: {{ flow_run.state.message }}"
)


@dataclass(frozen=True)
class AlertSetup:
    """What `ensure_failure_alerts` did: the automation's id and whether it was new."""

    automation_id: UUID
    created: bool
    ops_block: str


def ops_block_document_id(name: str) -> UUID:
    """The id of the saved notification block `name` (`<type slug>/<name>` or a bare name).

    Only Prefect's own notification block types can be used: the Prefect server sends the
    notification itself, and it cannot import moltbot's classes.

    Raises:
        InputError: no such block, or a block that cannot send notifications.
    """
    from prefect.blocks.abstract import NotificationBlock
    from prefect.blocks.core import Block

    try:
        block = Block.load(name) if "/" in name else _load_notification_block(name)
    except ValueError:
        raise InputError(
            f"no notification block {name!r} for failure alerts (save one, e.g. a "
            "CustomWebhookNotificationBlock; `moltbot sandbox` saves 'sandbox-ops')"
        ) from None
    if not isinstance(block, NotificationBlock) or block._block_document_id is None:
        raise InputError(f"block {name!r} cannot send notifications")
    return block._block_document_id


def _load_notification_block(name: str) -> object:
    """The saved block called `name` whose type can send notifications (any such type)."""
    from prefect.blocks.abstract import NotificationBlock
    from prefect.blocks.core import Block
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        documents = client.read_block_documents(include_secrets=False)
    for document in documents:
        if document.name == name and document.block_type is not None:
            block = Block.load(f"{document.block_type.slug}/{name}")
            if isinstance(block, NotificationBlock):
                return block
    raise ValueError(name)


def failure_alert_automation(block_document_id: UUID) -> object:
    """The Prefect automation (not yet saved) that sends a notification per failed moltbot run."""
    from prefect.automations import Automation
    from prefect.events.actions import SendNotification
    from prefect.events.schemas.automations import EventTrigger, Posture

    trigger = EventTrigger(
        expect=set(FAILURE_EVENTS),
        match={"prefect.resource.id": "prefect.flow-run.*"},
        # Runs inherit their deployment's tags, and a run's events name its tags as related
        # resources: this keeps other teams' flows on the same server out of moltbot's alerts.
        match_related={"prefect.resource.id": f"prefect.tag.{MOLTBOT_TAG}"},
        posture=Posture.Reactive,
        threshold=1,
        within=0,
    )
    return Automation(
        name=FAILURE_ALERT_NAME,
        description="Notifies the ops channel when a moltbot run fails, crashes or times out.",
        trigger=trigger,
        actions=[
            SendNotification(
                block_document_id=block_document_id, subject=ALERT_SUBJECT, body=ALERT_BODY
            )
        ],
    )


def ensure_failure_alerts(ops_block: str) -> AlertSetup:
    """Create the failure-alert automation, or update the existing one (found by name).

    Raises:
        InputError: the ops block is missing or is not a notification block.
    """
    from prefect.automations import Automation

    wanted = failure_alert_automation(ops_block_document_id(ops_block))
    try:
        existing = Automation.read(name=FAILURE_ALERT_NAME)
    except ValueError:
        existing = None
    if existing is None:
        created = wanted.create()
        return AlertSetup(automation_id=created.id, created=True, ops_block=ops_block)
    existing.trigger = wanted.trigger
    existing.actions = wanted.actions
    existing.description = wanted.description
    existing.enabled = True
    existing.update()
    return AlertSetup(automation_id=existing.id, created=False, ops_block=ops_block)

"""moltbot's Prefect automations: failed runs alert ops, silent (dead) runs are marked Crashed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING
from uuid import UUID

from deployments.specs import MOLTBOT_TAG
from moltbot.errors import InputError

if TYPE_CHECKING:
    from prefect.automations import Automation

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

CRASH_DETECTOR_NAME = "moltbot crashed-run detector"
HEARTBEAT_EVENT = "prefect.flow-run.heartbeat"
# Prefect's documented zombie-run window: three missed heartbeats at its 30 s minimum frequency.
CRASH_WINDOW_SECONDS = 90.0
# Events after which a run sends no more heartbeats on purpose. Prefect's documented detector
# lists Completed, Failed, Cancelled and Crashed; TimedOut is a terminal state moltbot alerts on
# too, so it is here as well, else a timed-out run would be "detected" a window later.
TERMINAL_EVENTS = frozenset(
    {
        "prefect.flow-run.Completed",
        "prefect.flow-run.Failed",
        "prefect.flow-run.Cancelled",
        "prefect.flow-run.Crashed",
        "prefect.flow-run.TimedOut",
    }
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

    from moltbot.masking import register_model_secrets

    try:
        block = Block.load(name) if "/" in name else _load_notification_block(name)
    except ValueError:
        raise InputError(
            f"no notification block {name!r} for failure alerts (save one, e.g. a "
            "CustomWebhookNotificationBlock; `uv run moltbot sandbox` saves 'sandbox-ops')"
        ) from None
    register_model_secrets(block)  # loaded into this process: its secret fields are masked here
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


@dataclass(frozen=True)
class DetectorSetup:
    """What `ensure_crash_detector` did: the automation's id, whether it was new, its window."""

    automation_id: UUID
    created: bool
    within_seconds: float


def failure_alert_automation(block_document_id: UUID) -> Automation:
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
    automation_id, created = _create_or_update(
        failure_alert_automation(ops_block_document_id(ops_block))
    )
    return AlertSetup(automation_id=automation_id, created=created, ops_block=ops_block)


def crash_detector_automation(within_seconds: float = CRASH_WINDOW_SECONDS) -> Automation:
    """The Prefect automation (not yet saved) that marks a silent moltbot run Crashed.

    A running flow run emits a heartbeat every `PREFECT_FLOWS_HEARTBEAT_FREQUENCY` seconds
    until it reaches a terminal state. Prefect OSS does not notice a run whose process died
    with nothing left to report it (the `moltbot serve` process or the worker's machine went
    too): it stays Running forever, holds its deployment's concurrency slot, and no failure
    alert fires. This proactive trigger expects, after each heartbeat of a run, another
    heartbeat or a terminal state of the same run within `within_seconds`; when neither comes
    it sets the run Crashed, and the failure-alert automation then notifies ops. The shape is
    Prefect's documented one ("Detect and respond to zombie flows").

    Args:
        within_seconds: how long a run may stay silent; keep it a few heartbeats long (at
            least 10 s, Prefect's minimum for proactive triggers).
    """
    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture

    trigger = EventTrigger(
        after={HEARTBEAT_EVENT},
        expect={HEARTBEAT_EVENT, *TERMINAL_EVENTS},
        match={"prefect.resource.id": "prefect.flow-run.*"},
        # The same filter as the failure alert: heartbeats name the run's tags as related
        # resources, so other teams' runs on the same server are left alone.
        match_related={"prefect.resource.id": f"prefect.tag.{MOLTBOT_TAG}"},
        # One window per flow run: without it one healthy run's heartbeats would hide
        # another run's silence.
        for_each={"prefect.resource.id"},
        posture=Posture.Proactive,
        threshold=1,
        within=timedelta(seconds=within_seconds),
    )
    return Automation(
        name=CRASH_DETECTOR_NAME,
        description=(
            f"Marks a moltbot run Crashed when it sends no heartbeat for {within_seconds:g} s "
            "(its process died), so the failure alert fires and its concurrency slot is freed."
        ),
        trigger=trigger,
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=(
                    f"no heartbeat for {within_seconds:g} s: the process running it died "
                    "(or lost its connection to the Prefect server)"
                ),
            )
        ],
    )


def ensure_crash_detector(within_seconds: float = CRASH_WINDOW_SECONDS) -> DetectorSetup:
    """Create the crashed-run detector automation, or update the existing one (found by name)."""
    automation_id, created = _create_or_update(crash_detector_automation(within_seconds))
    return DetectorSetup(
        automation_id=automation_id, created=created, within_seconds=within_seconds
    )


def _create_or_update(wanted: Automation) -> tuple[UUID, bool]:
    """Save `wanted`, over the automation of the same name if there is one; (its id, created)."""
    from prefect.automations import Automation

    try:
        existing = Automation.read(name=wanted.name)
    except ValueError:
        existing = None
    if existing is None:
        return wanted.create().id, True
    existing.trigger = wanted.trigger
    existing.actions = wanted.actions
    existing.description = wanted.description
    existing.enabled = True
    existing.update()
    return existing.id, False

"""moltbot's Prefect automations: failure alerts, the crashed-run detector, missed-run alerts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
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


MISSED_RUN_PREFIX = "moltbot missed-run: "
COMPLETED_EVENT = "prefect.flow-run.Completed"
# moltbot emits this when `serve` or `deploy` sets a watch up: it opens the first window, so a
# deployment that never completes a run at all (no worker was ever started) is reported too.
ARMED_EVENT = "moltbot.missed-run.armed"
ARMED_RESOURCE_PREFIX = "moltbot.missed-run."
# The deployment a flow run's event (or the armed event) names, as `for_each` reads it.
DEPLOYMENT_LABEL = "related:deployment:prefect.resource.id"
# Prefect refuses a proactive trigger with a shorter window.
PROACTIVE_MINIMUM = timedelta(seconds=10)
TEMPLATES = Path(__file__).resolve().parent / "templates"


@dataclass(frozen=True)
class MissedRunWatch:
    """One scheduled deployment whose runs must keep completing: what its alert watches.

    Attributes:
        deployment_id: the Prefect deployment's id (its runs' events name it).
        deployment: `flow name/deployment name`.
        cron: its cron (None: an interval schedule, every `longest_gap`).
        timezone: the IANA timezone the cron is read in.
        longest_gap: the longest time between two of its scheduled runs.
        grace: how late a run may complete on top of that.
    """

    deployment_id: UUID
    deployment: str
    cron: str | None
    timezone: str
    longest_gap: timedelta
    grace: timedelta

    @property
    def name(self) -> str:
        """The automation's name, `moltbot missed-run: <flow>/<deployment>`."""
        return f"{MISSED_RUN_PREFIX}{self.deployment}"

    @property
    def within(self) -> timedelta:
        """How long after a completed run (or the watch's start) the next must have completed."""
        return max(self.longest_gap + self.grace, PROACTIVE_MINIMUM)

    def schedule_words(self, locale: str) -> str:
        """`cron '0 9 * * *' (Asia/Seoul)`, or `every 30 min` / `30분마다`."""
        if self.cron is not None:
            return f"cron '{self.cron}' ({self.timezone})"
        gap = duration_words(self.longest_gap, locale)
        return f"every {gap}" if locale == "en" else f"{gap}마다"


def duration_words(delta: timedelta, locale: str) -> str:
    """`1 d 2 h 10 min` / `1일 2시간 10분`: the non-zero units of `delta`, to the second."""
    units = {
        "en": ("d", "h", "min", "s"),
        "ko": ("일", "시간", "분", "초"),
    }[locale]
    separator = " " if locale == "en" else ""
    rest = round(delta.total_seconds())
    days, rest = divmod(rest, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, seconds = divmod(rest, 60)
    parts = [
        f"{amount}{separator}{unit}"
        for amount, unit in zip((days, hours, minutes, seconds), units, strict=True)
        if amount
    ]
    return " ".join(parts) or f"0{separator}{units[-1]}"


def missed_run_message(watch: MissedRunWatch, locale: str) -> tuple[str, str]:
    """The alert's subject and body in `locale`, from deployments/templates/<locale>/."""
    from moltbot.templating import render_template

    context = {
        "automation": watch.name,
        "deployment": watch.deployment,
        "schedule": watch.schedule_words(locale),
        "gap": duration_words(watch.longest_gap, locale),
        "grace": duration_words(watch.grace, locale),
        "window": duration_words(watch.within, locale),
    }
    subject = render_template(TEMPLATES, locale, "missed_run_subject.txt.j2", **context)
    body = render_template(TEMPLATES, locale, "missed_run_body.txt.j2", **context)
    # The Prefect server renders both as Jinja again: moltbot's text is kept out of that.
    return _jinja_literal(subject.strip()), _jinja_literal(body.strip())


def _jinja_literal(text: str) -> str:
    """`text` as a Jinja template that renders to exactly `text`."""
    return f"{{% raw %}}{text}{{% endraw %}}" if "{" in text else text


def missed_run_automation(
    watch: MissedRunWatch, block_document_id: UUID, locale: str = "en"
) -> Automation:
    """The Prefect automation (not yet saved) that tells ops once when `watch` stops completing.

    The trigger is proactive and, like Prefect's zombie-run detector, names its expected
    event in `after` too: each completed run of the deployment (or the `ARMED_EVENT` that
    `serve` and `deploy` emit) opens a window of `watch.within`, and the next completed run
    closes it and opens the next. A window that ends with no completed run fires the
    notification once and is removed; the trigger then waits for the next completed run (or
    the next `serve`/`deploy`), so a deployment that stays dead is reported once, not once
    per evaluation or per window.
    """
    from prefect.automations import Automation
    from prefect.events.actions import SendNotification
    from prefect.events.schemas.automations import EventTrigger, Posture

    subject, body = missed_run_message(watch, locale)
    trigger = EventTrigger(
        after={COMPLETED_EVENT, ARMED_EVENT},
        expect={COMPLETED_EVENT},
        match={
            "prefect.resource.id": [
                "prefect.flow-run.*",
                f"{ARMED_RESOURCE_PREFIX}{watch.deployment_id}",
            ]
        },
        # A flow run's events name its deployment as a related resource in the role
        # `deployment`: runs of this deployment only, not `moltbot run` or another deployment.
        match_related={
            "prefect.resource.id": f"prefect.deployment.{watch.deployment_id}",
            "prefect.resource.role": "deployment",
        },
        # With no `for_each`, Prefect opens a fresh window at every proactive evaluation
        # that finds none, so a dead deployment would be reported again every other window
        # (seen against a real server). Keyed by the deployment, a window opens only on a
        # completed run or the armed event, and after firing none is left to fire again.
        for_each={DEPLOYMENT_LABEL},
        posture=Posture.Proactive,
        threshold=1,
        within=watch.within,
    )
    return Automation(
        name=watch.name,
        description=(
            f"Notifies ops once when {watch.deployment} ({watch.schedule_words('en')}) has "
            "completed no run "
            f"for {watch.within.total_seconds():g} s: its longest gap between runs plus "
            f"{watch.grace.total_seconds():g} s of grace."
        ),
        trigger=trigger,
        actions=[SendNotification(block_document_id=block_document_id, subject=subject, body=body)],
    )


@dataclass(frozen=True)
class MissedRunSetup:
    """What `ensure_missed_run_alerts` did: the watches saved (and which were new), the stale
    ones it deleted."""

    created: tuple[str, ...]
    updated: tuple[str, ...]
    deleted: tuple[str, ...]


def ensure_missed_run_alerts(
    watches: list[MissedRunWatch], ops_block: str, locale: str = "en"
) -> MissedRunSetup:
    """Create or update one missed-run automation per watch, start their first windows, and
    delete the stale ones.

    Stale: a `moltbot missed-run:` automation that no watch here wants and whose deployment is
    gone or runs on no active schedule (another `serve --only` or `deploy --only` may own the
    others). Automations without the prefix are never touched.

    Raises:
        InputError: the ops block is missing or is not a notification block.
    """
    block_document_id = ops_block_document_id(ops_block)
    created, updated = [], []
    for watch in watches:
        _, is_new = _create_or_update(missed_run_automation(watch, block_document_id, locale))
        (created if is_new else updated).append(watch.name)
    arm_missed_run_watches(watches)
    deleted = delete_stale_missed_run_alerts({watch.name for watch in watches})
    return MissedRunSetup(created=tuple(created), updated=tuple(updated), deleted=deleted)


def arm_missed_run_watches(watches: list[MissedRunWatch]) -> None:
    """Emit each watch's `ARMED_EVENT`, which opens its first window from now.

    A window already open (a run completed lately) is kept: Prefect does not restart an open
    window on an `after` event that it does not expect.
    """
    import asyncio

    from prefect.events import Event
    from prefect.events.clients import get_events_client

    async def emit() -> None:
        async with get_events_client() as events:
            for watch in watches:
                await events.emit(
                    Event(
                        event=ARMED_EVENT,
                        resource={
                            "prefect.resource.id": f"{ARMED_RESOURCE_PREFIX}{watch.deployment_id}",
                            "prefect.resource.name": watch.name,
                        },
                        related=[
                            {
                                "prefect.resource.id": f"prefect.deployment.{watch.deployment_id}",
                                "prefect.resource.role": "deployment",
                            }
                        ],
                        payload={"within_seconds": watch.within.total_seconds()},
                    )
                )

    if watches:
        asyncio.run(emit())


def missed_run_alert_names() -> list[str]:
    """The names of every `moltbot missed-run:` automation on the server."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        automations = client.read_automations()
    return sorted(a.name for a in automations if a.name.startswith(MISSED_RUN_PREFIX))


def delete_stale_missed_run_alerts(wanted: set[str]) -> tuple[str, ...]:
    """Delete the missed-run automations not in `wanted` whose deployment has no active schedule."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    deleted = []
    with get_client(sync_client=True) as client:
        for automation in client.read_automations():
            if not automation.name.startswith(MISSED_RUN_PREFIX) or automation.name in wanted:
                continue
            try:
                deployment = client.read_deployment_by_name(
                    automation.name.removeprefix(MISSED_RUN_PREFIX)
                )
            except ObjectNotFound:
                deployment = None
            if (
                deployment is not None
                and not deployment.paused
                and any(schedule.active for schedule in deployment.schedules)
            ):
                continue
            client.delete_automation(automation.id)
            deleted.append(automation.name)
    return tuple(deleted)


def pause_missed_run_alerts(names: list[str]) -> None:
    """Disable the named missed-run automations (their deployments' schedules were paused)."""
    from prefect.automations import Automation

    for name in names:
        try:
            Automation.read(name=name).disable()
        except ValueError:
            continue  # deleted meanwhile: nothing left to pause

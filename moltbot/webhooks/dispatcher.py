"""The dispatcher: turns pending inbox entries into Prefect flow runs and events, exactly once."""

from __future__ import annotations

import contextvars
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from moltbot.masking import mask_text
from moltbot.runlabels import run_tags
from moltbot.state.audit import AuditAction, AuditTrail
from moltbot.state.inbox import Inbox, InboxEntry
from moltbot.webhooks.config import DeploymentTarget, EventTarget, GatewayConfig

logger = logging.getLogger("moltbot.webhooks")

# Prefect event ids derived from inbox ids: a re-sent event keeps its id, and the Prefect server
# stores an event id once.
_EVENT_NAMESPACE = uuid.UUID("5b3f8a56-3c1e-4f0e-9a47-6d2b1f0c9e21")

RUN_TAGS = ("moltbot-webhook",)
SOURCE_TAG_PREFIX = "webhook:"
"""Tags of every flow run the gateway creates, to find them in the Prefect UI."""


def idempotency_key(entry_id: str, target: DeploymentTarget, redispatch: int = 0) -> str:
    """The Prefect idempotency key of the run `target` gets for inbox entry `entry_id`.

    Prefect keeps one flow run per (flow, idempotency key): creating it again, after a crash
    between creating the run and marking the entry, returns the same run. The deployment name is
    part of the key because two deployments of one flow would otherwise share a run. After the
    entry's run crashed, its `redispatch`-th new run gets a key of its own.
    """
    key = f"{entry_id}:{target.deployment}"
    return f"{key}:redispatch-{redispatch}" if redispatch else key


def prefect_event_id(entry_id: str, target: EventTarget) -> uuid.UUID:
    """The Prefect event id of the event `target` emits for inbox entry `entry_id`."""
    return uuid.uuid5(_EVENT_NAMESPACE, f"{entry_id}:{target.event}")


@dataclass(frozen=True)
class DispatchCounts:
    """What one `dispatch_pending` pass did.

    Attributes:
        dispatched: entries whose targets all got their run or event.
        retrying: entries left pending, due again after their backoff.
        failed: entries given up on (a permanent error, after `max_attempts` tries).
        ignored: entries whose type has no target any more.
    """

    dispatched: int = 0
    retrying: int = 0
    failed: int = 0
    ignored: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counts as a JSON-ready dict."""
        return asdict(self)


class _Unavailable(Exception):
    """The Prefect API could not be reached or answered with a transient error."""


class _Refused(Exception):
    """The Prefect API refused the request for good (unknown deployment, invalid parameters)."""


class Dispatcher:
    """Creates the flow runs (and Prefect events) of pending inbox entries.

    Each entry is claimed in the inbox, then every target of its type's route gets its run,
    through `run_deployment(..., idempotency_key=…, timeout=0, as_subflow=False)`, or its
    event, posted to the Prefect API with an id derived from the entry; then the entry is marked
    dispatched. A crash anywhere in between is harmless: the entry is still pending, its claim
    runs out, and the next attempt gets the same run back (same idempotency key) and re-sends an
    event the server already stored (same id).

    When the Prefect API is unreachable (or answers 408, 429, 5xx) the entry stays pending,
    due again after a backoff (1 s doubling to 30 s by default), and the rest of the pass waits
    for the next one. A refusal (unknown deployment, invalid parameters) is retried too, in
    case a deployment is being registered right now (eight tries span about 90 s, longer than a
    `moltbot deploy`), but after `max_attempts` tries the entry is marked `failed` with the
    reason and logged.

    Args:
        inbox: the inbox to take entries from.
        config: the routes (read at dispatch time, so a restart with new routes applies them).
        batch_size: most entries read per pass.
        lease_seconds: how long a claimed entry is left alone before it counts as abandoned.
        base_delay: first backoff delay in seconds.
        max_delay: longest backoff delay in seconds.
        max_attempts: attempts before a refused entry is marked `failed`.
        max_redispatches: new runs for an entry whose run crashed (the process running it died,
            and the crashed-run detector or its worker marked it); then it is marked `failed`.
        reconcile_seconds: how often the background loop looks for crashed runs.
        poll_seconds: how often the background loop looks for due entries when idle.
        clock: the current time (tests pass a fixed one).
    """

    def __init__(
        self,
        inbox: Inbox,
        config: GatewayConfig,
        *,
        batch_size: int = 100,
        lease_seconds: float = 60.0,
        base_delay: float = 1.0,
        max_delay: float = 30.0,
        max_attempts: int = 8,
        max_redispatches: int = 3,
        reconcile_seconds: float = 30.0,
        poll_seconds: float = 1.0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.inbox = inbox
        self.config = config
        self.batch_size = batch_size
        self.lease = timedelta(seconds=lease_seconds)
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.max_attempts = max_attempts
        self.max_redispatches = max_redispatches
        self.reconcile_seconds = reconcile_seconds
        self.poll_seconds = poll_seconds
        self._clock = clock or (lambda: datetime.now(UTC))
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def backoff(self, attempts: int) -> timedelta:
        """The wait after the `attempts`-th failed attempt: base, doubling, capped."""
        seconds = self.base_delay * 2 ** max(attempts - 1, 0)
        return timedelta(seconds=min(seconds, self.max_delay))

    def dispatch_pending(self) -> DispatchCounts:
        """Dispatch the entries that are due now, once; safe to run concurrently.

        Returns:
            What happened to the entries this pass claimed.
        """
        dispatched = retrying = failed = ignored = 0
        for candidate in self.inbox.due(self._clock(), limit=self.batch_size):
            entry = self.inbox.claim(candidate, now=self._clock(), lease=self.lease)
            if entry is None:
                continue  # another dispatcher took it
            targets = self.config.targets_for(entry.type)
            if not targets:
                self.inbox.mark_ignored(entry.id)
                ignored += 1
                continue
            try:
                results = [self._dispatch_to(target, entry) for target in targets]
            except _Unavailable as exc:
                self.inbox.retry_later(
                    entry.id, error=str(exc), at=self._clock() + self.backoff(entry.attempts)
                )
                retrying += 1
                logger.warning(
                    "webhook inbox %s: %s; retrying later (attempt %d)",
                    entry.id,
                    mask_text(str(exc)),
                    entry.attempts,
                )
                break  # the API is down: the other entries wait for the next pass
            except _Refused as exc:
                if entry.attempts >= self.max_attempts:
                    self.inbox.mark_failed(entry.id, error=str(exc))
                    failed += 1
                    logger.error(
                        "webhook inbox %s (%s %s) failed after %d attempts: %s",
                        entry.id,
                        entry.source,
                        entry.type,
                        entry.attempts,
                        mask_text(str(exc)),
                    )
                else:
                    self.inbox.retry_later(
                        entry.id, error=str(exc), at=self._clock() + self.backoff(entry.attempts)
                    )
                    retrying += 1
                continue
            flow_run_id = next(
                (
                    result["id"]
                    for target, result in zip(targets, results, strict=True)
                    if isinstance(target, DeploymentTarget)
                ),
                None,
            )
            self.inbox.mark_dispatched(entry.id, flow_run_id=flow_run_id, results=results)
            self._audit(entry, targets, flow_run_id)
            dispatched += 1
        return DispatchCounts(
            dispatched=dispatched, retrying=retrying, failed=failed, ignored=ignored
        )

    def redispatch_crashed(self) -> tuple[int, int]:
        """Entries whose flow run crashed become pending again (a new run, its own idempotency
        key), at most `max_redispatches` times; then they are marked failed.

        The new run takes over the crashed run's effects at once (the effects layer sees that
        its holder's flow run is over) and looks each one up before applying it.

        Returns:
            (entries made pending again, entries given up).
        """
        entries = self.inbox.dispatched_to(_crashed_runs(self.batch_size))
        again = given_up = 0
        for entry in entries:
            if len(entry.crashed_runs) >= self.max_redispatches:
                reason = f"its flow runs crashed {len(entry.crashed_runs) + 1} times"
                if self.inbox.give_up(entry, error=reason):
                    given_up += 1
                    logger.error("webhook inbox %s failed: %s", entry.id, reason)
            elif self.inbox.redispatch(entry, now=self._clock()):
                again += 1
                logger.warning(
                    "webhook inbox %s: its flow run %s crashed; dispatching it again",
                    entry.id,
                    entry.flow_run_id,
                )
        return again, given_up

    def _audit(
        self,
        entry: InboxEntry,
        targets: Sequence[DeploymentTarget | EventTarget],
        flow_run_id: str | None,
    ) -> None:
        """One audit entry per dispatched webhook: its source is the actor."""
        automation = next(
            (t.deployment.split("/", 1)[0] for t in targets if isinstance(t, DeploymentTarget)),
            None,
        )
        try:
            AuditTrail(self.inbox).record(
                AuditAction.WEBHOOK,
                f"inbox entry {entry.id} ({entry.type})"
                + (f" -> flow run {flow_run_id}" if flow_run_id else ""),
                actor=f"webhook:{entry.source}",
                automation=automation,
                outcome="dispatched",
            )
        except Exception as exc:
            # The entry is dispatched and its run records itself; a missing line is logged.
            logger.warning("webhook inbox %s: no audit entry (%s)", entry.id, type(exc).__name__)

    def _dispatch_to(
        self, target: DeploymentTarget | EventTarget, entry: InboxEntry
    ) -> dict[str, str]:
        try:
            if isinstance(target, DeploymentTarget):
                remote_id = _run_deployment(target, entry)
            else:
                remote_id = _emit_event(target, entry)
        except Exception as exc:
            raise _classify(exc, target) from None
        return {"target": target.label, "id": remote_id}

    # The background loop ----------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the background loop is running."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Run `dispatch_pending` in a background thread until `stop`.

        The thread runs in a copy of the caller's context, so it talks to the Prefect API the
        caller's settings name.
        """
        if self.running:
            return
        self._stop.clear()
        context = contextvars.copy_context()
        self._thread = threading.Thread(
            target=context.run, args=(self._loop,), name="moltbot-webhook-dispatcher", daemon=True
        )
        self._thread.start()

    def wake(self) -> None:
        """Make the background loop look for due entries now (a request was just accepted)."""
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the background loop after its current entry; wait up to `timeout` seconds."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                # A Prefect API call is hanging; the daemon thread dies with the process, and the
                # entry it held is taken again once its lease runs out.
                logger.warning("webhook dispatcher did not stop within %.0f s", timeout)
            self._thread = None

    def _loop(self) -> None:
        reconciled = 0.0
        while not self._stop.is_set():
            self._wake.clear()
            if time.monotonic() - reconciled >= self.reconcile_seconds:
                reconciled = time.monotonic()
                try:
                    self.redispatch_crashed()
                except Exception as exc:
                    # The Prefect API is down (or the inbox is): crashed runs are looked for
                    # again next time, and the pending entries still get their pass now.
                    logger.warning(
                        "webhook dispatcher cannot look for crashed runs: %s",
                        mask_text(f"{type(exc).__name__}: {exc}"),
                    )
            try:
                counts = self.dispatch_pending()
            except Exception as exc:
                # The inbox database is unreachable: keep trying, the entries are safe in it.
                logger.error("webhook dispatcher pass failed: %s", mask_text(str(exc)))
                counts = DispatchCounts()
            busy = counts.dispatched + counts.failed + counts.ignored
            if busy < self.batch_size or counts.retrying:
                self._wake.wait(self.poll_seconds)


def _run_deployment(target: DeploymentTarget, entry: InboxEntry) -> str:
    from prefect.deployments import run_deployment

    parameters = target.render_parameters(entry.event, entry.source, entry.id)
    # The flow's name is the automation's (the registry's contract), and the deployment name
    # starts with it.
    automation = target.deployment.split("/", 1)[0]
    flow_run = run_deployment(
        target.deployment,
        parameters=parameters,
        idempotency_key=idempotency_key(entry.id, target, len(entry.crashed_runs)),
        timeout=0,
        as_subflow=False,
        tags=[
            *RUN_TAGS,
            *run_tags(automation, dry_run=parameters.get("dry_run") is True, origin="webhook"),
            # The run's audit entry names its source as the actor.
            f"{SOURCE_TAG_PREFIX}{entry.source}",
        ],
    )
    return str(flow_run.id)


def _crashed_runs(limit: int) -> list[str]:
    """Ids of the gateway's flow runs that Prefect records as Crashed (most recent first)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    flow_run_filter = FlowRunFilter(
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.CRASHED])),
        tags=FlowRunFilterTags(all_=list(RUN_TAGS)),
    )
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=flow_run_filter, sort=FlowRunSort.END_TIME_DESC, limit=limit
        )
    return [str(run.id) for run in runs]


def _emit_event(target: EventTarget, entry: InboxEntry) -> str:
    # Posted through the API rather than `emit_event`, whose background worker gives no
    # confirmation: the entry is marked dispatched only once the server took the event.
    from prefect.client.orchestration import get_client
    from prefect.events import Event

    event_id = prefect_event_id(entry.id, target)
    event = Event(
        id=event_id,
        occurred=datetime.fromisoformat(entry.event["occurred_at"]),
        event=target.event_name(entry.type, entry.source),
        resource={
            "prefect.resource.id": f"moltbot.webhook.{entry.source}.{entry.event_id}",
            "prefect.resource.name": entry.type,
            "moltbot.inbox-id": entry.id,
        },
        payload=dict(entry.event),
    )
    with get_client(sync_client=True) as client:
        response = client.request("POST", "/events", json=[event.model_dump(mode="json")])
        response.raise_for_status()
    return str(event_id)


def _classify(exc: Exception, target: DeploymentTarget | EventTarget) -> Exception:
    from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError

    if isinstance(exc, ObjectNotFound):
        return _Refused(f"{target.label}: not found in the Prefect API")
    if isinstance(exc, httpx.HTTPStatusError):
        status = exc.response.status_code
        if status in (408, 429) or status >= 500:
            return _Unavailable(f"{target.label}: the Prefect API answered {status}")
        detail = _detail(exc.response) if isinstance(exc, PrefectHTTPStatusError) else ""
        return _Refused(f"{target.label}: the Prefect API refused it ({status}){detail}")
    if isinstance(exc, httpx.TransportError | ConnectionError | TimeoutError):
        return _Unavailable(f"{target.label}: Prefect API unreachable ({type(exc).__name__})")
    return _Refused(f"{target.label}: {type(exc).__name__}: {mask_text(str(exc))}")


def _detail(response: httpx.Response) -> str:
    try:
        body: Any = response.json()
    except ValueError:
        return ""
    detail = body.get("detail") if isinstance(body, dict) else None
    # Parameter errors may quote values from the payload: masked, and cut short.
    return f": {mask_text(str(detail))[:300]}" if detail else ""

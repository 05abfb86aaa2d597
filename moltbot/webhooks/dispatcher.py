"""The dispatcher: turns pending inbox entries into Prefect flow runs (one per batch of entries,
or one per entry) and events, exactly once."""

from __future__ import annotations

import contextvars
import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from moltbot.masking import mask_text
from moltbot.runlabels import run_tags
from moltbot.state.audit import AuditAction, AuditConflict, AuditEntry, AuditTrail
from moltbot.state.inbox import DispatchOutcome, Inbox, InboxBatch, InboxEntry, InboxStatus
from moltbot.webhooks.config import (
    BATCH_PARAMETER,
    MAX_BATCH_SIZE,
    DeploymentTarget,
    EventTarget,
    GatewayConfig,
)

logger = logging.getLogger("moltbot.webhooks")

# Prefect event ids derived from inbox ids: a re-sent event keeps its id, and the Prefect server
# stores an event id once.
_EVENT_NAMESPACE = uuid.UUID("5b3f8a56-3c1e-4f0e-9a47-6d2b1f0c9e21")

# Entries whose every unbatched target is an event are claimed, emitted and recorded this many
# at a time: a transaction each for the claim and the results, however many entries, while each
# stays short enough that the gateway's accepts (on SQLite, behind the same write lock) do not
# wait long for it.
EVENTS_PER_TRANSACTION = 200
# Rounds of the results transaction when another writer appends to the audit trail meanwhile.
_SETTLE_ROUNDS = 3

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


def batch_idempotency_key(batch_key: str, deployment: str) -> str:
    """The Prefect idempotency key of the run of batch `batch_key` of `deployment`.

    The batch's entries are stored with its key before the run is asked for: a retry after a
    crash or an outage asks again with the same key and the same `inbox_ids` and gets the same
    run back.
    """
    return f"batch-{batch_key}:{deployment}"


def prefect_event_id(entry_id: str, target: EventTarget) -> uuid.UUID:
    """The Prefect event id of the event `target` emits for inbox entry `entry_id`."""
    return uuid.uuid5(_EVENT_NAMESPACE, f"{entry_id}:{target.event}")


def prefect_event(target: EventTarget, entry: InboxEntry) -> Any:
    """The Prefect event `target` emits for `entry` (its id from `prefect_event_id`): the same
    event, id included, every time it is emitted again."""
    from prefect.events import Event

    return Event(
        id=prefect_event_id(entry.id, target),
        occurred=datetime.fromisoformat(entry.event["occurred_at"]),
        event=target.event_name(entry.type, entry.source),
        resource={
            "prefect.resource.id": f"moltbot.webhook.{entry.source}.{entry.event_id}",
            "prefect.resource.name": entry.type,
            "moltbot.inbox-id": entry.id,
        },
        payload=dict(entry.event),
    )


@dataclass(frozen=True)
class DispatchCounts:
    """What one `dispatch_pending` pass did.

    Attributes:
        dispatched: entries whose targets all got their run or event.
        retrying: entries left pending, due again after their backoff (those of a batch whose
            run could not be created count each).
        failed: entries given up on (a permanent error, after `max_attempts` tries).
        ignored: entries whose type has no target any more.
        held: entries of partial batches left to gather more entries within their window.
    """

    dispatched: int = 0
    retrying: int = 0
    failed: int = 0
    ignored: int = 0
    held: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counts as a JSON-ready dict."""
        return asdict(self)


class _Unavailable(Exception):
    """The Prefect API could not be reached or answered with a transient error."""


class _Refused(Exception):
    """The Prefect API refused the request for good (unknown deployment, invalid parameters)."""


class _Stop(Exception):
    """The Prefect API is down: the rest of the pass waits for the next one."""


@dataclass
class _Pass:
    """What one pass did so far, and the Prefect client its events share."""

    dispatched: int = 0
    retrying: int = 0
    failed: int = 0
    ignored: int = 0
    held: int = 0
    _clients: _Client = field(default_factory=lambda: _Client())
    _owned: bool = True

    def counts(self) -> DispatchCounts:
        return DispatchCounts(
            dispatched=self.dispatched,
            retrying=self.retrying,
            failed=self.failed,
            ignored=self.ignored,
            held=self.held,
        )

    def client(self) -> Any:
        """The Prefect API client of the pass (the background loop's, kept across passes)."""
        return self._clients.get()

    def close(self) -> None:
        if self._owned:
            self._clients.close()


class _Client:
    """A Prefect API client made on first use and kept until `close`: building one costs ~25 ms
    of CPU (its TLS context), as much as posting a hundred events with it. The background loop
    keeps one for all its passes, which come one after another while requests arrive."""

    def __init__(self) -> None:
        self._resources = ExitStack()
        self._client: Any = None

    def get(self) -> Any:
        if self._client is None:
            from prefect.client.orchestration import get_client

            self._client = self._resources.enter_context(get_client(sync_client=True))
        return self._client

    def close(self) -> None:
        self._client = None
        self._resources.close()


@dataclass(frozen=True)
class _Plan:
    """A due entry and what it still needs this pass."""

    candidate: InboxEntry
    targets: Sequence[DeploymentTarget | EventTarget]
    alone: list[DeploymentTarget | EventTarget]
    batched: list[DeploymentTarget | EventTarget]

    @property
    def events_only(self) -> bool:
        """Whether every target it gets on its own is a Prefect event (emitted in bulk)."""
        return bool(self.alone) and all(isinstance(t, EventTarget) for t in self.alone)


@dataclass
class _Gathering:
    """The due entries one batched deployment gets in a pass, oldest first."""

    target: DeploymentTarget
    entries: list[InboxEntry] = field(default_factory=list)
    size: int = 0
    window: float = 0.0

    def add(self, target: DeploymentTarget, entry: InboxEntry) -> None:
        # Routes of several event types may name one deployment: their entries share its
        # batches, within the smallest cap and window among them.
        self.size = min(self.size, target.batch_size) if self.entries else target.batch_size
        self.window = (
            min(self.window, target.batch_window_seconds)
            if self.entries
            else target.batch_window_seconds
        )
        self.entries.append(entry)


class Dispatcher:
    """Creates the flow runs (and Prefect events) of pending inbox entries.

    A *batched* target (a deployment with the default parameters `inbox_ids = ["{{ inbox_id
    }}"]`) gets one run per batch: the due entries routed to its deployment are gathered, up to
    its `batch_size`, into a batch stored with its entries in one transaction (the batch key,
    its entries, their claim), and only then is its run asked for, through
    `run_deployment(..., idempotency_key=batch_idempotency_key(…), timeout=0,
    as_subflow=False)` with every entry's id in `inbox_ids`. A crash anywhere after that is
    harmless: the batch stays open, its claim runs out, and the next attempt asks again with the
    same key and ids and gets the same run back. A full batch goes at once; a partial one waits
    for more entries while both its oldest entry became due and its deployment's last batch
    went less than `batch_window_seconds` ago (a burst is on), so an entry after a quiet spell
    goes at once and none waits longer than the window.

    A deployment with a concurrency limit in Prefect gets no more runs at once than its free
    slots (its limit, less the slots its runs hold and its batch runs still waiting to start):
    the entries beyond wait in the inbox and join the next batch, asked for as soon as a run
    ends, instead of runs queueing in Prefect (`AwaitingConcurrencySlot`, 30 s between tries by
    default). So batches grow with the backlog, up to `batch_size`.

    Every other target gets its own run or event per entry, as before batching: the entry is
    claimed, each such target gets its run (idempotency key from the entry) or its event
    (posted to the Prefect API with an id derived from the entry), and the results are
    recorded. Entries whose only such targets are events go together, up to
    `EVENTS_PER_TRANSACTION` at a time: one transaction claims them all, one request posts all
    their events, and one transaction records every entry's outcome with its audit entry. A
    crash in between leaves them claimed until the lease ends; the next attempt posts the same
    event ids again, and the Prefect server stores an event id once (its trigger evaluation
    also skips an id seen within the last 15 minutes). A request the API refuses is posted
    again entry by entry, so one entry's bad event fails that entry alone.
    An entry is `dispatched` once every target of its route has its run or event
    (each entry keeps them in its results, the batch key with a batch run's).

    When the Prefect API is unreachable (or answers 408, 429, 5xx) the entry (or batch) stays
    pending, due again after a backoff (1 s doubling to 30 s by default), and the rest of the
    pass waits for the next one. A refusal (unknown deployment, invalid parameters) is retried
    too, in case a deployment is being registered right now (eight tries span about 90 s,
    longer than a `moltbot deploy`), but after `max_attempts` tries the entry (or the batch's
    entries) is marked `failed` with the reason and logged.

    Args:
        inbox: the inbox to take entries from.
        config: the routes (read at dispatch time, so a restart with new routes applies them).
        entries_per_pass: most due entries read per pass (default: enough for the largest
            batch, which a deployment's next run takes when a burst waits for it).
        lease_seconds: how long a claimed entry or batch is left alone before it counts as
            abandoned.
        base_delay: first backoff delay in seconds.
        max_delay: longest backoff delay in seconds.
        max_attempts: attempts before a refused entry or batch is marked `failed`.
        max_redispatches: new runs for an entry whose own run crashed (the process running it
            died, and the crashed-run detector or its worker marked it), or whose batch run of
            one entry failed or crashed; then it is marked `failed`.
        reconcile_seconds: how often the background loop looks for crashed and failed runs.
        poll_seconds: how often the background loop looks for due entries when idle.
        gather_seconds: during a burst (the last pass had work), the least time between the
            starts of two passes of the background loop: requests arriving meanwhile are taken
            by one pass, its two inbox transactions shared among them, instead of each waking
            a pass of its own.
        clock: the current time (tests pass a settable one).
    """

    def __init__(
        self,
        inbox: Inbox,
        config: GatewayConfig,
        *,
        entries_per_pass: int = MAX_BATCH_SIZE,
        lease_seconds: float = 60.0,
        base_delay: float = 1.0,
        max_delay: float = 30.0,
        max_attempts: int = 8,
        max_redispatches: int = 3,
        reconcile_seconds: float = 30.0,
        poll_seconds: float = 1.0,
        gather_seconds: float = 0.1,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.inbox = inbox
        self.config = config
        self.entries_per_pass = entries_per_pass
        self.lease = timedelta(seconds=lease_seconds)
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.max_attempts = max_attempts
        self.max_redispatches = max_redispatches
        self.reconcile_seconds = reconcile_seconds
        self.poll_seconds = poll_seconds
        self.gather_seconds = gather_seconds
        self._clock = clock or (lambda: datetime.now(UTC))
        # When this dispatcher last made a batch of each deployment: a partial batch waits for
        # more entries only during a burst.
        self._batched_at: dict[str, datetime] = {}
        # When the earliest partial batch held back in the last pass is due to go.
        self._held_until: datetime | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop_client: _Client | None = None

    def backoff(self, attempts: int) -> timedelta:
        """The wait after the `attempts`-th failed attempt: base, doubling, capped."""
        seconds = self.base_delay * 2 ** max(attempts - 1, 0)
        return timedelta(seconds=min(seconds, self.max_delay))

    def dispatch_pending(self) -> DispatchCounts:
        """Dispatch the entries and batches that are due now, once; safe to run concurrently.

        Returns:
            What happened to the entries this pass took.
        """
        # The background loop's passes share its client; any other caller's pass has its own.
        loop_client = self._loop_client if threading.current_thread() is self._thread else None
        work = _Pass() if loop_client is None else _Pass(_clients=loop_client, _owned=False)
        self._held_until = None
        try:
            self._resume_batches(work)
            self._dispatch_due(work)
        except _Stop:
            pass  # the Prefect API is down: everything left waits, pending, for the next pass
        finally:
            work.close()
        return work.counts()

    def _resume_batches(self, work: _Pass) -> None:
        """Ask again for the runs of open batches that are due: after an outage, after a crash
        between storing a batch and recording its run, and the halves of a failed batch."""
        for batch in self.inbox.due_batches(self._clock(), limit=self.entries_per_pass):
            claimed = self.inbox.claim_batch(batch, now=self._clock(), lease=self.lease)
            if claimed is None:
                continue  # another dispatcher took it
            if not claimed.entry_ids:
                self.inbox.close_batch(claimed)  # its entries were pruned
                continue
            self._start(claimed, self._batched_target(claimed.deployment), work)

    def _dispatch_due(self, work: _Pass) -> None:
        due = self.inbox.due(self._clock(), limit=self.entries_per_pass)
        in_batches = self.inbox.batched_deployments(entry.id for entry in due)
        gatherings: dict[str, _Gathering] = {}
        to_batch: dict[str, int] = {}
        carried: list[str] = []
        plans: list[_Plan] = []
        for candidate in due:
            targets = self.config.targets_for(candidate.type)
            if not targets:
                entry = self.inbox.claim(candidate, now=self._clock(), lease=self.lease)
                if entry is not None:
                    self.inbox.mark_ignored(entry.id)
                    work.ignored += 1
                continue
            done = candidate.live_results
            batching = in_batches.get(candidate.id, set())
            alone = [t for t in targets if not _is_batched(t) and t.label not in done]
            batched = [
                t
                for t in targets
                if _is_batched(t) and t.label not in done and t.deployment not in batching
            ]
            plans.append(_Plan(candidate, targets, alone, batched))
        emitting = [plan for plan in plans if plan.events_only]
        emitted = self._emit_all(emitting, work)
        for plan in plans:
            candidate, targets, batched = plan.candidate, plan.targets, plan.batched
            entry: InboxEntry | None = candidate
            if plan.events_only:
                entry = emitted.get(candidate.id)
            elif plan.alone:
                entry = self._dispatch_alone(candidate, targets, plan.alone, batched, work)
            elif not batched:
                # Nothing to start: its batches carry it (or, after a crash between two steps,
                # every target is done already).
                if self._progress(candidate)[0]:
                    self._record(candidate, [], targets, work, due_at=None)
                else:
                    carried.append(candidate.id)
                continue
            if entry is None or entry.status != InboxStatus.PENDING:
                continue
            to_batch[entry.id] = len(batched)
            for target in batched:
                assert isinstance(target, DeploymentTarget)
                gatherings.setdefault(target.deployment, _Gathering(target)).add(target, entry)
        if carried:
            self.inbox.hold_until(carried, self._clock() + self.lease)
        free = self._free_runs(list(gatherings), work) if gatherings else {}
        for deployment, gathering in gatherings.items():
            self._batch(gathering, to_batch, work, free.get(deployment))

    def _dispatch_alone(
        self,
        candidate: InboxEntry,
        targets: Sequence[DeploymentTarget | EventTarget],
        alone: Sequence[DeploymentTarget | EventTarget],
        batched: Sequence[DeploymentTarget | EventTarget],
        work: _Pass,
    ) -> InboxEntry | None:
        """Claim an entry and give each of its unbatched targets its run or event; the entry as
        stored after, or None when it was taken, refused or the API is down (`_Stop`)."""
        entry = self.inbox.claim(candidate, now=self._clock(), lease=self.lease)
        if entry is None:
            return None  # another dispatcher took it
        try:
            results = [self._dispatch_to(target, entry, work) for target in alone]
        except _Unavailable as exc:
            self.inbox.retry_later(
                entry.id, error=str(exc), at=self._clock() + self.backoff(entry.attempts)
            )
            work.retrying += 1
            _log_retry(entry, exc)
            raise _Stop from None
        except _Refused as exc:
            if entry.attempts >= self.max_attempts:
                self.inbox.mark_failed(entry.id, error=str(exc))
                work.failed += 1
                _log_given_up(entry, exc)
            else:
                self.inbox.retry_later(
                    entry.id, error=str(exc), at=self._clock() + self.backoff(entry.attempts)
                )
                work.retrying += 1
            return None
        # Still to batch: due again as it was, so its batches gather it now.
        due_at = candidate.next_attempt_at if batched else None
        return self._record(entry, results, targets, work, due_at=due_at)

    def _emit_all(self, plans: Sequence[_Plan], work: _Pass) -> dict[str, InboxEntry]:
        """Give entries whose unbatched targets are all events their events, in chunks of
        `EVENTS_PER_TRANSACTION`; entry id -> the entry as stored after, of those recorded
        still pending or dispatched (the others were taken, refused, or are retried later)."""
        stored: dict[str, InboxEntry] = {}
        for start in range(0, len(plans), EVENTS_PER_TRANSACTION):
            stored.update(self._emit_chunk(plans[start : start + EVENTS_PER_TRANSACTION], work))
        return stored

    def _emit_chunk(self, plans: Sequence[_Plan], work: _Pass) -> dict[str, InboxEntry]:
        """Claim the entries in one transaction, post all their events in one request, record
        every entry's outcome and audit entry in one transaction (see the class docstring)."""
        by_id = {plan.candidate.id: plan for plan in plans}
        claimed = self.inbox.claim_many(
            [plan.candidate for plan in plans], now=self._clock(), lease=self.lease
        )
        if not claimed:
            return {}  # another dispatcher took them
        events: dict[str, list[Any]] = {}
        errors: dict[str, Exception] = {}
        for entry in claimed:
            try:
                events[entry.id] = [prefect_event(t, entry) for t in by_id[entry.id].alone]
            except Exception as exc:
                # A payload the event cannot carry: this entry is refused, not its neighbours.
                errors[entry.id] = _Refused(
                    f"{by_id[entry.id].alone[0].label}: {type(exc).__name__}: {mask_text(str(exc))}"
                )
        self._post(events, by_id, errors, work)
        now = self._clock()
        outcomes: list[DispatchOutcome] = []
        for entry in claimed:
            plan = by_id[entry.id]
            error = errors.get(entry.id)
            if error is None:
                outcomes.append(
                    DispatchOutcome(
                        entry,
                        results=[
                            {"target": target.label, "id": str(event.id)}
                            for target, event in zip(plan.alone, events[entry.id], strict=True)
                        ],
                        # Still to batch: due again as it was, so its batches gather it now.
                        due_at=plan.candidate.next_attempt_at if plan.batched else None,
                    )
                )
            elif isinstance(error, _Refused) and entry.attempts >= self.max_attempts:
                outcomes.append(DispatchOutcome(entry, error=str(error)))
            else:
                retry_at = now + self.backoff(entry.attempts)
                outcomes.append(DispatchOutcome(entry, error=str(error), retry_at=retry_at))
        stored = self._settle(outcomes, by_id)
        self._count_and_log(claimed, errors, stored, work)
        if any(isinstance(error, _Unavailable) for error in errors.values()):
            raise _Stop  # the rest of the pass waits for the next one
        return {entry_id: entry for entry_id, entry in stored.items() if entry_id not in errors}

    def _post(
        self,
        events: dict[str, list[Any]],
        by_id: dict[str, _Plan],
        errors: dict[str, Exception],
        work: _Pass,
    ) -> None:
        """Post the entries' events in one request; when the API refuses it, entry by entry so
        only the entries it refuses fail. Errors go into `errors` by entry id."""
        if not events:
            return
        try:
            _post_events([event for some in events.values() for event in some], work.client())
            return
        except Exception as exc:
            failure = exc
        first = next(iter(events))
        error = _classify(failure, by_id[first].alone[0])
        if isinstance(error, _Unavailable) or len(events) == 1:
            for entry_id in events:
                errors[entry_id] = _classify(failure, by_id[entry_id].alone[0])
            return
        down: Exception | None = None
        for entry_id, some in events.items():
            if down is not None:
                errors[entry_id] = down  # not tried: due again after its backoff
                continue
            try:
                _post_events(some, work.client())
            except Exception as exc:
                errors[entry_id] = _classify(exc, by_id[entry_id].alone[0])
                if isinstance(errors[entry_id], _Unavailable):
                    down = errors[entry_id]

    def _settle(
        self, outcomes: list[DispatchOutcome], by_id: dict[str, _Plan]
    ) -> dict[str, InboxEntry]:
        """Record the outcomes with the audit entries of the entries they dispatch, in one
        transaction; without the audit entries (logged) when those cannot be written."""
        trail = AuditTrail(self.inbox)

        def audit(conn: Any, dispatched: list[InboxEntry]) -> None:
            trail.record_in(
                conn,
                [
                    self._audit_entry(entry, by_id[entry.id].targets, entry.flow_run_id)
                    for entry in dispatched
                ],
            )

        failure: Exception | None = None
        for _ in range(_SETTLE_ROUNDS):
            try:
                return self.inbox.settle(outcomes, progress=self._progress, also=audit)
            except AuditConflict as exc:
                failure = exc  # the whole transaction rolled back: try it again
            except Exception as exc:
                failure = exc
                break
        # The entries are dispatched and their events sent; a missing audit line is logged.
        logger.warning(
            "webhook inbox: %d entries recorded without audit entries (%s)",
            len(outcomes),
            type(failure).__name__,
        )
        return self.inbox.settle(outcomes, progress=self._progress)

    def _count_and_log(
        self,
        claimed: Sequence[InboxEntry],
        errors: dict[str, Exception],
        stored: dict[str, InboxEntry],
        work: _Pass,
    ) -> None:
        for entry in claimed:
            error = errors.get(entry.id)
            after = stored.get(entry.id)
            if error is None:
                if after is not None and after.status == InboxStatus.DISPATCHED:
                    work.dispatched += 1
            elif isinstance(error, _Refused) and entry.attempts >= self.max_attempts:
                work.failed += 1
                _log_given_up(entry, error)
            else:
                work.retrying += 1
                if isinstance(error, _Unavailable):
                    _log_retry(entry, error)

    def _record(
        self,
        entry: InboxEntry,
        results: list[dict[str, str]],
        targets: Sequence[DeploymentTarget | EventTarget],
        work: _Pass,
        *,
        due_at: datetime | None,
    ) -> InboxEntry | None:
        stored = self.inbox.record_results(
            entry.id, results, progress=self._progress, due_at=due_at
        )
        if stored is not None and stored.status == InboxStatus.DISPATCHED:
            work.dispatched += 1
            self._audit(stored, targets, stored.flow_run_id)
        return stored

    def _batch(
        self,
        gathering: _Gathering,
        to_batch: dict[str, int],
        work: _Pass,
        free: int | None = None,
    ) -> None:
        """Store the gathered entries of one deployment in batches and start their runs, at
        most `free` of them (None: no cap); the entries beyond wait for a run to end."""
        now = self._clock()
        deployment = gathering.target.deployment
        entries = gathering.entries
        for start in range(0, len(entries), gathering.size):
            if free is not None and free <= 0:
                # Every run the deployment may run at once is going: a run asked for now would
                # only queue in Prefect (`AwaitingConcurrencySlot`, retried every 30 s by
                # default), while the entries waiting here join the next, bigger batch, which
                # starts as soon as a run ends. They step aside for other deployments' entries
                # until the next pass looks again.
                waiting = [entry.id for entry in entries[start:]]
                work.held += len(waiting)
                until = now + timedelta(seconds=self.poll_seconds)
                self.inbox.hold_until(waiting, until)
                if self._held_until is None or until < self._held_until:
                    self._held_until = until
                return
            chunk = entries[start : start + gathering.size]
            if len(chunk) < gathering.size and self._gathers_more(gathering, chunk, now):
                work.held += len(chunk)
                continue
            settled = []
            for entry in chunk:
                to_batch[entry.id] -= 1
                if not to_batch[entry.id]:
                    settled.append(entry.id)
            batch = self.inbox.open_batch(
                deployment,
                [entry.id for entry in chunk],
                now=now,
                lease=self.lease,
                settled_ids=settled,
            )
            if batch is None:
                continue  # another dispatcher batched some of them: the next pass sees
            self._batched_at[deployment] = now
            self._start(batch, gathering.target, work)
            if free is not None:
                free -= 1

    def _free_runs(self, deployments: Sequence[str], work: _Pass) -> dict[str, int | None]:
        """How many more runs each deployment may start now: its concurrency limit in Prefect
        less the slots its runs hold (batch runs and scheduled runs alike) and less its batch
        runs still waiting to start; None when it has no limit or when that cannot be known now
        (runs are then asked for as they come, and Prefect queues them)."""
        slots = {name: _slots(name, work.client()) for name in deployments}
        limited = {name for name, taken in slots.items() if taken is not None}
        if not limited:
            return dict.fromkeys(deployments)
        started = [
            batch
            for batch in self.inbox.started_batches(limit=self.entries_per_pass)
            if batch.deployment in limited and batch.flow_run_id
        ]
        try:
            ids = [batch.flow_run_id for batch in started if batch.flow_run_id]
            scheduled = _scheduled_runs(ids) if ids else {}
        except Exception as exc:
            logger.warning(
                "webhook dispatcher cannot read its batch runs' states: %s",
                mask_text(f"{type(exc).__name__}: {exc}"),
            )
            return dict.fromkeys(deployments)
        # A run not picked up within a lease holds nothing back: nothing serves its deployment
        # right now, and runs queue in Prefect until something does, as without a limit.
        recent = self._clock() - self.lease
        waiting = Counter(
            batch.deployment
            for batch in started
            if batch.flow_run_id in scheduled and scheduled[batch.flow_run_id] > recent
        )
        return {
            name: None if taken is None else taken[0] - taken[1] - waiting[name]
            for name, taken in slots.items()
        }

    def _gathers_more(self, gathering: _Gathering, chunk: list[InboxEntry], now: datetime) -> bool:
        """Whether a partial batch waits for more entries: while both its deployment's last
        batch and its oldest entry's becoming due are less than the window ago (a burst is
        on); a first batch after a quiet spell goes at once."""
        last = self._batched_at.get(gathering.target.deployment)
        if last is None:
            return False
        oldest = min(entry.next_attempt_at or entry.received_at for entry in chunk)
        until = min(oldest, last) + timedelta(seconds=gathering.window)
        if now >= until:
            return False
        if self._held_until is None or until < self._held_until:
            self._held_until = until
        return True

    def _start(self, batch: InboxBatch, target: DeploymentTarget, work: _Pass) -> None:
        """Ask for the run of a claimed batch and record it with each of its entries."""
        members = self.inbox.get_many(batch.entry_ids)
        sources = sorted({entry.source for entry in members.values()})
        try:
            flow_run_id = _run_batch(target, batch, sources)
        except Exception as exc:
            self._batch_not_started(batch, _classify(exc, target), work)
            return
        made = self.inbox.batch_started(
            batch,
            flow_run_id=flow_run_id,
            target=target.label,
            progress=self._progress,
            now=self._clock(),
        )
        if made is None:
            return  # another dispatcher recorded the same run first
        work.dispatched += len(made)
        self._audit_batch(batch, members, target, flow_run_id)

    def _batch_not_started(self, batch: InboxBatch, error: Exception, work: _Pass) -> None:
        entries = len(batch.entry_ids)
        if isinstance(error, _Unavailable):
            self.inbox.retry_batch_later(
                batch, error=str(error), at=self._clock() + self.backoff(batch.attempts)
            )
            work.retrying += entries
            logger.warning(
                "webhook batch %s (%d entries): %s; retrying later (attempt %d)",
                batch.key,
                entries,
                mask_text(str(error)),
                batch.attempts,
            )
            raise _Stop from None
        if batch.attempts >= self.max_attempts:
            failed = self.inbox.fail_batch(batch, error=str(error))
            work.failed += len(failed)
            logger.error(
                "webhook batch %s (%d entries of %s) failed after %d attempts: %s",
                batch.key,
                len(failed),
                batch.deployment,
                batch.attempts,
                mask_text(str(error)),
            )
        else:
            self.inbox.retry_batch_later(
                batch, error=str(error), at=self._clock() + self.backoff(batch.attempts)
            )
            work.retrying += entries

    def _progress(self, entry: InboxEntry) -> tuple[bool, str | None]:
        """Whether every target of the entry's route has its run or event, and the run of its
        first deployment target (the entry's `flow_run_id`)."""
        targets = self.config.targets_for(entry.type)
        done = entry.live_results
        flow_run_id = next(
            (
                done[target.label]
                for target in targets
                if isinstance(target, DeploymentTarget) and target.label in done
            ),
            None,
        )
        return all(target.label in done for target in targets), flow_run_id

    def _batched_target(self, deployment: str) -> DeploymentTarget:
        """The batched target of `deployment` in the routes (a batch outlives a route change)."""
        every = [t for targets in self.config.routes.values() for t in targets]
        if self.config.default is not None:
            every.append(self.config.default)
        return next(
            (
                t
                for t in every
                if isinstance(t, DeploymentTarget) and t.batched and t.deployment == deployment
            ),
            DeploymentTarget(deployment=deployment),
        )

    def redispatch_crashed(self) -> tuple[int, int]:
        """Entries whose flow run crashed get a new one, at most `max_redispatches` times;
        then they are marked failed. A batch whose run failed or crashed is retried in halves
        (see `retry_failed_batches`).

        The new run takes over the crashed run's effects at once (the effects layer sees that
        its holder's flow run is over) and looks each one up before applying it.

        Returns:
            (entries made pending again, entries given up).
        """
        again, given_up = self.retry_failed_batches()
        crashed = _crashed_runs(_RUNS_PER_REQUEST)
        for entry in self.inbox.dispatched_to(crashed):
            if _is_batch_run(entry, entry.flow_run_id):
                continue  # a batch's run: `retry_failed_batches` has it
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

    def retry_failed_batches(self) -> tuple[int, int]:
        """Batches whose run failed or crashed are retried in halves, down to one entry, so one
        bad event cannot hold the others back; a lone entry gets up to `max_redispatches` new
        runs, then it is marked failed. A batch whose run completed (or was cancelled) is
        settled: its entries keep that run.

        Returns:
            (entries put in new batches, entries given up).
        """
        batches = self.inbox.started_batches(limit=self.entries_per_pass)
        if not batches:
            return 0, 0
        ended = _runs_in_states(_ENDED, ids=[b.flow_run_id for b in batches if b.flow_run_id])
        again = given_up = 0
        for batch in batches:
            state = ended.get(batch.flow_run_id or "")
            if state is None:
                continue  # not over yet
            if state not in _FAILED:
                self.inbox.close_batch(batch)
                continue
            members = self.inbox.get_many(batch.entry_ids)
            live = [
                entry_id
                for entry_id in batch.entry_ids
                if entry_id in members
                and members[entry_id].status in (InboxStatus.PENDING, InboxStatus.DISPATCHED)
            ]
            how = state.lower()
            note = f"its batch run {batch.flow_run_id} {how}"
            if len(live) > 1:
                half = (len(live) + 1) // 2
                if self.inbox.rebatch(
                    batch,
                    [live[:half], live[half:]],
                    reruns=0,
                    now=self._clock(),
                    lease=self.lease,
                    ended=how,
                    error=f"{note}; retried in two halves",
                ):
                    again += len(live)
                    logger.warning(
                        "webhook batch %s: its run %s %s; retrying its %d entries in two halves",
                        batch.key,
                        batch.flow_run_id,
                        how,
                        len(live),
                    )
            elif live and batch.reruns >= self.max_redispatches:
                reason = f"{batch.reruns + 1} runs of it alone failed or crashed"
                if self.inbox.give_up_batch(batch, ended=how, error=reason):
                    given_up += 1
                    logger.error("webhook inbox %s failed: %s", live[0], reason)
            elif live:
                if self.inbox.rebatch(
                    batch,
                    [live],
                    reruns=batch.reruns + 1,
                    now=self._clock(),
                    lease=self.lease,
                    ended=how,
                    error=f"{note}; dispatching it again",
                ):
                    again += 1
                    logger.warning(
                        "webhook inbox %s: its batch run %s %s; dispatching it again",
                        live[0],
                        batch.flow_run_id,
                        how,
                    )
            else:
                self.inbox.close_batch(batch)  # every entry was rejected by the run or pruned
        return again, given_up

    def _audit(
        self,
        entry: InboxEntry,
        targets: Sequence[DeploymentTarget | EventTarget],
        flow_run_id: str | None,
    ) -> None:
        """One audit entry per webhook dispatched on its own: its source is the actor."""
        line = self._audit_entry(entry, targets, flow_run_id)
        self._record_audit(
            line.target, source=entry.source, automation=line.automation, about=entry.id
        )

    @staticmethod
    def _audit_entry(
        entry: InboxEntry,
        targets: Sequence[DeploymentTarget | EventTarget],
        flow_run_id: str | None,
    ) -> AuditEntry:
        automation = next(
            (t.deployment.split("/", 1)[0] for t in targets if isinstance(t, DeploymentTarget)),
            None,
        )
        return AuditEntry(
            AuditAction.WEBHOOK,
            f"inbox entry {entry.id} ({entry.type})"
            + (f" -> flow run {flow_run_id}" if flow_run_id else ""),
            actor=f"webhook:{entry.source}",
            automation=automation,
            outcome="dispatched",
        )

    def _audit_batch(
        self,
        batch: InboxBatch,
        members: dict[str, InboxEntry],
        target: DeploymentTarget,
        flow_run_id: str,
    ) -> None:
        """One audit entry per batch run and source: the source is the actor; each entry names
        the batch and the run in its results."""
        automation = target.deployment.split("/", 1)[0]
        for source in sorted({entry.source for entry in members.values()}):
            mine = [entry for entry in members.values() if entry.source == source]
            types = ", ".join(sorted({entry.type for entry in mine}))
            self._record_audit(
                f"{len(mine)} inbox entries ({types}) in batch {batch.key}"
                f" -> flow run {flow_run_id}",
                source=source,
                automation=automation,
                about=f"batch {batch.key}",
            )

    def _record_audit(
        self, target: str, *, source: str, automation: str | None, about: str
    ) -> None:
        try:
            AuditTrail(self.inbox).record(
                AuditAction.WEBHOOK,
                target,
                actor=f"webhook:{source}",
                automation=automation,
                outcome="dispatched",
            )
        except Exception as exc:
            # The entry is dispatched and its run records itself; a missing line is logged.
            logger.warning("webhook inbox %s: no audit entry (%s)", about, type(exc).__name__)

    def _dispatch_to(
        self, target: DeploymentTarget | EventTarget, entry: InboxEntry, work: _Pass
    ) -> dict[str, str]:
        try:
            if isinstance(target, DeploymentTarget):
                remote_id = _run_deployment(target, entry)
            else:
                remote_id = _emit_event(target, entry, work.client())
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
        self._loop_client = _Client()
        try:
            self._passes()
        finally:
            self._loop_client.close()
            self._loop_client = None

    def _passes(self) -> None:
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
            started = time.monotonic()
            try:
                counts = self.dispatch_pending()
            except Exception as exc:
                # The inbox database is unreachable: keep trying, the entries are safe in it.
                logger.error("webhook dispatcher pass failed: %s", mask_text(str(exc)))
                counts = DispatchCounts()
            busy = counts.dispatched + counts.failed + counts.ignored
            if busy < self.entries_per_pass or counts.retrying:
                woken = self._wake.wait(self._idle_seconds())
                if woken and busy:
                    # A burst is on: each accepted request wakes the loop, and a pass per
                    # request would commit twice per request on the inbox the gateway's
                    # accepts write to. The requests of a moment share the next pass instead.
                    self._stop.wait(self.gather_seconds - (time.monotonic() - started))

    def _idle_seconds(self) -> float:
        """How long the loop waits for a wake-up: its poll interval, or less when a partial
        batch is due to go sooner."""
        if self._held_until is None:
            return self.poll_seconds
        left = (self._held_until - self._clock()).total_seconds()
        return min(self.poll_seconds, max(left, 0.0))


# Run states after which a batch is settled, and those after which it is retried.
_FAILED = frozenset({"FAILED", "CRASHED"})
_ENDED = ("COMPLETED", "CANCELLED", "FAILED", "CRASHED")
# Run ids per flow-run query (the Prefect API's page size).
_RUNS_PER_REQUEST = 200


def _is_batched(target: DeploymentTarget | EventTarget) -> bool:
    return isinstance(target, DeploymentTarget) and target.batched


def _is_batch_run(entry: InboxEntry, flow_run_id: str | None) -> bool:
    return any(r["id"] == flow_run_id and "batch" in r for r in entry.results)


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


def _run_batch(target: DeploymentTarget, batch: InboxBatch, sources: Sequence[str]) -> str:
    from prefect.deployments import run_deployment

    automation = batch.deployment.split("/", 1)[0]
    flow_run = run_deployment(
        batch.deployment,
        parameters={BATCH_PARAMETER: list(batch.entry_ids)},
        idempotency_key=batch_idempotency_key(batch.key, batch.deployment),
        timeout=0,
        as_subflow=False,
        tags=[
            *RUN_TAGS,
            *run_tags(automation, origin="webhook"),
            *(f"{SOURCE_TAG_PREFIX}{source}" for source in sources),
        ],
    )
    return str(flow_run.id)


def _slots(deployment: str, client: Any) -> tuple[int, int] | None:
    """(limit, slots taken) of the deployment's concurrency limit in Prefect; None when it has
    none, or when it cannot be read now (unknown deployment, API down: asking for its run says
    which, as without a limit)."""
    try:
        limit = client.read_deployment_by_name(deployment).global_concurrency_limit
    except Exception:
        return None
    if limit is None or not limit.active:
        return None
    return limit.limit, limit.active_slots


def _scheduled_runs(ids: Sequence[str]) -> dict[str, datetime]:
    """Run id -> when it was created, of those of these gateway runs still Scheduled."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    scheduled = FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))
    wanted = [uuid.UUID(run_id) for run_id in dict.fromkeys(ids)]
    found: dict[str, datetime] = {}
    with get_client(sync_client=True) as client:
        for start in range(0, len(wanted), _RUNS_PER_REQUEST):
            chunk = wanted[start : start + _RUNS_PER_REQUEST]
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=chunk), state=scheduled),
                limit=len(chunk),
            )
            found.update((str(run.id), run.created) for run in runs if run.created)
    return found


def _crashed_runs(limit: int) -> list[str]:
    """Ids of the gateway's flow runs that Prefect records as Crashed (most recent first)."""
    return list(_runs_in_states(("CRASHED",), limit=limit))


def _runs_in_states(
    state_types: Sequence[str], *, ids: Sequence[str] | None = None, limit: int = 200
) -> dict[str, str]:
    """Run id -> state type of the gateway's flow runs in one of `state_types`: the `limit`
    that ended most recently, or, given `ids`, those of these runs (a request per 200)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    state = FlowRunFilterState(
        type=FlowRunFilterStateType(any_=[StateType(name) for name in state_types])
    )
    tags = FlowRunFilterTags(all_=list(RUN_TAGS))
    found: dict[str, str] = {}
    with get_client(sync_client=True) as client:
        if ids is None:
            queries = [(FlowRunFilter(state=state, tags=tags), limit)]
        else:
            wanted = [uuid.UUID(run_id) for run_id in dict.fromkeys(ids)]
            queries = [
                (FlowRunFilter(id=FlowRunFilterId(any_=chunk), state=state, tags=tags), len(chunk))
                for chunk in (
                    wanted[start : start + _RUNS_PER_REQUEST]
                    for start in range(0, len(wanted), _RUNS_PER_REQUEST)
                )
            ]
        for flow_run_filter, most in queries:
            runs = client.read_flow_runs(
                flow_run_filter=flow_run_filter, sort=FlowRunSort.END_TIME_DESC, limit=most
            )
            found.update((str(run.id), run.state.type.value) for run in runs if run.state)
    return found


def _emit_event(target: EventTarget, entry: InboxEntry, client: Any) -> str:
    event = prefect_event(target, entry)
    _post_events([event], client)
    return str(event.id)


def _post_events(events: Sequence[Any], client: Any) -> None:
    """Post Prefect events in one request (`POST /events` takes a list).

    Through the API rather than `emit_event`, whose background worker gives no confirmation:
    an entry is marked dispatched only once the server took its events.
    """
    response = client.request("POST", "/events", json=[e.model_dump(mode="json") for e in events])
    response.raise_for_status()


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


def _log_given_up(entry: InboxEntry, error: Exception) -> None:
    logger.error(
        "webhook inbox %s (%s %s) failed after %d attempts: %s",
        entry.id,
        entry.source,
        entry.type,
        entry.attempts,
        mask_text(str(error)),
    )


def _log_retry(entry: InboxEntry, error: Exception) -> None:
    logger.warning(
        "webhook inbox %s: %s; retrying later (attempt %d)",
        entry.id,
        mask_text(str(error)),
        entry.attempts,
    )

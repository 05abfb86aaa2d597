"""The webhook inbox: every accepted request, committed before the gateway answers, and the
batches of entries the dispatcher hands to one flow run each."""

from __future__ import annotations

import json
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Index,
    Integer,
    Row,
    String,
    Table,
    Text,
    UniqueConstraint,
    bindparam,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from moltbot.state.ledger import (
    Ledger,
    UTCDateTime,
    clean_error,
    ensure_table,
    metadata,
    serialize_sqlite_writes,
)

inbox_table = Table(
    "webhook_inbox",
    metadata,
    # A UUID; also the base of the Prefect idempotency key of every run it leads to.
    Column("id", String(36), primary_key=True),
    Column("source", String(64), nullable=False),
    Column("event_id", String(255), nullable=False),
    Column("type", String(255), nullable=False),
    Column("received_at", UTCDateTime(), nullable=False),
    # The normalised event as JSON: {"id", "type", "occurred_at", "payload"}.
    Column("event", Text, nullable=False),
    Column("status", String(16), nullable=False),
    # Dispatch attempts so far (each claim counts one).
    Column("attempts", Integer, nullable=False),
    # When a dispatcher may take the entry next: its backoff, or the lease of a claim.
    Column("next_attempt_at", UTCDateTime(), nullable=True),
    # The run of the first deployment target, for a quick look-up.
    Column("flow_run_id", String(64), nullable=True),
    # JSON list of {"target", "id"[, "batch"][, "crashed", "state"]}: every flow run id and
    # event id the entry led to.
    Column("results", Text, nullable=True),
    Column("error", Text, nullable=True),
    Column("updated_at", UTCDateTime(), nullable=False),
    # A sender's redelivery of the same event finds this row instead of creating another.
    UniqueConstraint("source", "event_id", name="uq_webhook_inbox_source_event"),
    Index("ix_webhook_inbox_status_next", "status", "next_attempt_at"),
)


batches_table = Table(
    "webhook_batches",
    metadata,
    # A UUID; the Prefect idempotency key of the batch's run is derived from it.
    Column("key", String(36), primary_key=True),
    Column("deployment", String(255), nullable=False),
    # open: no run recorded yet (being tried, or due again); started: its run was created.
    Column("status", String(16), nullable=False),
    # Tries to create its run so far (each claim counts one).
    Column("attempts", Integer, nullable=False),
    # When a dispatcher may try it next: its backoff, or the lease of a claim.
    Column("next_attempt_at", UTCDateTime(), nullable=True),
    # Earlier runs of its lone entry that failed or crashed (a batch of one only).
    Column("reruns", Integer, nullable=False),
    Column("flow_run_id", String(64), nullable=True),
    Column("error", Text, nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Index("ix_webhook_batches_status_next", "status", "next_attempt_at"),
)
"""Batches whose run is not known to have ended yet; a settled batch's row is deleted (its
entries keep the run and the batch key in their results)."""

batch_entries_table = Table(
    "webhook_batch_entries",
    metadata,
    # One row per entry and batched deployment: an entry is in at most one batch per deployment
    # at a time, so two dispatchers cannot both put it in a batch (the second insert fails).
    Column("entry_id", String(36), primary_key=True),
    Column("deployment", String(255), primary_key=True),
    Column("batch_key", String(36), nullable=False),
    Index("ix_webhook_batch_entries_batch", "batch_key"),
)


class InboxStatus(StrEnum):
    """Where an inbox entry stands."""

    PENDING = "pending"
    DISPATCHED = "dispatched"
    FAILED = "failed"
    IGNORED = "ignored"


@dataclass(frozen=True)
class InboxEntry:
    """One accepted webhook request.

    Attributes:
        id: the inbox id (a UUID), answered to the sender.
        source: the configured source it came through.
        event_id: the sender's event id (unique per source).
        type: the event type.
        received_at: when the gateway committed it.
        event: the normalised event `{"id", "type", "occurred_at", "payload"}`.
        status: pending, dispatched, failed or ignored.
        attempts: dispatch attempts so far.
        next_attempt_at: when it is due again (pending only).
        flow_run_id: the first deployment target's flow run, once dispatched.
        results: `[{"target", "id"}]` of every run created and event emitted; a batch's run
            also names the `batch`; a run that crashed or failed and was replaced is marked
            `crashed` (and, for a batch's, its `state`).
        error: the last dispatch error, masked.
        updated_at: when the row last changed.
    """

    id: str
    source: str
    event_id: str
    type: str
    received_at: datetime
    event: dict[str, Any]
    status: InboxStatus
    attempts: int
    next_attempt_at: datetime | None
    flow_run_id: str | None
    results: list[dict[str, str]]
    error: str | None
    updated_at: datetime

    @property
    def crashed_runs(self) -> list[str]:
        """The entry's own flow runs (not batch runs) that crashed (each led to a new dispatch)."""
        return [
            result["id"]
            for result in self.results
            if result.get("crashed") and "batch" not in result
        ]

    @property
    def live_results(self) -> dict[str, str]:
        """Target label -> the run or event id it got, for the targets done (a run that crashed
        or failed and was replaced does not count)."""
        return {r["target"]: r["id"] for r in self.results if not r.get("crashed")}


@dataclass(frozen=True)
class InboxBatch:
    """Inbox entries that one flow run of a deployment takes together (`inbox_ids`).

    Attributes:
        key: the batch key (a UUID), base of its run's Prefect idempotency key.
        deployment: `"<flow name>/<deployment name>"`.
        status: `open` (no run recorded yet) or `started`.
        attempts: tries to create its run so far.
        next_attempt_at: when it is due again (open only).
        reruns: earlier runs of its lone entry that failed or crashed.
        flow_run_id: its run, once started.
        error: the last error creating its run, masked.
        entry_ids: its entries, oldest first: the same every time its run is asked for.
    """

    key: str
    deployment: str
    status: BatchStatus
    attempts: int
    next_attempt_at: datetime | None
    reruns: int
    flow_run_id: str | None
    error: str | None
    entry_ids: tuple[str, ...]


class BatchStatus(StrEnum):
    """Where a batch stands."""

    OPEN = "open"
    STARTED = "started"


@dataclass(frozen=True)
class DispatchOutcome:
    """What one dispatch attempt of a claimed entry came to (see `Inbox.settle`).

    Attributes:
        entry: the entry as claimed.
        results: `[{"target", "id"}]` of the runs and events it got (when it succeeded).
        due_at: when an entry with targets still to do is due again (None: as it is).
        error: why the attempt failed (None: it succeeded).
        retry_at: with an error, when to try again; None with an error: give up (`failed`).
    """

    entry: InboxEntry
    results: Sequence[dict[str, str]] = ()
    due_at: datetime | None = None
    error: str | None = None
    retry_at: datetime | None = None


@dataclass(frozen=True)
class AcceptRequest:
    """A verified event to commit to the inbox (see `Inbox.accept`)."""

    source: str
    event: dict[str, Any]
    received_at: datetime
    ignored: bool = False


Progress = Callable[[InboxEntry], tuple[bool, str | None]]
"""For an entry with its results so far: whether every target of its route is done, and the
run of its first deployment target (the dispatcher knows the routes, the inbox does not)."""

# Ids per `IN (…)` list: well under every backend's limit on bound parameters.
_IDS_PER_QUERY = 500
_INSERTS: dict[str, Any] = {"sqlite": sqlite_insert, "postgresql": postgresql_insert}


class Inbox:
    """The durable inbox on the ledger's engine (SQLite file or PostgreSQL).

    `accept` relies on the unique (source, event id) constraint, so of two concurrent deliveries
    of one event exactly one row is created. Dispatchers take entries with `claim`, a
    compare-and-set on the attempt count, so two dispatchers never work on the same entry at
    once; a claim is a lease (`next_attempt_at`), so an entry whose dispatcher died is taken
    again later.

    Args:
        ledger: the open ledger whose engine to use.
    """

    def __init__(self, ledger: Ledger) -> None:
        self._engine = ledger.engine
        for table in (inbox_table, batches_table, batch_entries_table):
            ensure_table(self._engine, table)
        serialize_sqlite_writes(self._engine)
        # Both dialects that hold the ledger (SQLite, PostgreSQL) skip a row whose (source,
        # event id) exists and return the ids of the rows they did insert.
        # Another backend accepts each request in a transaction of its own.
        dialect_insert = _INSERTS.get(self._engine.dialect.name)
        self._insert_new = (
            None
            if dialect_insert is None
            else dialect_insert(inbox_table)
            .on_conflict_do_nothing(index_elements=["source", "event_id"])
            .returning(inbox_table.c.id)
        )

    @property
    def engine(self) -> Engine:
        """The ledger's engine (the audit trail of dispatches shares it)."""
        return self._engine

    def accept(
        self,
        source: str,
        event: dict[str, Any],
        *,
        received_at: datetime,
        ignored: bool = False,
    ) -> tuple[InboxEntry, bool]:
        """Commit a verified event, or find the entry of an earlier delivery of it.

        Args:
            source: the source it came through.
            event: the normalised event (its `id` and `type` are stored as columns too).
            received_at: when it was received (aware).
            ignored: nothing is routed for its type: store it as `ignored`, not pending.

        Returns:
            The entry, and True when this call created it (False: a duplicate delivery).
        """
        [accepted] = self.accept_many([AcceptRequest(source, event, received_at, ignored)])
        return accepted

    def accept_many(self, requests: Sequence[AcceptRequest]) -> list[tuple[InboxEntry, bool]]:
        """Commit verified events in one transaction (a group commit), or find the entries of
        earlier deliveries of them; nothing of it is stored unless the commit succeeds.

        Of two requests for one event (in this call, or racing another one) exactly one
        creates the entry; the other gets it as a duplicate.

        Returns:
            Per request, in order: its entry, and True when this call created it.
        """
        rows = [_new_entry(request) for request in requests]
        if not rows:
            return []
        if self._insert_new is None:
            return [self._accept_alone(row) for row in rows]
        with self._engine.begin() as conn:
            created = set(conn.execute(self._insert_new, rows).scalars())
        accepted: list[tuple[InboxEntry, bool] | None] = [
            (_stored_entry(row), True) if row["id"] in created else None for row in rows
        ]
        for index, request in enumerate(requests):
            if accepted[index] is None:
                accepted[index] = self._earlier(request)
        return [found for found in accepted if found is not None]

    def _accept_alone(self, row: dict[str, Any]) -> tuple[InboxEntry, bool]:
        """One request in its own transaction, on a backend without `ON CONFLICT`."""
        try:
            with self._engine.begin() as conn:
                conn.execute(insert(inbox_table).values(**row))
        except IntegrityError:
            existing = self.find(row["source"], row["event_id"])
            if existing is None:  # the unique constraint fired on something else: a bug
                raise
            return existing, False
        return _stored_entry(row), True

    def _earlier(self, request: AcceptRequest) -> tuple[InboxEntry, bool]:
        """The entry an earlier delivery of `request`'s event created; should it be gone by
        now (pruned since the insert found it), the request is accepted anew."""
        for _ in range(3):
            existing = self.find(request.source, request.event["id"])
            if existing is not None:
                return existing, False
            row = _new_entry(request)
            with self._engine.begin() as conn:
                if list(conn.execute(self._insert_new, [row]).scalars()):
                    return _stored_entry(row), True
        raise RuntimeError(f"inbox: event {request.event['id']!r} neither stored nor found")

    def get(self, entry_id: str) -> InboxEntry | None:
        """The entry with this inbox id, or None."""
        return self._one(select(inbox_table).where(inbox_table.c.id == entry_id))

    def get_many(self, entry_ids: Iterable[str]) -> dict[str, InboxEntry]:
        """The entries with these inbox ids (one query per 500 ids); unknown ids are left out."""
        wanted = list(dict.fromkeys(entry_ids))
        found: dict[str, InboxEntry] = {}
        with self._engine.connect() as conn:
            for chunk in _chunks(wanted):
                statement = select(inbox_table).where(inbox_table.c.id.in_(chunk))
                found.update((row.id, _as_entry(row)) for row in conn.execute(statement))
        return found

    def find(self, source: str, event_id: str) -> InboxEntry | None:
        """The entry of `source`'s event `event_id`, or None."""
        return self._one(
            select(inbox_table).where(
                inbox_table.c.source == source, inbox_table.c.event_id == event_id
            )
        )

    def entries(self, status: InboxStatus | None = None) -> list[InboxEntry]:
        """All entries, oldest first, optionally of one status."""
        statement = select(inbox_table).order_by(inbox_table.c.received_at, inbox_table.c.id)
        if status is not None:
            statement = statement.where(inbox_table.c.status == InboxStatus(status).value)
        with self._engine.connect() as conn:
            return [_as_entry(row) for row in conn.execute(statement)]

    def entries_since(self, since: datetime) -> list[InboxEntry]:
        """Entries changed since `since` and every pending one, oldest first; not ignored ones."""
        table = inbox_table
        statement = (
            select(table)
            .where(
                table.c.status != InboxStatus.IGNORED.value,
                (table.c.updated_at >= since) | (table.c.status == InboxStatus.PENDING.value),
            )
            .order_by(table.c.received_at, table.c.id)
        )
        with self._engine.connect() as conn:
            return [_as_entry(row) for row in conn.execute(statement)]

    def due(self, now: datetime, *, limit: int) -> list[InboxEntry]:
        """Pending entries whose `next_attempt_at` has come, in the order they were received."""
        table = inbox_table
        statement = (
            select(table)
            .where(table.c.status == InboxStatus.PENDING.value, table.c.next_attempt_at <= now)
            .order_by(table.c.received_at, table.c.id)
            .limit(limit)
        )
        with self._engine.connect() as conn:
            return [_as_entry(row) for row in conn.execute(statement)]

    def claim(self, entry: InboxEntry, *, now: datetime, lease: timedelta) -> InboxEntry | None:
        """Take `entry` for one dispatch attempt: attempts + 1, not due again before the lease.

        Returns:
            The claimed entry, or None when another dispatcher changed it since it was read.
        """
        table = inbox_table
        statement = (
            update(table)
            .where(
                table.c.id == entry.id,
                table.c.status == InboxStatus.PENDING.value,
                table.c.attempts == entry.attempts,
            )
            .values(attempts=entry.attempts + 1, next_attempt_at=now + lease, updated_at=now)
        )
        with self._engine.begin() as conn:
            if conn.execute(statement).rowcount != 1:
                return None
        return self.get(entry.id)

    def claim_many(
        self, entries: Sequence[InboxEntry], *, now: datetime, lease: timedelta
    ) -> list[InboxEntry]:
        """Take several entries for one dispatch attempt each, in one transaction: what `claim`
        does to one, a compare-and-set on each entry's attempts as read.

        Returns:
            The claimed entries (as given, with the claim's attempts, lease and time), in the
            order given; those another dispatcher changed since they were read are left out.
            Only what a claim cannot change is read from them; `settle` reads their results
            again.
        """
        if not entries:
            return []
        table = inbox_table
        values = {
            "attempts": table.c.attempts + 1,
            "next_attempt_at": now + lease,
            "updated_at": now,
        }
        won: set[str] = set()
        with self._engine.begin() as conn:
            if self._engine.dialect.update_returning:
                # One statement per attempt count read (nearly always one: 0), each entry's
                # compare-and-set within it; only the ids come back, so the transaction (and,
                # on SQLite, the write lock the gateway's accepts wait for) stays short.
                by_attempts: dict[int, list[str]] = {}
                for entry in entries:
                    by_attempts.setdefault(entry.attempts, []).append(entry.id)
                for attempts, ids in by_attempts.items():
                    for chunk in _chunks(ids):
                        statement = (
                            update(table)
                            .where(
                                table.c.id.in_(chunk), _is_pending(), table.c.attempts == attempts
                            )
                            .values(**values)
                            .returning(table.c.id)
                        )
                        won.update(conn.execute(statement).scalars())
            else:
                for entry in entries:
                    claimed = conn.execute(
                        update(table)
                        .where(
                            table.c.id == entry.id,
                            _is_pending(),
                            table.c.attempts == entry.attempts,
                        )
                        .values(**values)
                    )
                    if claimed.rowcount == 1:
                        won.add(entry.id)
        return [
            replace(entry, attempts=entry.attempts + 1, next_attempt_at=now + lease, updated_at=now)
            for entry in entries
            if entry.id in won
        ]

    def settle(
        self,
        outcomes: Sequence[DispatchOutcome],
        *,
        progress: Progress,
        also: Callable[[Connection, list[InboxEntry]], Any] | None = None,
    ) -> dict[str, InboxEntry]:
        """Record what dispatch attempts of claimed entries came to, in one transaction: each
        still-pending entry gets its results (`dispatched` once `progress` finds every target
        done), or its error (pending, due again, or `failed`); an entry no longer pending is
        left alone, as `record_results`, `retry_later` and `mark_failed` leave it.

        Args:
            outcomes: one per entry.
            progress: whether an entry's targets are all done, and its first run.
            also: called in the same transaction with the entries it made `dispatched` (the
                dispatcher appends their audit entries); what it raises rolls everything back.

        Returns:
            Entry id -> the entry as stored after, of those that were still pending.
        """
        if not outcomes:
            return {}
        now = datetime.now(UTC)
        ids = [outcome.entry.id for outcome in outcomes]
        with self._engine.begin() as conn:
            # Write first (see `record_results`): the transaction takes SQLite's write lock,
            # and PostgreSQL's row locks, before it reads the results recorded so far.
            history = _pending_results(conn, ids, now, dialect=self._engine.dialect)
            # Rows with the same columns to set go in one executemany.
            groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
            stored: dict[str, InboxEntry] = {}
            for outcome in outcomes:
                entry = outcome.entry
                if entry.id not in history:
                    continue  # no longer pending
                entry = replace(entry, results=history[entry.id])
                if outcome.error is None:
                    values = _progress_values(
                        entry, list(outcome.results), progress, due_at=outcome.due_at, now=now
                    )
                elif outcome.retry_at is not None:
                    values = {
                        "next_attempt_at": outcome.retry_at,
                        "error": clean_error(outcome.error),
                        "updated_at": now,
                    }
                else:
                    values = {
                        "status": InboxStatus.FAILED.value,
                        "next_attempt_at": None,
                        "error": clean_error(outcome.error),
                        "updated_at": now,
                    }
                groups.setdefault(tuple(sorted(values)), []).append({"b_id": entry.id, **values})
                stored[entry.id] = _with_values(entry, values)
            for rows in groups.values():
                _update_rows(conn, rows)
            if also is not None:
                dispatched = [e for e in stored.values() if e.status == InboxStatus.DISPATCHED]
                also(conn, dispatched)
        return stored

    def mark_dispatched(
        self, entry_id: str, *, flow_run_id: str | None, results: list[dict[str, str]]
    ) -> None:
        """Record a pending entry as dispatched, with the runs and events it led to (after
        the runs that crashed before, which stay in its history)."""
        entry = self.get(entry_id)
        earlier = [r for r in entry.results if r.get("crashed")] if entry is not None else []
        self._finish(
            entry_id,
            status=InboxStatus.DISPATCHED.value,
            next_attempt_at=None,
            flow_run_id=flow_run_id,
            results=json.dumps([*earlier, *results], ensure_ascii=False),
            error=None,
        )

    def record_results(
        self,
        entry_id: str,
        results: list[dict[str, str]],
        *,
        progress: Progress,
        due_at: datetime | None,
    ) -> InboxEntry | None:
        """Add the runs and events some targets of a pending entry got; it is `dispatched` once
        `progress` finds every target done, else it stays pending, due again `due_at`.

        Returns:
            The entry as stored, or None when it is no longer pending (another dispatcher or
            the run reading it recorded an outcome meanwhile).
        """
        now = datetime.now(UTC)
        with self._engine.begin() as conn:
            # Write first: on SQLite a transaction that reads, then writes, fails when another
            # writer committed in between; taking the write lock first serialises them.
            touched = conn.execute(
                update(inbox_table)
                .where(inbox_table.c.id == entry_id, _is_pending())
                .values(updated_at=now)
            )
            if touched.rowcount != 1:
                return None
            [entry] = _locked_entries(conn, [entry_id])
            values = _progress_values(entry, results, progress, due_at=due_at, now=now)
            conn.execute(update(inbox_table).where(inbox_table.c.id == entry_id).values(**values))
        return self.get(entry_id)

    def dispatched_to(self, flow_run_ids: list[str]) -> list[InboxEntry]:
        """The dispatched entries whose (first) flow run is one of `flow_run_ids`."""
        if not flow_run_ids:
            return []
        statement = select(inbox_table).where(
            inbox_table.c.status == InboxStatus.DISPATCHED.value,
            inbox_table.c.flow_run_id.in_(flow_run_ids),
        )
        with self._engine.connect() as conn:
            return [_as_entry(row) for row in conn.execute(statement)]

    def redispatch(self, entry: InboxEntry, *, now: datetime) -> bool:
        """Make a dispatched entry whose run crashed pending again, due now; the crashed run
        is kept in its history (a compare-and-set: one dispatcher wins)."""
        history = [
            {**result, "crashed": "true"} if result["id"] == entry.flow_run_id else result
            for result in entry.results
        ]
        return self._move(
            entry,
            InboxStatus.PENDING,
            next_attempt_at=now,
            results=json.dumps(history, ensure_ascii=False),
            error=f"its flow run {entry.flow_run_id} crashed",
        )

    def give_up(self, entry: InboxEntry, *, error: str) -> bool:
        """Mark a dispatched entry failed (its runs kept crashing)."""
        return self._move(entry, InboxStatus.FAILED, next_attempt_at=None, error=error)

    def _move(self, entry: InboxEntry, status: InboxStatus, **values: Any) -> bool:
        # Only while it is still dispatched to that run: one dispatcher wins.
        return self._update(
            (
                inbox_table.c.id == entry.id,
                inbox_table.c.status == InboxStatus.DISPATCHED.value,
                inbox_table.c.flow_run_id == entry.flow_run_id,
            ),
            status=status.value,
            **values,
        )

    def retry_later(self, entry_id: str, *, error: str, at: datetime) -> None:
        """Keep a pending entry pending, due again `at`, with the error (masked) of this try."""
        self._finish(entry_id, next_attempt_at=at, error=clean_error(error))

    def mark_failed(self, entry_id: str, *, error: str) -> None:
        """Give up on a pending entry: `failed`, with the error (masked)."""
        self._finish(
            entry_id,
            status=InboxStatus.FAILED.value,
            next_attempt_at=None,
            error=clean_error(error),
        )

    def reject(self, entry_id: str, *, error: str) -> bool:
        """Mark an entry `failed` because the run reading it could not use its event (pending
        or dispatched, never an ignored one), with the error (masked)."""
        return self._update(
            (
                inbox_table.c.id == entry_id,
                inbox_table.c.status.in_((InboxStatus.PENDING.value, InboxStatus.DISPATCHED.value)),
            ),
            status=InboxStatus.FAILED.value,
            next_attempt_at=None,
            error=clean_error(error),
        )

    def mark_ignored(self, entry_id: str) -> None:
        """Record a pending entry as `ignored` (nothing is routed for its type any more)."""
        self._finish(entry_id, status=InboxStatus.IGNORED.value, next_attempt_at=None)

    # Batches ----------------------------------------------------------------------------------

    def batched_deployments(self, entry_ids: Iterable[str]) -> dict[str, set[str]]:
        """Entry id -> the deployments whose batches (open or started) hold it."""
        held: dict[str, set[str]] = {}
        table = batch_entries_table
        with self._engine.connect() as conn:
            for chunk in _chunks(list(entry_ids)):
                statement = select(table.c.entry_id, table.c.deployment).where(
                    table.c.entry_id.in_(chunk)
                )
                for entry_id, deployment in conn.execute(statement):
                    held.setdefault(entry_id, set()).add(deployment)
        return held

    def open_batch(
        self,
        deployment: str,
        entry_ids: Sequence[str],
        *,
        now: datetime,
        lease: timedelta,
        settled_ids: Iterable[str] = (),
    ) -> InboxBatch | None:
        """Put pending entries in a new batch for `deployment`, claimed for its first try, in
        one transaction: the batch's membership is stored before its run is asked for, so a
        retry after a crash asks for the same run with the same ids.

        Args:
            deployment: the batched deployment.
            entry_ids: its entries (each one attempt more).
            now: the current time.
            lease: how long the claim lasts.
            settled_ids: those of `entry_ids` that have no other target left to dispatch: not
                due again before the lease (their batches carry them).

        Returns:
            The batch, or None when another dispatcher batched or finished one of the entries
            meanwhile (nothing is stored then).
        """
        key = str(uuid.uuid4())
        try:
            with self._engine.begin() as conn:
                conn.execute(
                    insert(batches_table).values(
                        **_new_batch(key, deployment, now=now, due=now + lease, attempts=1)
                    )
                )
                # Membership first, in one order: of two dispatchers batching the same entry,
                # the second waits for the first and then fails on its key, never deadlocks.
                conn.execute(
                    insert(batch_entries_table),
                    [
                        {"entry_id": entry_id, "deployment": deployment, "batch_key": key}
                        for entry_id in sorted(entry_ids)
                    ],
                )
                if _count_attempt(conn, entry_ids, now) != len(entry_ids):
                    raise _Lost  # one is no longer pending: roll it all back
                _hold_until(conn, settled_ids, now + lease)
        except IntegrityError:
            return None  # one of them is in another dispatcher's batch already
        except _Lost:
            return None
        return self.batch(key)

    def batch(self, key: str) -> InboxBatch | None:
        """The batch with this key, or None (settled, or never made)."""
        [found] = self._batches(select(batches_table).where(batches_table.c.key == key)) or [None]
        return found

    def due_batches(self, now: datetime, *, limit: int) -> list[InboxBatch]:
        """Open batches due now (their backoff or claim is over), oldest first."""
        table = batches_table
        return self._batches(
            select(table)
            .where(table.c.status == BatchStatus.OPEN.value, table.c.next_attempt_at <= now)
            .order_by(table.c.created_at, table.c.key)
            .limit(limit)
        )

    def started_batches(self, *, limit: int) -> list[InboxBatch]:
        """Batches whose run was created and is not known to have ended, oldest first."""
        table = batches_table
        return self._batches(
            select(table)
            .where(table.c.status == BatchStatus.STARTED.value)
            .order_by(table.c.created_at, table.c.key)
            .limit(limit)
        )

    def claim_batch(
        self, batch: InboxBatch, *, now: datetime, lease: timedelta
    ) -> InboxBatch | None:
        """Take an open batch for one more try (a compare-and-set on its attempts; its pending
        entries count one attempt more each).

        Returns:
            The claimed batch, or None when another dispatcher changed it since it was read.
        """
        table = batches_table
        with self._engine.begin() as conn:
            claimed = conn.execute(
                update(table)
                .where(
                    table.c.key == batch.key,
                    table.c.status == BatchStatus.OPEN.value,
                    table.c.attempts == batch.attempts,
                )
                .values(attempts=batch.attempts + 1, next_attempt_at=now + lease, updated_at=now)
            )
            if claimed.rowcount != 1:
                return None
            _count_attempt(conn, batch.entry_ids, now)
        return self.batch(batch.key)

    def batch_started(
        self,
        batch: InboxBatch,
        *,
        flow_run_id: str,
        target: str,
        progress: Progress,
        now: datetime,
    ) -> list[str] | None:
        """Record the run of a batch: each pending entry of it gets the result
        `{"target", "id", "batch"}` and is `dispatched` once `progress` finds all its targets
        done (else it stays pending, not due before its claim ends).

        Returns:
            The ids of the entries this made `dispatched`; None when another dispatcher
            recorded the run first.
        """
        result = {"target": target, "id": flow_run_id, "batch": batch.key}
        with self._engine.begin() as conn:
            started = conn.execute(
                update(batches_table)
                .where(
                    batches_table.c.key == batch.key,
                    batches_table.c.status == BatchStatus.OPEN.value,
                )
                .values(
                    status=BatchStatus.STARTED.value,
                    flow_run_id=flow_run_id,
                    next_attempt_at=None,
                    error=None,
                    updated_at=now,
                )
            )
            if started.rowcount != 1:
                return None
            rows = []
            for entry in _locked_entries(conn, batch.entry_ids):
                if entry.status != InboxStatus.PENDING:
                    continue  # rejected by a run that read it, or given up meanwhile
                values = _progress_values(entry, [result], progress, due_at=None, now=now)
                values.setdefault("next_attempt_at", entry.next_attempt_at)
                rows.append({"b_id": entry.id, **values})
            _update_rows(conn, rows)
        return [row["b_id"] for row in rows if row["status"] == InboxStatus.DISPATCHED.value]

    def retry_batch_later(self, batch: InboxBatch, *, error: str, at: datetime) -> None:
        """Keep an open batch, due again `at`; its pending entries show the error (masked)."""
        error = clean_error(error)
        with self._engine.begin() as conn:
            conn.execute(
                update(batches_table)
                .where(
                    batches_table.c.key == batch.key,
                    batches_table.c.status == BatchStatus.OPEN.value,
                )
                .values(next_attempt_at=at, error=error, updated_at=datetime.now(UTC))
            )
            for chunk in _chunks(list(batch.entry_ids)):
                conn.execute(
                    update(inbox_table)
                    .where(inbox_table.c.id.in_(chunk), _is_pending())
                    .values(error=error, updated_at=datetime.now(UTC))
                )

    def fail_batch(self, batch: InboxBatch, *, error: str) -> list[str]:
        """Give up on an open batch whose run was refused for good: its pending entries become
        `failed` with the error (masked), and the batch is removed.

        Returns:
            The ids of the entries this marked failed.
        """
        return self._end_batch(
            batch, BatchStatus.OPEN, error=error, failed=set(batch.entry_ids), regroup=[]
        )

    def close_batch(self, batch: InboxBatch) -> None:
        """Forget a batch whose run ended (completed or cancelled): its entries keep the run."""
        with self._engine.begin() as conn:
            conn.execute(delete(batches_table).where(batches_table.c.key == batch.key))
            conn.execute(
                delete(batch_entries_table).where(batch_entries_table.c.batch_key == batch.key)
            )

    def rebatch(
        self,
        batch: InboxBatch,
        groups: Sequence[Sequence[str]],
        *,
        reruns: int,
        now: datetime,
        lease: timedelta,
        ended: str,
        error: str,
    ) -> list[InboxBatch]:
        """Replace a started batch whose run failed or crashed by new open batches of `groups`
        of its entries (due now), in one transaction; the run stays in each entry's results,
        marked `crashed`, and its other entries leave the batch.

        Args:
            batch: the started batch.
            groups: the new batches' entry ids (e.g. its two halves; its lone entry).
            reruns: the new batches' count of earlier failed runs of a lone entry.
            now: the current time.
            lease: how long the entries are left to their new batches before a dispatcher
                looks at them again.
            ended: how its run ended (`failed`, `crashed`), kept with the run in the results.
            error: why (masked), shown with the entries.

        Returns:
            The new batches, or none when another dispatcher replaced it first.
        """
        keys = [str(uuid.uuid4()) for _ in groups]
        regroup = [(key, list(ids)) for key, ids in zip(keys, groups, strict=True)]
        changed = self._end_batch(
            batch,
            BatchStatus.STARTED,
            error=error,
            failed=set(),
            regroup=regroup,
            reruns=reruns,
            now=now,
            lease=lease,
            ended=ended,
        )
        if not changed:
            return []
        return [found for key in keys if (found := self.batch(key)) is not None]

    def give_up_batch(self, batch: InboxBatch, *, ended: str, error: str) -> list[str]:
        """Mark the entries of a started batch whose run failed or crashed `failed` (masked
        error), the run kept in their results marked `crashed`; remove the batch.

        Returns:
            The ids of the entries this marked failed.
        """
        return self._end_batch(
            batch,
            BatchStatus.STARTED,
            error=error,
            failed=set(batch.entry_ids),
            regroup=[],
            ended=ended,
        )

    def _end_batch(
        self,
        batch: InboxBatch,
        status: BatchStatus,
        *,
        error: str,
        failed: set[str],
        regroup: list[tuple[str, list[str]]],
        reruns: int = 0,
        now: datetime | None = None,
        lease: timedelta = timedelta(0),
        ended: str = "",
    ) -> list[str]:
        """Remove `batch` (while it is still `status`: one dispatcher wins), fail the entries
        of `failed` and move those of `regroup` into new open batches; flag its run in their
        results. Returns the ids of the entries changed."""
        now = now or datetime.now(UTC)
        error = clean_error(error)
        with self._engine.begin() as conn:
            removed = conn.execute(
                delete(batches_table).where(
                    batches_table.c.key == batch.key, batches_table.c.status == status.value
                )
            )
            if removed.rowcount != 1:
                return []
            conn.execute(
                delete(batch_entries_table).where(batch_entries_table.c.batch_key == batch.key)
            )
            moving = {entry_id: key for key, ids in regroup for entry_id in ids}
            for key, ids in regroup:
                conn.execute(
                    insert(batches_table).values(
                        **_new_batch(key, batch.deployment, now=now, due=now, reruns=reruns)
                    )
                )
                conn.execute(
                    insert(batch_entries_table),
                    [
                        {"entry_id": entry_id, "deployment": batch.deployment, "batch_key": key}
                        for entry_id in ids
                    ],
                )
            rows = []
            for entry in _locked_entries(conn, batch.entry_ids):
                if entry.status not in (InboxStatus.PENDING, InboxStatus.DISPATCHED):
                    continue
                if entry.id not in moving and entry.id not in failed:
                    continue
                history = [
                    {**r, "crashed": "true", "state": ended}
                    if r.get("batch") == batch.key and r["id"] == batch.flow_run_id
                    else r
                    for r in entry.results
                ]
                rows.append(
                    {
                        "b_id": entry.id,
                        "status": (
                            InboxStatus.FAILED if entry.id in failed else InboxStatus.PENDING
                        ).value,
                        "next_attempt_at": None if entry.id in failed else now + lease,
                        "results": json.dumps(history, ensure_ascii=False),
                        "flow_run_id": entry.flow_run_id,
                        "error": error,
                        "updated_at": now,
                    }
                )
            _update_rows(conn, rows)
        return [row["b_id"] for row in rows]

    def hold_until(self, entry_ids: Iterable[str], until: datetime) -> None:
        """Leave pending entries whose every target is done or in a batch alone until `until`
        (their batches carry them; a look then finds any left behind)."""
        with self._engine.begin() as conn:
            _hold_until(conn, entry_ids, until)

    def _batches(self, statement: Any) -> list[InboxBatch]:
        with self._engine.connect() as conn:
            rows = list(conn.execute(statement))
            members: dict[str, list[str]] = {row.key: [] for row in rows}
            for chunk in _chunks(list(members)):
                listed = (
                    select(batch_entries_table.c.batch_key, batch_entries_table.c.entry_id)
                    .join(inbox_table, inbox_table.c.id == batch_entries_table.c.entry_id)
                    .where(batch_entries_table.c.batch_key.in_(chunk))
                    .order_by(inbox_table.c.received_at, inbox_table.c.id)
                )
                for key, entry_id in conn.execute(listed):
                    members[key].append(entry_id)
        return [
            InboxBatch(
                key=row.key,
                deployment=row.deployment,
                status=BatchStatus(row.status),
                attempts=row.attempts,
                next_attempt_at=row.next_attempt_at,
                reruns=row.reruns,
                flow_run_id=row.flow_run_id,
                error=row.error,
                entry_ids=tuple(members[row.key]),
            )
            for row in rows
        ]

    def counts(self) -> dict[str, int]:
        """How many entries are in each status (every status present, zeros included)."""
        statement = select(inbox_table.c.status, func.count()).group_by(inbox_table.c.status)
        counts = {status.value: 0 for status in InboxStatus}
        with self._engine.connect() as conn:
            for status, count in conn.execute(statement):
                counts[status] = count
        return counts

    def oldest_pending_received_at(self) -> datetime | None:
        """When the oldest still-pending entry was received, or None when none is pending."""
        statement = select(func.min(inbox_table.c.received_at)).where(
            inbox_table.c.status == InboxStatus.PENDING.value
        )
        with self._engine.connect() as conn:
            value = conn.execute(statement).scalar()
        if value is None:
            return None
        # `min()` loses the column type on SQLite (naive text); normalise like the column does.
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def _one(self, statement: Any) -> InboxEntry | None:
        with self._engine.connect() as conn:
            row = conn.execute(statement).first()
        return None if row is None else _as_entry(row)

    def _finish(self, entry_id: str, **values: Any) -> None:
        # Only a pending entry moves: a dispatcher whose lease ran out must not undo the outcome
        # another one recorded meanwhile.
        self._update(
            (inbox_table.c.id == entry_id, inbox_table.c.status == InboxStatus.PENDING.value),
            **values,
        )

    def _update(self, conditions: tuple[Any, ...], **values: Any) -> bool:
        """A compare-and-set: True when the row still matched `conditions` and changed."""
        statement = (
            update(inbox_table).where(*conditions).values(updated_at=datetime.now(UTC), **values)
        )
        with self._engine.begin() as conn:
            return conn.execute(statement).rowcount == 1


class AcceptQueue:
    """Group commit of the gateway's accepts: what arrives while one transaction commits goes
    into the next one, written by one thread.

    Each request's future resolves only once the transaction holding its row has committed
    (or with the error that kept it from committing), so no acknowledgement precedes its
    commit. A commit per request would cost each one a disk flush and, on SQLite, a turn at
    its single write lock; one per group costs that once for all of them. When a transaction
    of several requests fails, each is tried again in a transaction of its own, so a request
    the database refuses fails alone.

    The writer thread starts with the first request and ends after `idle_seconds` without
    one, or at `close`.

    Args:
        inbox: where the requests are committed.
        max_batch: most requests per transaction.
        idle_seconds: how long the idle writer thread waits before it ends.
    """

    def __init__(self, inbox: Inbox, *, max_batch: int = 500, idle_seconds: float = 5.0) -> None:
        self._inbox = inbox
        self._max_batch = max_batch
        self._idle_seconds = idle_seconds
        self._waiting: deque[tuple[AcceptRequest, Future[tuple[InboxEntry, bool]]]] = deque()
        self._changed = threading.Condition()
        self._writer: threading.Thread | None = None
        self._closing = False

    def submit(self, request: AcceptRequest) -> Future[tuple[InboxEntry, bool]]:
        """Queue `request`; its future gives what `Inbox.accept` gives, after the commit."""
        future: Future[tuple[InboxEntry, bool]] = Future()
        with self._changed:
            self._waiting.append((request, future))
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._write, name="moltbot-inbox-writer", daemon=True
                )
                self._writer.start()
            else:
                self._changed.notify()
        return future

    def close(self, timeout: float | None = None) -> None:
        """Commit what is queued and end the writer thread (waiting up to `timeout`); a later
        request starts it again."""
        with self._changed:
            self._closing = True
            writer = self._writer
            self._changed.notify()
        if writer is not None:
            writer.join(timeout)
        with self._changed:
            self._closing = False

    def _write(self) -> None:
        while True:
            with self._changed:
                if not self._waiting and not self._closing:
                    self._changed.wait(self._idle_seconds)
                if not self._waiting:
                    self._writer = None
                    return
                taken = [
                    self._waiting.popleft() for _ in range(min(len(self._waiting), self._max_batch))
                ]
            # A request whose caller gave up waiting is not written: nobody would be answered.
            self._commit([(r, f) for r, f in taken if f.set_running_or_notify_cancel()])

    def _commit(self, batch: list[tuple[AcceptRequest, Future[tuple[InboxEntry, bool]]]]) -> None:
        if not batch:
            return
        try:
            accepted = self._inbox.accept_many([request for request, _ in batch])
        except Exception as exc:
            if len(batch) == 1:
                batch[0][1].set_exception(exc)
                return
            for request, future in batch:
                try:
                    future.set_result(self._inbox.accept_many([request])[0])
                except Exception as alone:
                    future.set_exception(alone)
            return
        for (_, future), result in zip(batch, accepted, strict=True):
            future.set_result(result)


class _Lost(Exception):
    """Another dispatcher changed an entry first: the transaction is rolled back."""


def _count_attempt(conn: Connection, entry_ids: Iterable[str], now: datetime) -> int:
    """One attempt more for each pending entry of `entry_ids`; how many there were."""
    counted = 0
    for chunk in _chunks(list(entry_ids)):
        counted += conn.execute(
            update(inbox_table)
            .where(inbox_table.c.id.in_(chunk), _is_pending())
            .values(attempts=inbox_table.c.attempts + 1, updated_at=now)
        ).rowcount
    return counted


def _is_pending() -> Any:
    return inbox_table.c.status == InboxStatus.PENDING.value


def _chunks(ids: list[str]) -> list[list[str]]:
    return [ids[start : start + _IDS_PER_QUERY] for start in range(0, len(ids), _IDS_PER_QUERY)]


def _new_batch(
    key: str,
    deployment: str,
    *,
    now: datetime,
    due: datetime,
    attempts: int = 0,
    reruns: int = 0,
) -> dict[str, Any]:
    return {
        "key": key,
        "deployment": deployment,
        "status": BatchStatus.OPEN.value,
        "attempts": attempts,
        "next_attempt_at": due,
        "reruns": reruns,
        "flow_run_id": None,
        "error": None,
        "created_at": now,
        "updated_at": now,
    }


def _locked_entries(conn: Connection, entry_ids: Iterable[str]) -> list[InboxEntry]:
    """The entries, read for update within `conn`'s transaction (PostgreSQL locks the rows;
    SQLite holds the database's write lock already)."""
    found: list[InboxEntry] = []
    for chunk in _chunks(list(entry_ids)):
        statement = (
            select(inbox_table)
            .where(inbox_table.c.id.in_(chunk))
            .order_by(inbox_table.c.id)
            .with_for_update()
        )
        found.extend(_as_entry(row) for row in conn.execute(statement))
    return found


def _progress_values(
    entry: InboxEntry,
    results: list[dict[str, str]],
    progress: Progress,
    *,
    due_at: datetime | None,
    now: datetime,
) -> dict[str, Any]:
    """The row values of a pending entry after it got `results`."""
    history = [*entry.results, *results]
    complete, flow_run_id = progress(replace(entry, results=history))
    values: dict[str, Any] = {
        "results": json.dumps(history, ensure_ascii=False),
        "flow_run_id": flow_run_id,
        "status": (InboxStatus.DISPATCHED if complete else InboxStatus.PENDING).value,
        "error": None,
        "updated_at": now,
    }
    if complete:
        values["next_attempt_at"] = None
    elif due_at is not None:
        values["next_attempt_at"] = due_at
    return values


def _pending_results(
    conn: Connection, ids: list[str], now: datetime, *, dialect: Any
) -> dict[str, list[dict[str, str]]]:
    """Touch the pending entries of `ids` (taking the write locks) and read the results they
    hold: entry id -> results, of those still pending."""
    found: dict[str, list[dict[str, str]]] = {}
    for chunk in _chunks(ids):
        touch = (
            update(inbox_table)
            .where(inbox_table.c.id.in_(chunk), _is_pending())
            .values(updated_at=now)
        )
        if dialect.update_returning:
            rows = conn.execute(touch.returning(inbox_table.c.id, inbox_table.c.results))
            found.update((row.id, json.loads(row.results) if row.results else []) for row in rows)
        else:
            conn.execute(touch)
    if not dialect.update_returning:
        found = {
            entry.id: entry.results
            for entry in _locked_entries(conn, ids)
            if entry.status == InboxStatus.PENDING
        }
    return found


def _with_values(entry: InboxEntry, values: dict[str, Any]) -> InboxEntry:
    """The entry as its row reads after `values` (row values, as `_progress_values` gives)."""
    changed: dict[str, Any] = {
        name: values[name]
        for name in ("flow_run_id", "error", "updated_at", "next_attempt_at")
        if name in values
    }
    if "status" in values:
        changed["status"] = InboxStatus(values["status"])
    if "results" in values:
        changed["results"] = json.loads(values["results"])
    return replace(entry, **changed)


def _update_rows(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Write each row's values (`b_id` names the entry) in one executemany."""
    if not rows:
        return
    names = [name for name in rows[0] if name != "b_id"]
    statement = (
        update(inbox_table)
        .where(inbox_table.c.id == bindparam("b_id"))
        .values({name: bindparam(f"b_{name}") for name in names})
    )
    conn.execute(
        statement,
        [{"b_id": row["b_id"], **{f"b_{name}": row[name] for name in names}} for row in rows],
    )


def _hold_until(conn: Connection, entry_ids: Iterable[str], until: datetime) -> None:
    for chunk in _chunks(list(entry_ids)):
        conn.execute(
            update(inbox_table)
            .where(inbox_table.c.id.in_(chunk), _is_pending())
            .values(next_attempt_at=until)
        )


def _new_entry(request: AcceptRequest) -> dict[str, Any]:
    """The row of a new entry for `request`."""
    received_at = request.received_at.astimezone(UTC)
    return {
        "id": str(uuid.uuid4()),
        "source": request.source,
        "event_id": request.event["id"],
        "type": request.event["type"],
        "received_at": received_at,
        "event": json.dumps(request.event, ensure_ascii=False, separators=(",", ":")),
        "status": (InboxStatus.IGNORED if request.ignored else InboxStatus.PENDING).value,
        "attempts": 0,
        "next_attempt_at": None if request.ignored else received_at,
        "flow_run_id": None,
        "results": None,
        "error": None,
        "updated_at": received_at,
    }


def _stored_entry(row: dict[str, Any]) -> InboxEntry:
    """The entry as a row just inserted from `row` reads back (without reading it)."""
    return InboxEntry(
        id=row["id"],
        source=row["source"],
        event_id=row["event_id"],
        type=row["type"],
        received_at=row["received_at"],
        event=json.loads(row["event"]),
        status=InboxStatus(row["status"]),
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        flow_run_id=None,
        results=[],
        error=None,
        updated_at=row["updated_at"],
    )


def _as_entry(row: Row[Any]) -> InboxEntry:
    return InboxEntry(
        id=row.id,
        source=row.source,
        event_id=row.event_id,
        type=row.type,
        received_at=row.received_at,
        event=json.loads(row.event),
        status=InboxStatus(row.status),
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        flow_run_id=row.flow_run_id,
        results=json.loads(row.results) if row.results else [],
        error=row.error,
        updated_at=row.updated_at,
    )

"""The webhook inbox: every accepted request, committed before the gateway answers (one table)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    Column,
    Engine,
    Index,
    Integer,
    Row,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from moltbot.state.ledger import Ledger, UTCDateTime, clean_error, ensure_table, metadata

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
    # JSON list of {"target", "id"}: every flow run id and event id the entry led to.
    Column("results", Text, nullable=True),
    Column("error", Text, nullable=True),
    Column("updated_at", UTCDateTime(), nullable=False),
    # A sender's redelivery of the same event finds this row instead of creating another.
    UniqueConstraint("source", "event_id", name="uq_webhook_inbox_source_event"),
    Index("ix_webhook_inbox_status_next", "status", "next_attempt_at"),
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
        results: `[{"target", "id"}]` of every run created and event emitted.
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
        """The flow runs of this entry that crashed (each one led to a new dispatch)."""
        return [result["id"] for result in self.results if result.get("crashed")]


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
        ensure_table(self._engine, inbox_table)

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
        values = {
            "id": str(uuid.uuid4()),
            "source": source,
            "event_id": event["id"],
            "type": event["type"],
            "received_at": received_at,
            "event": json.dumps(event, ensure_ascii=False, separators=(",", ":")),
            "status": (InboxStatus.IGNORED if ignored else InboxStatus.PENDING).value,
            "attempts": 0,
            "next_attempt_at": None if ignored else received_at,
            "flow_run_id": None,
            "results": None,
            "error": None,
            "updated_at": received_at,
        }
        try:
            with self._engine.begin() as conn:
                conn.execute(insert(inbox_table).values(**values))
        except IntegrityError:
            existing = self.find(source, event["id"])
            if existing is None:  # the unique constraint fired on something else: a bug
                raise
            return existing, False
        created = self.get(values["id"])
        assert created is not None
        return created, True

    def get(self, entry_id: str) -> InboxEntry | None:
        """The entry with this inbox id, or None."""
        return self._one(select(inbox_table).where(inbox_table.c.id == entry_id))

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

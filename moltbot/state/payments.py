"""Normalised payment events (failures and successes) in the ledger database, once per event."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Row,
    String,
    Table,
    insert,
    or_,
    select,
    tuple_,
)
from sqlalchemy.exc import IntegrityError

from moltbot.state.keys import ledger_secret
from moltbot.state.ledger import Ledger, UTCDateTime, ensure_table, metadata

Outcome = Literal["failed", "succeeded"]

payments_table = Table(
    "payment_events",
    metadata,
    # The gateway source and the sender's event id: a redelivered event finds its row.
    Column("source", String(64), primary_key=True),
    Column("event_id", String(255), primary_key=True),
    Column("provider", String(64), nullable=False),
    # The payment attempt (Stripe: the charge id when known): a failure announced twice, as
    # `payment_intent.payment_failed` and `charge.failed`, shares it and is counted once.
    Column("attempt", String(255), nullable=False),
    Column("outcome", String(16), nullable=False),
    # A hash of the customer id or e-mail, never the value: rows can be grouped by customer
    # without the ledger holding who the customer is.
    Column("customer_key", String(64), nullable=True),
    # What messages may show of the customer: already masked (`***@example.com`, `cus_…4242`).
    Column("customer_label", String(255), nullable=True),
    # In the currency's minor unit (cents; won and yen have none, so the amount itself).
    Column("amount_minor", BigInteger, nullable=True),
    Column("currency", String(8), nullable=True),
    Column("reason", String(128), nullable=True),
    Column("occurred_at", UTCDateTime(), nullable=False),
    Column("inbox_id", String(36), nullable=True),
    # When moltbot first recorded it (kept when it is delivered again).
    Column("recorded_at", UTCDateTime(), nullable=False),
    Index("ix_payment_events_occurred", "occurred_at"),
    Index("ix_payment_events_customer", "customer_key", "occurred_at"),
)


CUSTOMER_PSEUDONYM = "customer"


def customer_key(identity: str, secret: bytes) -> str:
    """A stable short keyed hash of a customer id or e-mail (`kim@x.com` and `KIM@x.com` match).

    Keyed (HMAC-SHA256 with the ledger's own random secret), so a person who sees the key in a
    run result, an artifact or a reconcile report cannot confirm a guessed e-mail by hashing it.
    """
    normalised = identity.strip().casefold()
    return hmac.new(secret, normalised.encode(), hashlib.sha256).hexdigest()[:20]


def pseudonym_secret(ledger: Ledger, name: str = CUSTOMER_PSEUDONYM, *, now: datetime) -> bytes:
    """The ledger's secret for pseudonyms called `name` (see `ledger_secret`)."""
    return ledger_secret(ledger, name, now=now)


@dataclass(frozen=True)
class PaymentRecord:
    """One payment event as moltbot keeps it (no raw customer detail).

    Attributes:
        source: the gateway source it came through (`stripe`).
        event_id: the sender's event id.
        provider: the payment provider (`stripe`, `toss`).
        attempt: the payment attempt it reports (a failure reported twice shares it).
        outcome: `failed` or `succeeded`.
        customer_key: `customer_key(...)` of the customer id or e-mail (None: unknown).
        customer_label: the customer as messages may show them, masked (None: unknown).
        amount_minor: the amount in the currency's minor unit (None: not given).
        currency: ISO 4217 code, upper case (None: not given).
        reason: the failure's reason code, lower case (None for a success).
        occurred_at: when it happened (aware UTC).
        inbox_id: the webhook inbox entry it was read from.
        recorded_at: when moltbot first recorded it (None until recorded).
    """

    source: str
    event_id: str
    provider: str
    attempt: str
    outcome: Outcome
    customer_key: str | None
    customer_label: str | None
    amount_minor: int | None
    currency: str | None
    reason: str | None
    occurred_at: datetime
    inbox_id: str | None = None
    recorded_at: datetime | None = None


class PaymentStore:
    """Records payment events once per (source, event id) and reads them back by time.

    Args:
        ledger: the open ledger whose engine to use.
    """

    def __init__(self, ledger: Ledger) -> None:
        self._engine = ledger.engine
        ensure_table(self._engine, payments_table)

    def record(self, records: Sequence[PaymentRecord], *, now: datetime) -> list[PaymentRecord]:
        """Store the records not stored yet, in one transaction; a known event is left as it is.

        Args:
            records: normalised events.
            now: their `recorded_at`.

        Returns:
            The records as stored, in the order given: new ones with `recorded_at = now`, known
            ones as first recorded.
        """
        keys = list(dict.fromkeys((r.source, r.event_id) for r in records))
        known = {(r.source, r.event_id) for r in self._select_keys(keys)}
        new: dict[tuple[str, str], dict[str, object]] = {}
        for record in records:
            key = (record.source, record.event_id)
            if key not in known and key not in new:
                new[key] = {**_values(record), "recorded_at": now}
        try:
            # One statement for the whole batch: a row (and a savepoint) per record costs
            # seconds on a batch of 1,000.
            with self._engine.begin() as conn:
                if new:
                    conn.execute(insert(payments_table), list(new.values()))
        except IntegrityError:
            # A concurrent run stored some of them meanwhile: row by row, skipping those.
            self._record_each(records, now)
        stored = {(r.source, r.event_id): r for r in self._select_keys(keys)}
        return [stored[(r.source, r.event_id)] for r in records]

    def _record_each(self, records: Sequence[PaymentRecord], now: datetime) -> None:
        with self._engine.begin() as conn:
            for record in records:
                values = {**_values(record), "recorded_at": now}
                try:
                    # A savepoint per row: a concurrent run inserting the same event makes this
                    # row a duplicate, not the whole batch a failure.
                    with conn.begin_nested():
                        conn.execute(insert(payments_table).values(**values))
                except IntegrityError:
                    continue

    def between(
        self,
        start: datetime,
        end: datetime,
        *,
        recorded_since: datetime | None = None,
        customer_keys: Iterable[str] | None = None,
    ) -> list[PaymentRecord]:
        """Events that happened in `[start, end)` (or, with `recorded_since`, were recorded
        since then), optionally of some customers only, oldest first."""
        table = payments_table
        when = (table.c.occurred_at >= start) & (table.c.occurred_at < end)
        if recorded_since is not None:
            when = or_(when, table.c.recorded_at >= recorded_since)
        statement = select(table).where(when)
        if customer_keys is not None:
            statement = statement.where(table.c.customer_key.in_(list(customer_keys)))
        statement = statement.order_by(table.c.occurred_at, table.c.source, table.c.event_id)
        with self._engine.connect() as conn:
            return [_as_record(row) for row in conn.execute(statement)]

    def _select_keys(self, keys: list[tuple[str, str]]) -> list[PaymentRecord]:
        table = payments_table
        found: list[PaymentRecord] = []
        # A few hundred pairs per statement keeps every backend's parameter limit far away.
        for start in range(0, len(keys), 400):
            chunk = keys[start : start + 400]
            statement = select(table).where(tuple_(table.c.source, table.c.event_id).in_(chunk))
            with self._engine.connect() as conn:
                found.extend(_as_record(row) for row in conn.execute(statement))
        return found


def _values(record: PaymentRecord) -> dict[str, object]:
    return {
        "source": record.source,
        "event_id": record.event_id,
        "provider": record.provider,
        "attempt": record.attempt,
        "outcome": record.outcome,
        "customer_key": record.customer_key,
        "customer_label": record.customer_label,
        "amount_minor": record.amount_minor,
        "currency": record.currency,
        "reason": record.reason,
        "occurred_at": record.occurred_at,
        "inbox_id": record.inbox_id,
    }


def _as_record(row: Row[object]) -> PaymentRecord:
    return PaymentRecord(
        source=row.source,
        event_id=row.event_id,
        provider=row.provider,
        attempt=row.attempt,
        outcome=row.outcome,
        customer_key=row.customer_key,
        customer_label=row.customer_label,
        amount_minor=row.amount_minor,
        currency=row.currency,
        reason=row.reason,
        occurred_at=row.occurred_at,
        inbox_id=row.inbox_id,
        recorded_at=row.recorded_at,
    )

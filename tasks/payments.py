"""Tasks that read payment webhooks from the inbox and keep payment events in the ledger."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from prefect import task
from prefect.cache_policies import NO_CACHE

from moltbot.errors import InputError
from moltbot.state.inbox import Inbox, InboxEntry
from moltbot.state.ledger import Ledger
from moltbot.state.payments import PaymentRecord, PaymentStore, pseudonym_secret


@task(name="read-payment-webhooks", cache_policy=NO_CACHE)
def read_inbox_entries(inbox_ids: list[str]) -> list[InboxEntry]:
    """The webhook inbox entries with these ids, in the order given (each once).

    Raises:
        InputError: an id the inbox does not have (every unknown id is named).
    """
    with Ledger.from_settings() as ledger:
        # One query per 500 ids (the gateway passes up to 2,000 ids per run by default).
        entries = Inbox(ledger).get_many(inbox_ids)
    unknown = [entry_id for entry_id in dict.fromkeys(inbox_ids) if entry_id not in entries]
    if unknown:
        raise InputError(f"no webhook inbox entry {', '.join(map(repr, unknown))}")
    return [entries[entry_id] for entry_id in dict.fromkeys(inbox_ids)]


@task(name="reject-payment-webhooks", cache_policy=NO_CACHE)
def reject_inbox_entries(errors: dict[str, str]) -> None:
    """Mark the inbox entries whose event could not be read `failed`, each with its reason."""
    with Ledger.from_settings() as ledger:
        inbox = Inbox(ledger)
        for entry_id, error in errors.items():
            inbox.reject(entry_id, error=error)


@task(name="record-payments", cache_policy=NO_CACHE)
def record_payments(records: list[PaymentRecord], now: datetime) -> list[PaymentRecord]:
    """Store the payment events not stored yet (by source and event id); all of them as stored."""
    if not records:
        return []
    with Ledger.from_settings() as ledger:
        return PaymentStore(ledger).record(records, now=now)


@task(name="read-payments", cache_policy=NO_CACHE)
def read_payments(
    start: datetime,
    end: datetime,
    *,
    recorded_since: datetime | None = None,
    customer_keys: Iterable[str] | None = None,
) -> list[PaymentRecord]:
    """Payment events that happened in `[start, end)` (or were recorded since `recorded_since`),
    optionally of some customers only, oldest first."""
    with Ledger.from_settings() as ledger:
        return PaymentStore(ledger).between(
            start,
            end,
            recorded_since=recorded_since,
            customer_keys=None if customer_keys is None else list(customer_keys),
        )


def customer_pseudonym_secret(now: datetime) -> bytes:
    """The ledger's key of customers' keyed hashes, made on first use (never a task result:
    Prefect must not hold it)."""
    with Ledger.from_settings() as ledger:
        return pseudonym_secret(ledger, now=now)

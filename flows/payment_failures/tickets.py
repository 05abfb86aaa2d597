"""Repeated customers as ticket-creation events: the event, its dedup key, its Jira ledger key."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flows.payment_failures.plan import (
    TICKET_EVENT_TYPE,
    RepeatedCustomer,
    amounts_by_currency,
    ticket_key,
)
from flows.payment_failures.render import amounts_text
from flows.ticket_creation.drafts import issue_ledger_key

DEFAULT_MAPPING = "payment-repeated"
"""The `[ticket_creation.mappings.<name>]` that drafts a repeated customer's issue."""


def ticket_ledger_key(customer_key: str, day: date, project: str) -> str:
    """The ledger key of the Jira issue of `customer_key`'s repeated failures on `day`.

    ticket-creation keys an event's issue by the event's type and id, and the id is
    `ticket_key(customer_key, day)`: the reconcile automation looks this key up.
    """
    return issue_ledger_key(f"event:{TICKET_EVENT_TYPE}:{ticket_key(customer_key, day)}", project)


def ticket_event(
    repeated: RepeatedCustomer, *, span: timedelta, timezone: str, locale: str
) -> dict[str, Any]:
    """The event handed to ticket-creation: its id is the dedup key, its time the failure that
    reached the threshold (so handing it over again changes nothing), its payload masked."""
    zone = ZoneInfo(timezone)
    hours = span.total_seconds() / 3600
    reasons: dict[str, int] = {}
    providers: dict[str, int] = {}
    for record in repeated.failures:
        reasons[record.reason or "unknown"] = reasons.get(record.reason or "unknown", 0) + 1
        providers[record.provider] = providers.get(record.provider, 0) + 1
    return {
        "id": repeated.key,
        "type": TICKET_EVENT_TYPE,
        "occurred_at": repeated.crossed_at.isoformat(),
        "payload": {
            # Masked already (`***@example.com #a1b2c3`): the raw customer never leaves the
            # webhook inbox.
            "customer": repeated.customer_label or f"#{repeated.customer_key[:6]}",
            "failures": len(repeated.failures),
            "window_hours": int(hours) if hours.is_integer() else round(hours, 1),
            "day": repeated.day.isoformat(),
            "amounts": amounts_text(amounts_by_currency(repeated.failures), locale),
            "reasons": ", ".join(f"{name} × {n}" for name, n in reasons.items()),
            "providers": ", ".join(f"{name} × {n}" for name, n in providers.items()),
            "first_failure": repeated.failures[0]
            .occurred_at.astimezone(zone)
            .strftime("%Y-%m-%d %H:%M"),
            "last_failure": repeated.crossed_at.astimezone(zone).strftime("%Y-%m-%d %H:%M"),
        },
    }

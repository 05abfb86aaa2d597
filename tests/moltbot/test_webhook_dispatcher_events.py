"""Tests of the dispatcher's event routes in bulk: one claim, one request, one results
transaction per pass, against the test Prefect API, on SQLite and PostgreSQL ledgers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.events.filters import (
    EventFilter,
    EventIDFilter,
    EventOccurredFilter,
    EventResourceFilter,
)
from sqlalchemy import event as sqlalchemy_event

from moltbot.state.audit import AuditTrail
from moltbot.state.inbox import Inbox, InboxEntry, InboxStatus
from moltbot.state.ledger import Ledger
from moltbot.webhooks.config import EventTarget, GatewayConfig
from moltbot.webhooks.dispatcher import (
    DispatchCounts,
    Dispatcher,
    prefect_event,
    prefect_event_id,
)
from tests.e2e.servers import wait_for
from tests.moltbot.dispatching import passes_at_once

T0 = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
ALERT = EventTarget(event="moltbot.alert.{type}")


class Clock:
    """A settable UTC clock."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(params=["sqlite", "postgresql"])
def inbox(request: pytest.FixtureRequest, tmp_path: Path, prefect_api: str) -> Iterator[Inbox]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres_database_url")
    with Ledger(url) as ledger:
        yield Inbox(ledger)


def event(event_id: str, event_type: str = "payment.failed", **extra: Any) -> dict[str, Any]:
    return {
        "id": event_id,
        "type": event_type,
        "occurred_at": "2026-11-24T06:00:00+00:00",
        "payload": {"object": {"customer": "김민수", "memo": "카드 한도 초과"}},
        **extra,
    }


def alerts() -> GatewayConfig:
    return GatewayConfig.from_table({"routes": {"payment.failed": [{"event": ALERT.event}]}})


def tag(name: str) -> str:
    """A sender event id no other test (they share the Prefect server) uses."""
    return f"{name}-{uuid.uuid4().hex[:8]}"


def count_commits(inbox: Inbox) -> list[int]:
    """A list that grows by one at each commit on the inbox's engine."""
    commits: list[int] = []
    sqlalchemy_event.listen(inbox.engine, "commit", lambda _conn: commits.append(1))
    return commits


def stored_events(query: EventFilter, *, expected: int) -> list[Any]:
    """The events matching `query`, read back once at least `expected` are there (the server
    stores events a moment after it takes them)."""
    with get_client(sync_client=True) as client:

        def enough() -> list[Any] | None:
            events = list(client.read_events(filter=query, limit=50).events)
            return events if len(events) >= expected else None

        return wait_for(enough, interval=0.1, what=f"{expected} stored event(s)")


def window() -> EventOccurredFilter:
    return EventOccurredFilter(since=T0 - timedelta(days=1), until=T0 + timedelta(days=1))


def events_with_ids(ids: list[uuid.UUID]) -> list[Any]:
    return stored_events(
        EventFilter(id=EventIDFilter(id=ids), occurred=window()), expected=len(ids)
    )


def events_about(entries: list[InboxEntry], *, at_least: int) -> list[Any]:
    """Every stored event whose resource is one of these entries' webhook events."""
    ids = [f"moltbot.webhook.{entry.source}.{entry.event_id}" for entry in entries]
    query = EventFilter(resource=EventResourceFilter(id=ids), occurred=window())
    return stored_events(query, expected=at_least)


def test_due_event_entries_take_one_claim_and_one_results_transaction(inbox: Inbox) -> None:
    sent = [inbox.accept("stripe", event(tag(f"evt_{i}")), received_at=T0)[0] for i in range(7)]
    dispatcher = Dispatcher(inbox, alerts())
    AuditTrail(inbox)  # its tables exist: nothing below creates them
    commits = count_commits(inbox)

    assert dispatcher.dispatch_pending() == DispatchCounts(dispatched=7)

    # One transaction claims the seven, one records their results and audit entries.
    assert len(commits) == 2
    for entry in sent:
        done = inbox.get(entry.id)
        assert (done.status, done.attempts, done.error) == (InboxStatus.DISPATCHED, 1, None)
        assert done.results == [
            {"target": ALERT.label, "id": str(prefect_event_id(entry.id, ALERT))}
        ]
    audited = AuditTrail(inbox).rows()
    assert {row.target for row in audited} == {
        f"inbox entry {entry.id} (payment.failed)" for entry in sent
    }
    assert {(row.actor, row.action, row.outcome) for row in audited} == {
        ("webhook:stripe", "webhook", "dispatched")
    }
    assert AuditTrail(inbox).verify().ok
    # Each entry's event is in Prefect, once, with its id, name and payload.
    stored = events_about(sent, at_least=len(sent))
    assert sorted(str(found.id) for found in stored) == sorted(
        str(prefect_event_id(entry.id, ALERT)) for entry in sent
    )
    by_id = {str(found.id): found for found in stored}
    for entry in sent:
        found = by_id[str(prefect_event_id(entry.id, ALERT))]
        assert found.event == "moltbot.alert.payment.failed"
        assert found.payload == entry.event
    # Nothing is due any more.
    assert dispatcher.dispatch_pending() == DispatchCounts()


def test_a_crash_between_emitting_and_recording_leaves_one_event_per_entry(inbox: Inbox) -> None:
    sent = [inbox.accept("stripe", event(tag(f"evt_{i}")), received_at=T0)[0] for i in range(3)]
    clock = Clock(T0)
    dispatcher = Dispatcher(inbox, alerts(), clock=clock)
    # The dispatcher that crashed claimed the entries and posted their events, then died before
    # recording anything.
    claimed = inbox.claim_many(sent, now=T0, lease=dispatcher.lease)
    assert [entry.id for entry in claimed] == [entry.id for entry in sent]
    with get_client(sync_client=True) as client:
        client.request(
            "POST",
            "/events",
            json=[prefect_event(ALERT, entry).model_dump(mode="json") for entry in claimed],
        ).raise_for_status()
    ids = [prefect_event_id(entry.id, ALERT) for entry in sent]
    # Stored within the server's flush interval (5 s), far shorter than the lease (60 s).
    assert len(events_with_ids(ids)) == 3

    # Within the lease nobody touches them; after it, the next dispatcher takes them over and
    # posts the same events, ids included.
    assert dispatcher.dispatch_pending() == DispatchCounts()
    clock.now = T0 + dispatcher.lease
    assert dispatcher.dispatch_pending() == DispatchCounts(dispatched=3)

    for entry, event_id in zip(sent, ids, strict=True):
        done = inbox.get(entry.id)
        assert (done.status, done.attempts) == (InboxStatus.DISPATCHED, 2)
        assert done.results == [{"target": ALERT.label, "id": str(event_id)}]
    # A later event stored shows the server has handled the second posting: it kept one event
    # per entry (it stores an event id once), and lost nothing.
    later, _ = inbox.accept("stripe", event(tag("evt_later")), received_at=T0)
    clock.now += timedelta(seconds=1)
    assert dispatcher.dispatch_pending() == DispatchCounts(dispatched=1)
    assert len(events_with_ids([prefect_event_id(later.id, ALERT)])) == 1
    stored = events_about(sent, at_least=3)
    assert sorted(str(found.id) for found in stored) == sorted(str(i) for i in ids)


def test_one_refused_entry_among_many_fails_alone(inbox: Inbox) -> None:
    # The Prefect server refuses event names over 1024 characters; this route's name repeats
    # the type, so only the entry with a 255-character type gets one.
    config = GatewayConfig.from_table(
        {"routes": {}, "default": {"event": "m.{type}.{type}.{type}.{type}.{type}"}}
    )
    target = config.targets_for("payment.failed")[0]
    good = [inbox.accept("stripe", event(tag(f"evt_{i}")), received_at=T0)[0] for i in range(4)]
    too_long, _ = inbox.accept("stripe", event(tag("evt_long"), "x" * 255), received_at=T0)
    # …and one whose event cannot even be built: its time is not a time.
    no_time, _ = inbox.accept(
        "stripe", event(tag("evt_no_time"), occurred_at="yesterday"), received_at=T0
    )
    dispatcher = Dispatcher(inbox, config, max_attempts=1)

    assert dispatcher.dispatch_pending() == DispatchCounts(dispatched=4, failed=2)

    refused = inbox.get(too_long.id)
    assert refused.status == InboxStatus.FAILED
    assert refused.error.startswith(f"{target.label}: the Prefect API refused it (422)")
    unbuilt = inbox.get(no_time.id)
    assert unbuilt.status == InboxStatus.FAILED
    assert unbuilt.error.startswith(f"{target.label}: ValueError")
    for entry in good:
        done = inbox.get(entry.id)
        assert (done.status, done.error) == (InboxStatus.DISPATCHED, None)
        assert done.results == [
            {"target": target.label, "id": str(prefect_event_id(entry.id, target))}
        ]
    assert len(events_with_ids([prefect_event_id(e.id, target) for e in good])) == 4
    assert len(AuditTrail(inbox).rows()) == 4


def test_with_max_attempts_left_a_refused_entry_is_retried_and_the_others_go(
    inbox: Inbox,
) -> None:
    clock = Clock(T0)
    good, _ = inbox.accept("stripe", event(tag("evt_good")), received_at=T0)
    bad, _ = inbox.accept("stripe", event(tag("evt_bad"), occurred_at="?"), received_at=T0)
    dispatcher = Dispatcher(inbox, alerts(), clock=clock)

    assert dispatcher.dispatch_pending() == DispatchCounts(dispatched=1, retrying=1)

    assert inbox.get(good.id).status == InboxStatus.DISPATCHED
    waiting = inbox.get(bad.id)
    assert (waiting.status, waiting.attempts) == (InboxStatus.PENDING, 1)
    assert waiting.next_attempt_at == T0 + timedelta(seconds=1)
    assert waiting.error.startswith(f"{ALERT.label}: ValueError")


def test_two_concurrent_passes_emit_each_event_once(inbox: Inbox) -> None:
    sent = [inbox.accept("stripe", event(tag(f"evt_{i}")), received_at=T0)[0] for i in range(12)]
    dispatchers = [Dispatcher(inbox, alerts()), Dispatcher(inbox, alerts())]
    results = passes_at_once(dispatchers)

    assert sum(counts.dispatched for counts in results) == 12
    assert all(inbox.get(entry.id).attempts == 1 for entry in sent)
    assert len(AuditTrail(inbox).rows()) == 12
    assert AuditTrail(inbox).verify().ok
    stored = events_about(sent, at_least=12)
    assert sorted(str(found.id) for found in stored) == sorted(
        str(prefect_event_id(entry.id, ALERT)) for entry in sent
    )

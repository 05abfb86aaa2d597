"""Tests of the webhook inbox: unique events, claims, backoff, counts; SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from moltbot.state.inbox import Inbox, InboxStatus
from moltbot.state.ledger import Ledger

T0 = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
LEASE = timedelta(seconds=60)


def event(event_id: str, event_type: str = "payment.failed") -> dict:
    return {
        "id": event_id,
        "type": event_type,
        "occurred_at": "2026-11-24T06:00:00+00:00",
        "payload": {"customer": "김민수", "memo": "카드 한도 초과"},
    }


@pytest.fixture(params=["sqlite", "postgresql"])
def inbox(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Inbox]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state' / 'ledger.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres_database_url")
    with Ledger(url) as ledger:
        yield Inbox(ledger)


def test_accept_stores_the_event_pending_and_due_at_once(inbox: Inbox) -> None:
    entry, created = inbox.accept("stripe", event("evt_1"), received_at=T0)

    assert created
    assert (entry.source, entry.event_id, entry.type) == ("stripe", "evt_1", "payment.failed")
    assert entry.event == event("evt_1")
    assert (entry.status, entry.attempts, entry.next_attempt_at) == (InboxStatus.PENDING, 0, T0)
    assert entry.received_at == T0
    assert inbox.get(entry.id) == entry


def test_a_duplicate_event_id_returns_the_first_entry_and_creates_nothing(inbox: Inbox) -> None:
    first, _ = inbox.accept("stripe", event("evt_1"), received_at=T0)

    again, created = inbox.accept("stripe", event("evt_1", "other.type"), received_at=T0)

    assert not created
    assert again.id == first.id
    assert again.type == "payment.failed"
    assert len(inbox.entries()) == 1
    # The same event id from another source is another event.
    _, other_source = inbox.accept("github", event("evt_1"), received_at=T0)
    assert other_source


def test_concurrent_deliveries_of_one_event_create_one_entry(inbox: Inbox) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(
            pool.map(lambda _: inbox.accept("stripe", event("evt_x"), received_at=T0), range(8))
        )

    assert sum(created for _, created in results) == 1
    assert len({entry.id for entry, _ in results}) == 1
    assert len(inbox.entries()) == 1


def test_an_ignored_entry_is_never_due(inbox: Inbox) -> None:
    entry, _ = inbox.accept("stripe", event("evt_1", "customer.created"), received_at=T0,
                            ignored=True)  # fmt: skip

    assert entry.status == InboxStatus.IGNORED
    assert inbox.due(T0 + timedelta(days=1), limit=10) == []


def test_claim_is_a_compare_and_set_and_a_lease(inbox: Inbox) -> None:
    entry, _ = inbox.accept("stripe", event("evt_1"), received_at=T0)

    claimed = inbox.claim(entry, now=T0, lease=LEASE)

    assert claimed is not None
    assert (claimed.attempts, claimed.next_attempt_at) == (1, T0 + LEASE)
    # A second dispatcher that read the same row loses.
    assert inbox.claim(entry, now=T0, lease=LEASE) is None
    # The claimed entry is not due until its lease runs out.
    assert inbox.due(T0 + LEASE - timedelta(seconds=1), limit=10) == []
    assert [e.id for e in inbox.due(T0 + LEASE, limit=10)] == [entry.id]


def test_retry_later_keeps_it_pending_with_a_masked_error(inbox: Inbox) -> None:
    entry, _ = inbox.accept("stripe", event("evt_1"), received_at=T0)
    inbox.claim(entry, now=T0, lease=LEASE)

    inbox.retry_later(
        entry.id,
        error="refused for ops@example.com token=abc123secret",
        at=T0 + timedelta(seconds=2),
    )

    again = inbox.get(entry.id)
    assert again.status == InboxStatus.PENDING
    assert again.next_attempt_at == T0 + timedelta(seconds=2)
    assert "ops@example.com" not in again.error
    assert "abc123secret" not in again.error


def test_outcomes_and_counts(inbox: Inbox) -> None:
    entries = [inbox.accept("stripe", event(f"evt_{i}"), received_at=T0)[0] for i in range(4)]
    inbox.accept("stripe", event("evt_x", "other"), received_at=T0, ignored=True)

    inbox.mark_dispatched(
        entries[0].id, flow_run_id="run-1", results=[{"target": "deployment a/b", "id": "run-1"}]
    )
    inbox.mark_failed(entries[1].id, error="deployment a/b: not found in the Prefect API")
    inbox.mark_ignored(entries[2].id)

    assert inbox.counts() == {"pending": 1, "dispatched": 1, "failed": 1, "ignored": 2}
    done = inbox.get(entries[0].id)
    assert (done.flow_run_id, done.results, done.next_attempt_at) == (
        "run-1",
        [{"target": "deployment a/b", "id": "run-1"}],
        None,
    )
    assert inbox.get(entries[1].id).error == "deployment a/b: not found in the Prefect API"
    assert [e.id for e in inbox.entries(InboxStatus.PENDING)] == [entries[3].id]


def test_a_finished_entry_is_not_moved_by_a_late_dispatcher(inbox: Inbox) -> None:
    entry, _ = inbox.accept("stripe", event("evt_1"), received_at=T0)
    inbox.mark_dispatched(entry.id, flow_run_id="run-1", results=[])

    inbox.retry_later(entry.id, error="late", at=T0)
    inbox.mark_failed(entry.id, error="late")

    assert inbox.get(entry.id).status == InboxStatus.DISPATCHED
    assert inbox.get(entry.id).error is None


def test_oldest_pending_received_at(inbox: Inbox) -> None:
    assert inbox.oldest_pending_received_at() is None
    first, _ = inbox.accept("stripe", event("evt_1"), received_at=T0)
    inbox.accept("stripe", event("evt_2"), received_at=T0 + timedelta(seconds=5))

    assert inbox.oldest_pending_received_at() == T0
    inbox.mark_dispatched(first.id, flow_run_id=None, results=[])
    assert inbox.oldest_pending_received_at() == T0 + timedelta(seconds=5)

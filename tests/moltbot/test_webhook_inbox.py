"""Tests of the webhook inbox: unique events, claims, backoff, counts; SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from moltbot.state.inbox import DispatchOutcome, Inbox, InboxStatus
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


def test_get_many_reads_the_entries_in_one_go_and_leaves_unknown_ids_out(inbox: Inbox) -> None:
    ids = [inbox.accept("stripe", event(f"evt_{i}"), received_at=T0)[0].id for i in range(3)]

    found = inbox.get_many([ids[2], "nope", ids[0], ids[2]])

    assert set(found) == {ids[0], ids[2]}
    assert found[ids[2]] == inbox.get(ids[2])


def test_a_batch_stores_its_entries_oldest_first_and_claims_them(inbox: Inbox) -> None:
    newer, _ = inbox.accept("stripe", event("evt_new"), received_at=T0 + timedelta(seconds=1))
    older, _ = inbox.accept("stripe", event("evt_old"), received_at=T0)

    batch = inbox.open_batch("a/b", [newer.id, older.id], now=T0, lease=LEASE,
                             settled_ids=[older.id])  # fmt: skip

    assert batch is not None
    assert (batch.deployment, batch.status, batch.attempts) == ("a/b", "open", 1)
    assert batch.entry_ids == (older.id, newer.id)
    assert batch.next_attempt_at == T0 + LEASE
    assert [inbox.get(i).attempts for i in batch.entry_ids] == [1, 1]
    # A settled entry waits for its batch; the other one still has targets to batch.
    assert [e.id for e in inbox.due(T0 + timedelta(seconds=1), limit=10)] == [newer.id]
    assert inbox.batched_deployments([older.id, newer.id]) == {
        older.id: {"a/b"},
        newer.id: {"a/b"},
    }


def test_an_entry_is_in_one_batch_per_deployment_at_a_time(inbox: Inbox) -> None:
    a, b, c = (inbox.accept("stripe", event(f"evt_{n}"), received_at=T0)[0] for n in "abc")
    first = inbox.open_batch("a/b", [a.id, b.id], now=T0, lease=LEASE)

    # Another dispatcher batching b again for the same deployment stores nothing at all.
    assert inbox.open_batch("a/b", [b.id, c.id], now=T0, lease=LEASE) is None
    assert inbox.get(c.id).attempts == 0
    assert [x.key for x in inbox.due_batches(T0 + LEASE, limit=10)] == [first.key]
    # Another deployment of the same entry gets a batch of its own.
    other = inbox.open_batch("c/d", [b.id], now=T0, lease=LEASE)
    assert other is not None and other.entry_ids == (b.id,)
    assert inbox.batched_deployments([b.id]) == {b.id: {"a/b", "c/d"}}


def test_a_batch_of_an_entry_no_longer_pending_stores_nothing(inbox: Inbox) -> None:
    a, _ = inbox.accept("stripe", event("evt_a"), received_at=T0)
    b, _ = inbox.accept("stripe", event("evt_b"), received_at=T0)
    inbox.mark_failed(a.id, error="refused")

    assert inbox.open_batch("a/b", [a.id, b.id], now=T0, lease=LEASE) is None

    assert inbox.get(b.id).attempts == 0
    assert inbox.batched_deployments([a.id, b.id]) == {}
    assert inbox.due_batches(T0 + LEASE, limit=10) == []


def test_claim_batch_is_a_compare_and_set_and_a_lease(inbox: Inbox) -> None:
    a, _ = inbox.accept("stripe", event("evt_a"), received_at=T0)
    batch = inbox.open_batch("a/b", [a.id], now=T0, lease=LEASE)
    assert inbox.due_batches(T0 + LEASE - timedelta(seconds=1), limit=10) == []
    [due] = inbox.due_batches(T0 + LEASE, limit=10)

    claimed = inbox.claim_batch(due, now=T0 + LEASE, lease=LEASE)

    assert claimed is not None
    assert (claimed.attempts, claimed.next_attempt_at) == (2, T0 + 2 * LEASE)
    assert inbox.get(a.id).attempts == 2
    # A second dispatcher that read the same batch loses.
    assert inbox.claim_batch(due, now=T0 + LEASE, lease=LEASE) is None
    assert batch.key == claimed.key


@pytest.mark.parametrize("returning", [True, False], ids=["returning", "row-by-row"])
def test_claim_many_and_settle_take_and_record_entries_in_bulk(
    inbox: Inbox, returning: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A backend without UPDATE … RETURNING takes the row-by-row way.
    monkeypatch.setattr(inbox.engine.dialect, "update_returning", returning)
    now = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
    lease = timedelta(seconds=60)
    first, second, third, fourth = (
        inbox.accept("stripe", event(f"evt_{i}"), received_at=now)[0] for i in range(4)
    )
    assert inbox.claim(third, now=now, lease=lease) is not None  # another dispatcher's

    claimed = inbox.claim_many([first, second, third, fourth], now=now, lease=lease)

    assert [entry.id for entry in claimed] == [first.id, second.id, fourth.id]
    assert {(e.attempts, e.next_attempt_at) for e in claimed} == {(1, now + lease)}
    assert inbox.get(first.id).attempts == 1
    inbox.reject(fourth.id, error="the run could not use it")  # no longer pending
    done = {"target": "event e", "id": "0b6c"}

    stored = inbox.settle(
        [
            DispatchOutcome(claimed[0], results=[done]),
            DispatchOutcome(claimed[1], error="token=abc123secret refused", retry_at=now + lease),
            DispatchOutcome(claimed[2], results=[done]),
        ],
        progress=lambda entry: (bool(entry.results), None),
    )

    assert set(stored) == {first.id, second.id}
    for entry_id, expected in stored.items():
        assert inbox.get(entry_id) == expected
    assert (stored[first.id].status, stored[first.id].results) == (InboxStatus.DISPATCHED, [done])
    waiting = stored[second.id]
    assert (waiting.status, waiting.next_attempt_at) == (InboxStatus.PENDING, now + lease)
    assert "abc123secret" not in waiting.error
    assert inbox.get(fourth.id).status == InboxStatus.FAILED

"""The request journal every emulator shares: snapshots, fault queue order and counts, races."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from moltbot.sandbox.recording import RequestJournal


def test_faults_apply_in_order_each_for_its_count() -> None:
    journal: RequestJournal[str, str, int] = RequestJournal()
    journal.add_fault(429, count=2)
    journal.add_fault(500, count=1)

    assert journal.pending_faults == [(429, 2), (500, 1)]
    assert [journal.take_fault() for _ in range(4)] == [429, 429, 500, None]
    assert journal.pending_faults == []


def test_a_fault_needs_at_least_one_use() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        RequestJournal().add_fault("x", count=0)


def test_snapshots_do_not_change_the_journal_and_clears_are_selective() -> None:
    journal: RequestJournal[str, str, str] = RequestJournal()
    journal.record_accepted("ok")
    journal.record_rejected("bad")
    journal.add_fault("slow", count=1)

    journal.accepted.clear()
    assert (journal.accepted, journal.rejected, journal.attempts) == (["ok"], ["bad"], 2)
    journal.clear_requests()
    assert (journal.attempts, journal.pending_faults) == (0, [("slow", 1)])
    journal.clear()
    assert journal.pending_faults == []


def test_concurrent_takers_use_each_fault_exactly_its_count() -> None:
    journal: RequestJournal[str, str, str] = RequestJournal()
    journal.add_fault("429", count=50)

    def take_many(_: int) -> list[str | None]:
        return [journal.take_fault() for _ in range(20)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        taken = [fault for batch in pool.map(take_many, range(8)) for fault in batch]

    assert taken.count("429") == 50
    assert taken.count(None) == 110

"""The hash-chained audit trail: appends, masking, tamper detection, prune anchoring, races."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest
from sqlalchemy import delete, insert, select, update

from moltbot.state.audit import (
    GENESIS,
    AuditAction,
    AuditTrail,
    Publication,
    audit_anchor_table,
    audit_table,
    row_hash,
)
from moltbot.state.ledger import Ledger

START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    with Ledger(f"sqlite:///{tmp_path / 'ledger.db'}") as opened:
        yield opened


def fill(trail: AuditTrail, count: int = 5) -> None:
    for number in range(count):
        trail.record(
            AuditAction.RUN,
            f"flow run r{number}",
            actor="user:alice",
            automation="daily-report",
            parameters={"report_date": f"2026-12-0{number + 1}"},
            outcome="completed",
            at=START + timedelta(hours=number),
        )


def test_rows_link_to_the_previous_row_and_verify(ledger: Ledger) -> None:
    trail = AuditTrail(ledger)
    fill(trail)

    rows = trail.rows()

    assert [row.seq for row in rows] == [1, 2, 3, 4, 5]
    assert rows[0].prev_hash == GENESIS
    assert all(later.prev_hash == earlier.hash for earlier, later in pairwise(rows))
    result = trail.verify()
    assert result.ok and result.checked == 5 and result.head == rows[-1].hash


def test_an_empty_trail_verifies(ledger: Ledger) -> None:
    result = AuditTrail(ledger).verify()

    assert result.ok and result.checked == 0 and result.head == GENESIS


def test_parameters_target_and_detail_are_masked(ledger: Ledger) -> None:
    trail = AuditTrail(ledger)
    row = trail.record(
        AuditAction.APPROVE,
        "review of kim@example.com's drafts",
        actor="reviewer:lee",
        parameters={"notify": "010-1234-5678", "token": "xoxb-1234567890-abcdefghij"},
        detail="resident 900101-1234567 approved",
    )

    stored = trail.rows()[0]
    text = f"{stored.target} {stored.parameters} {stored.detail}"
    assert "1234-5678" not in text and "xoxb-1234567890" not in text
    assert "900101-1234567" not in text and "kim@" not in text
    assert stored == row


@pytest.mark.parametrize("seq", [1, 3, 5])
def test_an_altered_row_is_named(ledger: Ledger, seq: int) -> None:
    trail = AuditTrail(ledger)
    fill(trail)
    with ledger.engine.begin() as conn:
        conn.execute(update(audit_table).where(audit_table.c.seq == seq).values(actor="user:eve"))

    result = trail.verify()

    assert not result.ok and result.first_bad == seq
    assert result.kind == "altered"


@pytest.mark.parametrize("seq", [1, 3, 5])
def test_a_removed_row_is_named(ledger: Ledger, seq: int) -> None:
    trail = AuditTrail(ledger)
    fill(trail)
    with ledger.engine.begin() as conn:
        conn.execute(delete(audit_table).where(audit_table.c.seq == seq))

    result = trail.verify()

    assert not result.ok and result.first_bad == seq
    # The last row's absence is seen against the anchor, the others' by the gap they leave.
    assert result.kind == ("tail_missing" if seq == 5 else "missing")


def test_removing_the_last_rows_is_caught_by_the_anchor(ledger: Ledger) -> None:
    trail = AuditTrail(ledger)
    fill(trail)
    with ledger.engine.begin() as conn:
        conn.execute(delete(audit_table).where(audit_table.c.seq >= 4))

    result = trail.verify()

    assert not result.ok and result.first_bad == 4
    assert result.kind == "tail_missing" and result.anchor_seq == 5


def _forged(seq: int, prev_hash: str) -> dict[str, object]:
    values = {
        "seq": seq,
        "at": START,
        "actor": "user:eve",
        "action": AuditAction.APPROVE,
        "automation": "ticket-creation",
        "target": "forged",
        "parameters": None,
        "outcome": "ok",
        "detail": None,
        "prev_hash": prev_hash,
    }
    return {**values, "hash": row_hash(**values)}  # type: ignore[arg-type]


def test_a_row_appended_behind_the_anchors_back_is_named(ledger: Ledger) -> None:
    trail = AuditTrail(ledger)
    fill(trail)
    head = trail.rows()[-1].hash
    with ledger.engine.begin() as conn:
        conn.execute(insert(audit_table).values(**_forged(6, head)))

    result = trail.verify()

    assert not result.ok and result.first_bad == 6
    assert result.kind == "beyond_anchor"


@pytest.mark.parametrize("position", [1, 3])
def test_a_row_inserted_in_the_middle_is_named(ledger: Ledger, position: int) -> None:
    """Room is made by renumbering the later rows; the forged row itself hashes correctly."""
    trail = AuditTrail(ledger)
    fill(trail)
    rows = trail.rows()
    previous = GENESIS if position == 1 else rows[position - 2].hash
    with ledger.engine.begin() as conn:
        for row in reversed(rows[position - 1 :]):
            conn.execute(
                update(audit_table).where(audit_table.c.seq == row.seq).values(seq=row.seq + 1)
            )
        conn.execute(insert(audit_table).values(**_forged(position, previous)))
        conn.execute(update(audit_anchor_table).values(last_seq=6))

    result = trail.verify()

    assert not result.ok and result.first_bad == position + 1 and result.kind == "unlinked"


def test_prune_keeps_the_chain_verifying(ledger: Ledger) -> None:
    trail = AuditTrail(ledger)
    fill(trail)

    assert trail.prune_before(START + timedelta(hours=3), dry_run=True) == 3
    assert [row.seq for row in trail.rows()] == [1, 2, 3, 4, 5]
    assert trail.prune_before(START + timedelta(hours=3)) == 3

    assert [row.seq for row in trail.rows()] == [4, 5]
    assert trail.verify().ok
    trail.record(AuditAction.PRUNE, "audit", actor="user:alice")
    assert trail.verify().ok and trail.rows()[-1].seq == 6


def test_prune_forgets_the_publications_of_days_wholly_removed(ledger: Ledger) -> None:
    trail = AuditTrail(ledger)
    fill(trail)  # one entry an hour from 09:00 UTC on 2026-12-01
    published = START + timedelta(hours=5)
    trail.note_publication(date(2026, 11, 30), last_seq=2, at=published)
    trail.note_publication(date(2026, 12, 1), last_seq=5, at=published)

    trail.prune_before(START + timedelta(hours=3))

    assert trail.publication(date(2026, 11, 30)) is None
    assert trail.publication(date(2026, 12, 1)) == Publication(date(2026, 12, 1), 5, published)


def test_after_a_prune_removing_the_first_kept_row_is_named(ledger: Ledger) -> None:
    trail = AuditTrail(ledger)
    fill(trail)
    trail.prune_before(START + timedelta(hours=2))
    with ledger.engine.begin() as conn:
        conn.execute(delete(audit_table).where(audit_table.c.seq == 3))

    result = trail.verify()

    assert not result.ok and result.first_bad == 3


def test_pruning_everything_leaves_an_anchor_that_new_rows_continue(ledger: Ledger) -> None:
    trail = AuditTrail(ledger)
    fill(trail, 2)
    assert trail.prune_before(START + timedelta(days=1)) == 2

    assert trail.verify().ok
    row = trail.record(AuditAction.RUN, "flow run r9", actor="user:alice")
    assert row.seq == 3 and trail.verify().ok


def test_concurrent_writers_never_fork_the_chain(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    with Ledger(url) as first:
        AuditTrail(first)  # the tables exist before the writers race
    writers, each = 4, 15
    barrier = threading.Barrier(writers)
    errors: list[BaseException] = []

    def write(number: int) -> None:
        try:
            with Ledger(url) as own:
                trail = AuditTrail(own)
                barrier.wait()
                for index in range(each):
                    trail.record(AuditAction.RUN, f"w{number}-{index}", actor=f"user:w{number}")
        except BaseException as exc:  # reported below
            errors.append(exc)
            # The other writers must not wait at the barrier for this one.
            barrier.abort()

    threads = [threading.Thread(target=write, args=(number,)) for number in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [type(error).__name__ for error in errors] == []
    with Ledger(url) as ledger:
        trail = AuditTrail(ledger)
        rows = trail.rows()
        assert [row.seq for row in rows] == list(range(1, writers * each + 1))
        assert sorted(row.target for row in rows) == sorted(
            f"w{number}-{index}" for number in range(writers) for index in range(each)
        )
        assert trail.verify().ok


def test_the_chain_on_postgresql(postgres_database_url: str) -> None:
    with Ledger(postgres_database_url) as ledger:
        trail = AuditTrail(ledger)
        fill(trail, 3)
        assert trail.verify().ok
        with ledger.engine.begin() as conn:
            conn.execute(update(audit_table).where(audit_table.c.seq == 2).values(outcome="x"))
            stored = conn.execute(select(audit_table.c.at).where(audit_table.c.seq == 1)).scalar()
        assert stored == START
        result = trail.verify()
        assert not result.ok and result.first_bad == 2

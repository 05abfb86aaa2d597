"""Tests of the watermark store: hold, compare-and-set advance, races, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from moltbot.state.ledger import Ledger
from moltbot.state.watermarks import WatermarkMoved, WatermarkStore, canonical_json

STREAM = "sheet-1/설문 응답 시트1"


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state' / 'ledger.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres_database_url")
    with Ledger(url) as opened:
        yield opened


def test_a_stream_never_stored_has_no_position_and_nothing_held(ledger: Ledger) -> None:
    mark = WatermarkStore(ledger, "form-digest").get(STREAM)

    assert (mark.position, mark.pending, mark.updated_at) == (None, None, None)


def test_hold_keeps_the_committed_position_and_advance_clears_the_hold(ledger: Ledger) -> None:
    store = WatermarkStore(ledger, "form-digest")
    first = {"row": 5, "cell": "2026. 11. 24 오후 3:12:45", "time": "2026-11-24T06:12:45+00:00"}
    store.advance(STREAM, first, expected=None)
    store.hold(STREAM, {"row": 9, "cell": "x", "time": None})

    held = store.get(STREAM)
    assert held.position == first
    assert held.pending == {"row": 9, "cell": "x", "time": None}

    second = {"row": 9, "cell": "x", "time": None}
    store.advance(STREAM, second, expected=first)
    assert (store.get(STREAM).position, store.get(STREAM).pending) == (second, None)


def test_a_hold_before_any_advance_creates_the_row_without_a_position(ledger: Ledger) -> None:
    store = WatermarkStore(ledger, "form-digest")
    store.hold(STREAM, {"row": 3, "cell": "a", "time": None})

    assert store.get(STREAM).position is None
    store.advance(STREAM, {"row": 3, "cell": "a", "time": None}, expected=None)
    assert store.get(STREAM).position == {"row": 3, "cell": "a", "time": None}


def test_advance_from_a_stale_position_is_refused_and_changes_nothing(ledger: Ledger) -> None:
    store = WatermarkStore(ledger, "form-digest")
    store.advance(STREAM, {"row": 5, "cell": "a", "time": None}, expected=None)

    with pytest.raises(WatermarkMoved, match="moved while this run worked"):
        store.advance(STREAM, {"row": 2, "cell": "b", "time": None}, expected=None)
    with pytest.raises(WatermarkMoved):
        store.advance(STREAM, {"row": 7, "cell": "c", "time": None}, expected={"row": 4})
    assert store.get(STREAM).position == {"row": 5, "cell": "a", "time": None}


def test_automations_and_streams_are_kept_apart(ledger: Ledger) -> None:
    WatermarkStore(ledger, "form-digest").advance(STREAM, {"row": 5}, expected=None)

    assert WatermarkStore(ledger, "ticket-creation").get(STREAM).position is None
    assert WatermarkStore(ledger, "form-digest").get("sheet-1/other").position is None


def test_of_eight_concurrent_advances_from_the_same_read_exactly_one_commits(
    ledger: Ledger,
) -> None:
    store = WatermarkStore(ledger, "form-digest")
    store.advance(STREAM, {"row": 1}, expected=None)

    def advance(row: int) -> bool:
        try:
            WatermarkStore(ledger, "form-digest").advance(STREAM, {"row": row}, expected={"row": 1})
        except WatermarkMoved:
            return False
        return True

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(advance, range(10, 18)))

    assert outcomes.count(True) == 1
    assert store.get(STREAM).position == {"row": 10 + outcomes.index(True)}


def test_positions_compare_by_content_not_by_key_order() -> None:
    assert canonical_json({"row": 1, "cell": "가"}) == canonical_json({"cell": "가", "row": 1})
    assert canonical_json(None) is None


def test_of_eight_concurrent_first_advances_exactly_one_commits(ledger: Ledger) -> None:
    WatermarkStore(ledger, "form-digest")  # the table exists before the race, as in a flow

    def advance(row: int) -> bool:
        try:
            WatermarkStore(ledger, "form-digest").advance(STREAM, {"row": row}, expected=None)
        except WatermarkMoved:
            return False
        return True

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(advance, range(10, 18)))

    assert outcomes.count(True) == 1
    assert WatermarkStore(ledger, "form-digest").get(STREAM).position == {
        "row": 10 + outcomes.index(True)
    }

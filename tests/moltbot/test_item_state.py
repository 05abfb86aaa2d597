"""Tests of the item-state store on a real SQLite file and on PostgreSQL, on the ledger engine."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import inspect, select

from moltbot.state.item_state import STATE_COLUMNS, ItemStateStore, empty_states, item_states_table
from moltbot.state.ledger import Ledger

NOW = datetime(2026, 11, 24, 1, 2, 3, 456789, tzinfo=UTC)
HOUR = timedelta(hours=1)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state' / 'ledger.sqlite3'}"
    return request.getfixturevalue("postgres_database_url")


@pytest.fixture
def ledger(db_url: str) -> Iterator[Ledger]:
    with Ledger(db_url) as opened:
        yield opened


def states(rows: list[tuple]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(STATE_COLUMNS))
    for name in ("since", "episode_since", "last_alerted_at"):
        frame[name] = pd.to_datetime(frame[name], utc=True).astype("datetime64[us, UTC]")
    return frame


def by_key(frame: pd.DataFrame) -> dict[str, tuple]:
    return {
        row[0]: tuple(None if pd.isna(value) else value for value in row[1:])
        for row in frame[list(STATE_COLUMNS)].itertuples(index=False, name=None)
    }


def test_an_empty_store_reads_an_empty_typed_frame(ledger: Ledger) -> None:
    read = ItemStateStore(ledger, "inventory-alert").read()

    assert read.empty
    assert list(read.columns) == [*STATE_COLUMNS, "alert_key"]
    assert read.dtypes.astype(str).to_dict() == empty_states().dtypes.astype(str).to_dict()


def test_states_round_trip_with_korean_keys_and_exact_utc_times(ledger: Ledger) -> None:
    store = ItemStateStore(ledger, "inventory-alert")
    written = states(
        [
            ("텀블러-500", "out", NOW, NOW - HOUR, NOW),
            ("A1", "ok", NOW - 2 * HOUR, None, None),
        ]
    )

    assert store.write(written, now=NOW) == 2
    read = store.read()

    assert by_key(read) == {
        "텀블러-500": ("out", NOW, NOW - HOUR, NOW),
        "A1": ("ok", NOW - 2 * HOUR, None, None),
    }
    assert str(read["since"].dtype) == "datetime64[us, UTC]"


def test_writes_upsert_only_the_given_rows_and_keep_the_others(ledger: Ledger) -> None:
    store = ItemStateStore(ledger, "inventory-alert")
    store.write(states([("A", "ok", NOW, None, None), ("B", "low", NOW, NOW, NOW)]), now=NOW)
    later = NOW + HOUR

    store.write(
        states([("B", "out", later, NOW, later), ("C", "ok", later, None, None)]), now=later
    )

    assert by_key(store.read()) == {
        "A": ("ok", NOW, None, None),
        "B": ("out", later, NOW, later),
        "C": ("ok", later, None, None),
    }
    with ledger.engine.connect() as conn:
        rows = conn.execute(select(item_states_table.c.item_key, item_states_table.c.updated_at))
        stamps = {key: updated_at for key, updated_at in rows}
    assert stamps == {"A": NOW, "B": later, "C": later}


def test_automations_do_not_see_each_others_items(ledger: Ledger) -> None:
    ItemStateStore(ledger, "inventory-alert").write(states([("A", "out", NOW, NOW, NOW)]), now=NOW)
    other = ItemStateStore(ledger, "price-watch")
    other.write(states([("A", "ok", NOW, None, None)]), now=NOW)

    assert by_key(ItemStateStore(ledger, "inventory-alert").read())["A"][0] == "out"
    assert by_key(other.read())["A"][0] == "ok"


def test_many_rows_in_several_batches(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("moltbot.state.item_state.WRITE_BATCH_ROWS", 1000)
    store = ItemStateStore(ledger, "inventory-alert")
    count = 5_500
    frame = states([(f"SKU-{i:05d}", "ok", NOW, None, None) for i in range(count)])
    frame.loc[::7, ["state", "episode_since", "last_alerted_at"]] = ["low", NOW, NOW]

    assert store.write(frame, now=NOW) == count
    read = store.read().sort_values("item_key", ignore_index=True)

    assert len(read) == count
    assert (read["state"] == "low").sum() == len(range(0, count, 7))
    assert read["last_alerted_at"].notna().sum() == len(range(0, count, 7))


def test_write_refuses_repeated_keys_and_missing_columns(ledger: Ledger) -> None:
    store = ItemStateStore(ledger, "inventory-alert")

    with pytest.raises(ValueError, match="repeats an item key"):
        store.write(states([("A", "ok", NOW, None, None)] * 2), now=NOW)
    with pytest.raises(ValueError, match="lacks columns"):
        store.write(states([("A", "ok", NOW, None, None)]).drop(columns="since"), now=NOW)
    assert store.write(empty_states(), now=NOW) == 0


def test_the_table_lives_in_the_ledger_database_beside_effects(db_url: str) -> None:
    # A ledger that created its schema before the store existed still gets the table.
    with Ledger(db_url) as ledger:
        ledger.claim("k", automation="inventory-alert", kind="message", target="outbox")
        ItemStateStore(ledger, "inventory-alert")
        tables = set(inspect(ledger.engine).get_table_names())

    assert {"effects", "item_states"} <= tables

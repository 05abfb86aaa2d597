"""The item-state store: the last known state of every item an automation watches (one table)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Column, Engine, String, Table, select, type_coerce
from sqlalchemy.dialects import postgresql, sqlite

from moltbot.state.ledger import (
    Ledger,
    UTCDateTime,
    add_missing_columns,
    ensure_table,
    metadata,
)

# Rows per INSERT … ON CONFLICT round trip: large enough that a first run over a million items is
# a few hundred statements, small enough to stay under SQLite's and PostgreSQL's bind limits
# (SQLAlchemy packs executemany rows into multi-VALUES statements itself).
WRITE_BATCH_ROWS = 20_000

STATE_COLUMNS: tuple[str, ...] = ("item_key", "state", "since", "episode_since", "last_alerted_at")
"""The columns `ItemStateStore.write` requires; `read` returns them and `ALERT_KEY`."""

ALERT_KEY = "alert_key"
"""The optional column naming the alert that reported an item's current state (None if none).

`ItemStateStore.read` always returns it; `write` stores it when given and None otherwise, so
automations that do not thread their alerts need not know about it."""

_TIME_COLUMNS = ("since", "episode_since", "last_alerted_at")

item_states_table = Table(
    "item_states",
    metadata,
    Column("automation", String(200), primary_key=True),
    Column("item_key", String(512), primary_key=True),
    # What the automation last decided for the item, e.g. `ok`, `low`, `out`.
    Column("state", String(32), nullable=False),
    # When the item entered `state`.
    Column("since", UTCDateTime(), nullable=False),
    # When the item's current run of non-normal states began (None while normal): a recovery
    # reports how long the whole episode lasted, even when the state changed within it.
    Column("episode_since", UTCDateTime(), nullable=True),
    # When the item was last alerted on (a transition or a reminder).
    Column("last_alerted_at", UTCDateTime(), nullable=True),
    # The key of the alert message that reported the item's current state (None when none did,
    # e.g. while normal): its reminders and its recovery follow it (replies in that alert's
    # thread where the channel has threads). Added later: older tables gain it on opening.
    Column(ALERT_KEY, String(512), nullable=True),
    Column("updated_at", UTCDateTime(), nullable=False),
)


class ItemStateStore:
    """Bulk reads and writes of one automation's item states, on the ledger's own engine.

    The table lives on `moltbot.state.ledger.metadata` beside `effects`, so it is in the same
    database (SQLite file or PostgreSQL) and needs no engine of its own. Reads return the whole set
    as a DataFrame in one query; writes upsert only the rows given (the ones whose state changed)
    in batches of `INSERT … ON CONFLICT DO UPDATE`, in one transaction.

    Args:
        ledger: the open ledger whose engine to use.
        automation: the automation whose items these are (part of the primary key).
    """

    def __init__(self, ledger: Ledger, automation: str) -> None:
        self.automation = automation
        self._engine = ledger.engine
        ensure_table(self._engine, item_states_table)
        add_missing_columns(self._engine, item_states_table, (ALERT_KEY,))

    def read(self) -> pd.DataFrame:
        """Every stored item of the automation.

        Returns:
            The `STATE_COLUMNS`: `item_key` and `state` as strings, the times as tz-aware UTC
            `datetime64` (NaT where unset), then `ALERT_KEY` (objects, None where unset), in no
            particular order.
        """
        table = item_states_table
        # Timestamps come back as the driver gives them (text on SQLite, datetimes on PostgreSQL)
        # and are parsed as whole columns below: converting a million values one by one through
        # the column type costs seconds.
        statement = select(
            table.c.item_key,
            table.c.state,
            *(type_coerce(table.c[name], String()).label(name) for name in _TIME_COLUMNS),
            table.c[ALERT_KEY],
        ).where(table.c.automation == self.automation)
        with self._engine.connect() as conn:
            # The DBAPI cursor's plain tuples: a million SQLAlchemy Row objects cost a second.
            rows = conn.execute(statement).cursor.fetchall()
        if not rows:
            return empty_states()
        raw = pd.DataFrame(rows, columns=[*STATE_COLUMNS, ALERT_KEY], dtype=object)
        frame = pd.DataFrame(
            {"item_key": raw["item_key"].astype("str"), "state": raw["state"].astype("str")}
        )
        for name in _TIME_COLUMNS:
            frame[name] = _utc_times(raw[name])
        frame[ALERT_KEY] = raw[ALERT_KEY]
        return frame

    def write(self, states: pd.DataFrame, *, now: datetime) -> int:
        """Insert or update the given items' states; return how many rows were written.

        Args:
            states: rows with the `STATE_COLUMNS` (times tz-aware, NaT for none) and
                optionally `ALERT_KEY` (None where unset; stored as None when the column is
                absent); an item key must appear at most once.
            now: the moment recorded as `updated_at`.

        Raises:
            ValueError: a missing column or a repeated item key (a caller bug).
        """
        missing = [name for name in STATE_COLUMNS if name not in states.columns]
        if missing:
            raise ValueError(f"states lacks columns {missing}")
        if states["item_key"].duplicated().any():
            raise ValueError("states repeats an item key")
        if states.empty:
            return 0
        # Through the driver directly: SQLAlchemy's per-row parameter processing would take
        # several times longer than the database needs to store a million rows. The text is
        # compiled by SQLAlchemy for this dialect, so it is the same upsert either way.
        sql, order = _upsert(self._engine)
        # SQLite stores DateTime as text; handing it text in the same format the column type
        # writes skips a Python conversion per value.
        as_text = self._engine.dialect.name == "sqlite"
        batches = _records(
            states, automation=self.automation, now=now, as_text=as_text, order=order
        )
        with self._engine.begin() as conn:
            for batch in batches:
                conn.exec_driver_sql(sql, batch)
        return len(states)


def empty_states() -> pd.DataFrame:
    """A state table with no rows and the column types `ItemStateStore.read` returns."""
    frame = pd.DataFrame(
        {"item_key": pd.array([], dtype="str"), "state": pd.array([], dtype="str")}
    )
    for name in _TIME_COLUMNS:
        frame[name] = pd.Series([], dtype="datetime64[us, UTC]")
    frame[ALERT_KEY] = pd.Series([], dtype=object)
    return frame


def _utc_times(values: pd.Series) -> pd.Series:
    """Stored times as tz-aware UTC: SQLite gives naive UTC text, PostgreSQL aware datetimes."""
    # Items changed in the same run share a timestamp: parse each distinct value once.
    codes, distinct = pd.factorize(values)
    if len(distinct) == 0:
        return pd.Series(pd.NaT, index=values.index, dtype="datetime64[us, UTC]")
    text = isinstance(distinct[0], str)
    parsed = pd.DatetimeIndex(
        pd.to_datetime(
            pd.Series(distinct, dtype=object), utc=True, format="ISO8601" if text else None
        )
    ).as_unit("us")
    return pd.Series(parsed.take(codes, allow_fill=True, fill_value=pd.NaT), index=values.index)


def _upsert(engine: Engine) -> tuple[str, tuple[str, ...] | None]:
    """The upsert statement in the driver's own SQL and, for positional drivers, its order."""
    table = item_states_table
    dialect = engine.dialect.name
    if dialect == "postgresql":
        insert = postgresql.insert(table)
    elif dialect == "sqlite":
        insert = sqlite.insert(table)
    else:
        raise NotImplementedError(f"item states need SQLite or PostgreSQL, not {dialect}")
    updated = {
        name: insert.excluded[name] for name in (*STATE_COLUMNS[1:], ALERT_KEY, "updated_at")
    }
    statement = insert.on_conflict_do_update(
        index_elements=[table.c.automation, table.c.item_key], set_=updated
    )
    compiled = statement.compile(dialect=engine.dialect)
    order = tuple(compiled.positiontup) if compiled.positional and compiled.positiontup else None
    return str(compiled), order


def _records(
    states: pd.DataFrame,
    *,
    automation: str,
    now: datetime,
    as_text: bool,
    order: tuple[str, ...] | None,
) -> Iterator[list[Any]]:
    """The rows as driver parameters (tuples in `order`, else dicts) in batches."""
    columns: dict[str, np.ndarray] = {
        "item_key": states["item_key"].astype(str).to_numpy(dtype=object),
        "state": states["state"].astype(str).to_numpy(dtype=object),
    }
    for name in (*_TIME_COLUMNS, "updated_at"):
        times = pd.Series(now, index=states.index) if name == "updated_at" else states[name]
        times = pd.to_datetime(times, utc=True)
        columns[name] = _sqlite_text(times) if as_text else _datetimes(times)
    columns[ALERT_KEY] = _optional_text(states, ALERT_KEY)
    columns["automation"] = np.full(len(states), automation, dtype=object)
    names = order or tuple(columns)
    for start in range(0, len(states), WRITE_BATCH_ROWS):
        rows = zip(
            *(columns[name][start : start + WRITE_BATCH_ROWS] for name in names), strict=True
        )
        yield list(rows) if order else [dict(zip(names, row, strict=True)) for row in rows]


def _optional_text(states: pd.DataFrame, name: str) -> np.ndarray:
    """A text column as objects, None where unset or where the frame lacks the column."""
    if name not in states.columns:
        return np.full(len(states), None, dtype=object)
    return states[name].to_numpy(dtype=object, na_value=None)


def _datetimes(times: pd.Series) -> np.ndarray:
    """Aware datetimes as objects, None for NaT."""
    values = np.array(times.dt.to_pydatetime(), dtype=object)
    values[times.isna().to_numpy()] = None
    return values


def _sqlite_text(times: pd.Series) -> np.ndarray:
    """UTC times as the text SQLAlchemy stores for a naive SQLite DateTime, None for NaT."""
    # An alert run stamps most rows with the same few moments: format each distinct one once.
    codes, distinct = pd.factorize(pd.to_datetime(times, utc=True))
    text = np.array([moment.strftime("%Y-%m-%d %H:%M:%S.%f") for moment in distinct], dtype=object)
    values = np.empty(len(codes), dtype=object)
    present = codes >= 0
    values[present] = text[codes[present]]
    return values

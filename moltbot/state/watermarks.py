"""Watermarks: how far an automation has consumed a stream (a sheet's rows), kept in the ledger."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, String, Table, Text, insert, select, update
from sqlalchemy.exc import IntegrityError

from moltbot.state.ledger import Ledger, UTCDateTime, ensure_table, metadata

watermarks_table = Table(
    "watermarks",
    metadata,
    Column("automation", String(200), primary_key=True),
    # What is consumed, e.g. `<spreadsheet id>/<worksheet title>`.
    Column("stream", String(512), primary_key=True),
    # Canonical JSON of the committed position (None until the first advance): everything up to
    # it was delivered.
    Column("position", Text, nullable=True),
    # Canonical JSON of the window a run planned and has not committed yet: the next run
    # re-plans exactly this window, so a retried digest keeps its idempotency key even when
    # new rows arrived in between.
    Column("pending", Text, nullable=True),
    Column("flow_run_id", String(64), nullable=True),
    Column("updated_at", UTCDateTime(), nullable=False),
)


class WatermarkMoved(RuntimeError):
    """Another run advanced the watermark since this run read it; this run must not commit."""


@dataclass(frozen=True)
class Watermark:
    """One stream's committed position and the window a run holds, if any.

    Attributes:
        automation: whose watermark.
        stream: what is consumed.
        position: the committed position (None: nothing consumed yet).
        pending: a planned but uncommitted window (None: none).
        updated_at: when it last changed (None: never stored).
    """

    automation: str
    stream: str
    position: dict[str, Any] | None = None
    pending: dict[str, Any] | None = None
    updated_at: datetime | None = None


def canonical_json(value: dict[str, Any] | None) -> str | None:
    """`value` as JSON with sorted keys (so stored positions compare as text), None for None."""
    if value is None:
        return None
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


class WatermarkStore:
    """Reads and moves one automation's watermarks, on the ledger's own engine.

    `advance` is a compare-and-set on the committed position, so of two runs that read the same
    watermark only the first can commit; the second gets `WatermarkMoved` instead of moving the
    mark backwards or past rows it did not deliver.

    Args:
        ledger: the open ledger whose engine to use.
        automation: the automation whose watermarks these are.
    """

    def __init__(self, ledger: Ledger, automation: str) -> None:
        self.automation = automation
        self._engine = ledger.engine
        ensure_table(self._engine, watermarks_table)

    def get(self, stream: str) -> Watermark:
        """The stream's watermark (an empty one when nothing was stored yet)."""
        table = watermarks_table
        statement = select(table).where(
            table.c.automation == self.automation, table.c.stream == stream
        )
        with self._engine.connect() as conn:
            row = conn.execute(statement).first()
        if row is None:
            return Watermark(automation=self.automation, stream=stream)
        return Watermark(
            automation=self.automation,
            stream=stream,
            position=_loads(row.position),
            pending=_loads(row.pending),
            updated_at=row.updated_at,
        )

    def hold(
        self, stream: str, pending: dict[str, Any], *, flow_run_id: str | None = None
    ) -> Watermark:
        """Record the window a run is about to deliver, keeping the committed position."""
        table = watermarks_table
        values = {
            "pending": canonical_json(pending),
            "flow_run_id": flow_run_id,
            "updated_at": _now(),
        }
        with self._engine.begin() as conn:
            changed = conn.execute(
                update(table)
                .where(table.c.automation == self.automation, table.c.stream == stream)
                .values(**values)
            ).rowcount
            if not changed:
                try:
                    with conn.begin_nested():
                        conn.execute(
                            insert(table).values(
                                automation=self.automation, stream=stream, **values
                            )
                        )
                except IntegrityError:
                    # Another run inserted the row first: hold on top of it.
                    conn.execute(
                        update(table)
                        .where(table.c.automation == self.automation, table.c.stream == stream)
                        .values(**values)
                    )
        return self.get(stream)

    def advance(
        self,
        stream: str,
        position: dict[str, Any],
        *,
        expected: dict[str, Any] | None,
        flow_run_id: str | None = None,
    ) -> Watermark:
        """Commit `position` and drop the pending window, if the position is still `expected`.

        Args:
            stream: what is consumed.
            position: the new committed position.
            expected: the position this run read (None when it found none).
            flow_run_id: the run committing, for the audit trail.

        Raises:
            WatermarkMoved: the committed position is no longer `expected`.
        """
        table = watermarks_table
        values = {
            "position": canonical_json(position),
            "pending": None,
            "flow_run_id": flow_run_id,
            "updated_at": _now(),
        }
        expected_text = canonical_json(expected)
        match = (
            table.c.position.is_(None)
            if expected_text is None
            else table.c.position == expected_text
        )
        moved = WatermarkMoved(
            f"the watermark of {self.automation} on {stream!r} moved while this run worked; "
            "nothing was committed"
        )
        try:
            with self._engine.begin() as conn:
                changed = conn.execute(
                    update(table)
                    .where(table.c.automation == self.automation, table.c.stream == stream, match)
                    .values(**values)
                ).rowcount
                if not changed:
                    exists = conn.execute(
                        select(table.c.position).where(
                            table.c.automation == self.automation, table.c.stream == stream
                        )
                    ).first()
                    if exists is not None or expected_text is not None:
                        raise moved
                    conn.execute(
                        insert(table).values(automation=self.automation, stream=stream, **values)
                    )
        except IntegrityError:
            # Another run's first advance inserted the row between our update and insert.
            raise moved from None
        return self.get(stream)


def _loads(text: str | None) -> dict[str, Any] | None:
    return None if text is None else json.loads(text)


def _now() -> datetime:
    return datetime.now(UTC)

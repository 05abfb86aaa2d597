"""Recorded run inputs for shadow mode: what a real run read and what it meant to send, per run."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Column, Index, String, Table, Text, delete, func, insert, select
from sqlalchemy.exc import IntegrityError

from moltbot.state.ledger import Ledger, UTCDateTime, ensure_table, metadata

# The input snapshot may hold personal data (stock rows, events' payloads): it lives in the
# ledger database beside the effects, webhook inbox and item states, and is pruned after
# `Settings.shadow_retention_days` by `moltbot prune` (moltbot.retention.RecordedInputs).
recorded_inputs_table = Table(
    "recorded_inputs",
    metadata,
    Column("automation", String(200), primary_key=True),
    Column("flow_run_id", String(64), primary_key=True),
    Column("recorded_at", UTCDateTime(), nullable=False),
    Column("kind", String(32), nullable=False),
    # JSON: what the run's plan functions consumed (normalised rows, earlier states, settings).
    Column("payload", Text, nullable=False),
    # JSON: the effects the run handed the effects layer, texts masked (moltbot.shadow).
    Column("effects", Text, nullable=False),
    # sha256 of the payload without the run's moment (`input_digest`): a run with nothing to
    # send whose input is the one kept last is not kept again.
    Column("digest", String(64), nullable=True),
    Index("ix_recorded_inputs_time", "automation", "recorded_at"),
)


VOLATILE_KEYS = frozenset({"now"})
"""Payload keys that differ on every run (the run's moment) and say nothing of its input."""


def input_digest(payload: dict[str, Any]) -> str:
    """sha256 of `payload` without `VOLATILE_KEYS`: the same input, the same digest.

    Keys stay in the payload's order (a snapshot's mappings keep the order the run gave them,
    which its messages follow); each automation builds its payload in one fixed order.
    """
    return _digest(_stable_json(payload))


def _stable_json(payload: dict[str, Any]) -> str:
    stable = {key: value for key, value in payload.items() if key not in VOLATILE_KEYS}
    return _json(stable)


def _json(value: dict[str, Any]) -> str:
    # NaN (an unknown quantity) is kept as JSON's common extension; Python reads it back.
    return json.dumps(value, ensure_ascii=False, default=str)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _payload_json(stable_json: str, payload: dict[str, Any]) -> str:
    """The whole payload as JSON: the stable part's text with the volatile keys put in front.

    A stock check's snapshot can hold a million rows: it is serialised once, for the digest
    and the stored row both (2 s at a million rows).
    """
    volatile = {key: payload[key] for key in VOLATILE_KEYS if key in payload}
    if not volatile:
        return stable_json
    head = _json(volatile)[:-1]
    return head + ("}" if stable_json == "{}" else ", " + stable_json[1:])


@dataclass(frozen=True)
class RecordedRun:
    """One recorded run: its input snapshot and the effects it meant to send."""

    automation: str
    flow_run_id: str
    recorded_at: datetime
    kind: str
    payload: dict[str, Any]
    effects: list[dict[str, Any]]


class RecordedInputs:
    """Reads and writes `recorded_inputs` on the ledger's engine (one row per flow run)."""

    def __init__(self, ledger: Ledger) -> None:
        self._engine = ledger.engine
        ensure_table(self._engine, recorded_inputs_table)

    def record(
        self,
        *,
        automation: str,
        flow_run_id: str,
        kind: str,
        payload: dict[str, Any],
        effects: list[dict[str, Any]],
        now: datetime,
    ) -> bool:
        """Store a run's snapshot once: a retried run (same flow run id) keeps the first.

        A run with nothing to send is kept too (the current code may send something for it:
        that is what shadow mode shows as added), unless its input is the one this automation
        kept last: a stock check every half hour with no news would pile up the same list.

        Returns:
            True when stored now, False when the run had one already, or nothing to send and
            the input kept last.
        """
        stable_json = _stable_json(payload)
        digest = _digest(stable_json)
        if not effects and self._latest_digest(automation) == digest:
            return False
        row = {
            "automation": automation,
            "flow_run_id": flow_run_id,
            "recorded_at": now,
            "kind": kind,
            "payload": _payload_json(stable_json, payload),
            "effects": json.dumps(effects, ensure_ascii=False),
            "digest": digest,
        }
        try:
            with self._engine.begin() as conn:
                conn.execute(insert(recorded_inputs_table).values(**row))
        except IntegrityError:
            return False
        return True

    def _latest_digest(self, automation: str) -> str | None:
        table = recorded_inputs_table
        statement = (
            select(table.c.digest)
            .where(table.c.automation == automation)
            .order_by(table.c.recorded_at.desc())
            .limit(1)
        )
        with self._engine.connect() as conn:
            return conn.execute(statement).scalar_one_or_none()

    def runs(self, automation: str, since: datetime) -> list[RecordedRun]:
        """The runs of `automation` recorded at or after `since`, oldest first."""
        table = recorded_inputs_table
        statement = (
            select(table)
            .where(table.c.automation == automation, table.c.recorded_at >= since)
            .order_by(table.c.recorded_at, table.c.flow_run_id)
        )
        with self._engine.connect() as conn:
            rows = conn.execute(statement).all()
        return [
            RecordedRun(
                automation=row.automation,
                flow_run_id=row.flow_run_id,
                recorded_at=row.recorded_at,
                kind=row.kind,
                payload=json.loads(row.payload),
                effects=json.loads(row.effects),
            )
            for row in rows
        ]

    def count_before(self, cutoff: datetime) -> int:
        """How many snapshots were recorded before `cutoff`."""
        table = recorded_inputs_table
        statement = select(func.count()).select_from(table).where(table.c.recorded_at < cutoff)
        with self._engine.connect() as conn:
            return conn.execute(statement).scalar_one()

    def delete_before(self, cutoff: datetime) -> int:
        """Delete the snapshots recorded before `cutoff`; how many were deleted."""
        table = recorded_inputs_table
        with self._engine.begin() as conn:
            return conn.execute(delete(table).where(table.c.recorded_at < cutoff)).rowcount

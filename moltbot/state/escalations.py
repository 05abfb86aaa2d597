"""Escalations of urgent messages: where each stands on its route, its steps and acknowledgement."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Column, Integer, Row, String, Table, Text, insert, select, update
from sqlalchemy.exc import IntegrityError

from moltbot.state.ledger import Ledger, UTCDateTime, ensure_table, metadata

escalations_table = Table(
    "escalations",
    metadata,
    # The ledger key of the urgent message's first delivery (`<message key>:<route name>`).
    Column("key", String(512), primary_key=True),
    # Random, in the acknowledgement link instead of the key (which names the automation's item).
    Column("token_id", String(32), nullable=False, unique=True),
    Column("automation", String(200), nullable=False),
    Column("route", Text, nullable=False),
    Column("status", String(16), nullable=False),
    # The index in `route` of the link that took the message last (-1 before the first delivery).
    Column("step", Integer, nullable=False),
    # When the next link is due if nobody acknowledges (None: no link is left, or settled).
    Column("next_at", UTCDateTime(), nullable=True),
    Column("expires_at", UTCDateTime(), nullable=False),
    # The message, kept until the escalation is settled: each step sends it again.
    Column("payload", Text, nullable=True),
    # JSON list of {"step", "link", "at", "outcome"}: every step taken.
    Column("steps", Text, nullable=False),
    Column("acked_at", UTCDateTime(), nullable=True),
    Column("acked_by", String(255), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)


class EscalationStatus(StrEnum):
    """Open (waiting for an acknowledgement), acknowledged, or ended (the route ran out, or the
    message could not be delivered: its dead letter is announced)."""

    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    ENDED = "ended"


@dataclass(frozen=True)
class Escalation:
    """One urgent message's escalation.

    Attributes:
        key: the ledger key of its first delivery.
        token_id: the id its acknowledgement link carries.
        automation: the automation that sent it.
        route: the route's links, in order.
        status: see `EscalationStatus`.
        step: the index of the link that took it last (-1: not delivered yet).
        next_at: when the next link is due without an acknowledgement.
        expires_at: when its acknowledgement link stops working.
        payload: the message as JSON (None once settled).
        steps: the steps taken: {"step", "link", "at", "outcome"}.
        acked_at: when it was acknowledged.
        acked_by: who acknowledged it (`link`, `cli:<user>`).
    """

    key: str
    token_id: str
    automation: str
    route: tuple[str, ...]
    status: EscalationStatus
    step: int
    next_at: datetime | None
    expires_at: datetime
    payload: str | None
    steps: tuple[dict[str, Any], ...]
    acked_at: datetime | None = None
    acked_by: str | None = None


class EscalationStore:
    """The escalations table in the ledger database."""

    def __init__(self, ledger: Ledger) -> None:
        self.engine = ledger.engine
        ensure_table(self.engine, escalations_table)

    def open(
        self,
        key: str,
        *,
        automation: str,
        route: tuple[str, ...],
        payload: str,
        expires_at: datetime,
        now: datetime,
    ) -> Escalation:
        """The escalation of `key`, made on first call (a retry or re-run gets the same one,
        with the same link)."""
        found = self.get(key)
        if found is not None:
            return found
        values = {
            "key": key,
            "token_id": secrets.token_urlsafe(16),
            "automation": automation,
            "route": json.dumps(list(route), ensure_ascii=False),
            "status": EscalationStatus.OPEN.value,
            "step": -1,
            "next_at": None,
            "expires_at": expires_at,
            "payload": payload,
            "steps": "[]",
            "created_at": now,
            "updated_at": now,
        }
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(escalations_table).values(**values))
        except IntegrityError:
            pass  # another run opened it first: use that one
        found = self.get(key)
        assert found is not None
        return found

    def get(self, key: str) -> Escalation | None:
        """The escalation of the ledger key `key`, or None."""
        return self._one(escalations_table.c.key == key)

    def by_token(self, token_id: str) -> Escalation | None:
        """The escalation whose link carries `token_id`, or None."""
        return self._one(escalations_table.c.token_id == token_id)

    def due(self, now: datetime) -> list[Escalation]:
        """Open escalations whose next step is due, oldest first."""
        statement = (
            select(escalations_table)
            .where(
                escalations_table.c.status == EscalationStatus.OPEN.value,
                escalations_table.c.next_at <= now,
            )
            .order_by(escalations_table.c.next_at, escalations_table.c.key)
        )
        with self.engine.connect() as conn:
            return [_as_escalation(row) for row in conn.execute(statement)]

    def record_step(
        self,
        key: str,
        *,
        from_step: int,
        step: int | None,
        link: str | None,
        outcome: str,
        next_at: datetime | None,
        now: datetime,
    ) -> bool:
        """Record what the step after `from_step` became: delivered on `route[step]` (`next_at`:
        when the one after is due; None: no link is left) or, with `step` None, not delivered
        (the escalation ends). A no-op unless the row is still open at `from_step`.

        Returns:
            True when recorded (False: acknowledged or moved on meanwhile).
        """
        current = self.get(key)
        if current is None or current.status != EscalationStatus.OPEN or current.step != from_step:
            return False
        taken = {
            "step": step,
            "link": link,
            "at": now.isoformat(timespec="seconds"),
            "outcome": outcome,
        }
        values: dict[str, Any] = {
            "steps": json.dumps([*current.steps, taken], ensure_ascii=False),
            "updated_at": now,
            "next_at": next_at,
        }
        if step is not None:
            values["step"] = step
        if step is None or next_at is None:
            values["status"] = EscalationStatus.ENDED.value
            values["payload"] = None
        statement = (
            update(escalations_table)
            .where(
                escalations_table.c.key == key,
                escalations_table.c.status == EscalationStatus.OPEN.value,
                escalations_table.c.step == from_step,
            )
            .values(**values)
        )
        with self.engine.begin() as conn:
            return conn.execute(statement).rowcount == 1

    def acknowledge(self, key: str, *, by: str, now: datetime) -> tuple[Escalation, bool]:
        """Acknowledge the escalation of `key`: no further step is taken.

        Returns:
            The row after it, and whether this call acknowledged it (False: it was already).

        Raises:
            KeyError: no escalation for `key`.
        """
        statement = (
            update(escalations_table)
            .where(
                escalations_table.c.key == key,
                escalations_table.c.status != EscalationStatus.ACKNOWLEDGED.value,
            )
            .values(
                status=EscalationStatus.ACKNOWLEDGED.value,
                acked_at=now,
                acked_by=by[:255],
                next_at=None,
                payload=None,
                updated_at=now,
            )
        )
        with self.engine.begin() as conn:
            changed = conn.execute(statement).rowcount == 1
        found = self.get(key)
        if found is None:
            raise KeyError(key)
        return found, changed

    def _one(self, condition: Any) -> Escalation | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(escalations_table).where(condition)).first()
        return None if row is None else _as_escalation(row)


def _as_escalation(row: Row[Any]) -> Escalation:
    return Escalation(
        key=row.key,
        token_id=row.token_id,
        automation=row.automation,
        route=tuple(json.loads(row.route)),
        status=EscalationStatus(row.status),
        step=row.step,
        next_at=row.next_at,
        expires_at=row.expires_at,
        payload=row.payload,
        steps=tuple(json.loads(row.steps)),
        acked_at=row.acked_at,
        acked_by=row.acked_by,
    )

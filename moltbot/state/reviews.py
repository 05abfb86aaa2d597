"""Review requests and their decisions, kept in the ledger so a re-run never asks or acts twice."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, String, Table, Text, insert, select, update
from sqlalchemy.exc import IntegrityError

from moltbot.state.ledger import Ledger, UTCDateTime, ensure_table, metadata

WAITING, APPROVED, REJECTED, TIMED_OUT = "waiting", "approved", "rejected", "timed_out"
DECIDED = (APPROVED, REJECTED)

reviews_table = Table(
    "reviews",
    metadata,
    # `<automation>:review:<digest of what is reviewed>`: the same drafts get the same key, so
    # a re-run of the same work finds the decision already taken.
    Column("key", String(512), primary_key=True),
    Column("automation", String(200), nullable=False),
    Column("status", String(16), nullable=False),
    Column("requester", String(255), nullable=True),
    Column("flow_run_id", String(64), nullable=True),
    Column("requested_at", UTCDateTime(), nullable=False),
    Column("reviewer", String(255), nullable=True),
    Column("reason", Text, nullable=True),
    # The decision as the reviewer gave it (JSON), so a re-run applies exactly it.
    Column("decision", Text, nullable=True),
    Column("decided_at", UTCDateTime(), nullable=True),
)


@dataclass(frozen=True)
class Review:
    """One review request and, once taken, its decision.

    Attributes:
        key: what is reviewed (see `reviews_table`).
        automation: whose review.
        status: `waiting`, `approved`, `rejected` or `timed_out`.
        requester: the actor whose run asked (None when not a person).
        flow_run_id: the run that asked last.
        requested_at: when it was (last) asked.
        reviewer: who decided.
        reason: the reviewer's reason, masked by the caller.
        decision: the decision's fields.
        decided_at: when it was decided or timed out.
    """

    key: str
    automation: str
    status: str
    requester: str | None
    flow_run_id: str | None
    requested_at: datetime
    reviewer: str | None = None
    reason: str | None = None
    decision: dict[str, Any] | None = None
    decided_at: datetime | None = None

    @property
    def decided(self) -> bool:
        """True once approved or rejected (a timed-out request may be asked again)."""
        return self.status in DECIDED


class ReviewStore:
    """Asks and records reviews on the ledger's engine.

    `ask` returns the decision already taken for the same key instead of asking again, and
    `decide` is a compare-and-set from `waiting`, so of two runs waiting on the same request
    only the first answer counts; the other run finds it and applies the same decision.
    """

    def __init__(self, ledger: Ledger) -> None:
        self._engine = ledger.engine
        ensure_table(self._engine, reviews_table)

    def get(self, key: str) -> Review | None:
        """The request for `key`, or None."""
        with self._engine.connect() as conn:
            row = conn.execute(select(reviews_table).where(reviews_table.c.key == key)).first()
        return None if row is None else _as_review(row._mapping)

    def ask(
        self,
        key: str,
        *,
        automation: str,
        requester: str | None,
        flow_run_id: str | None,
        now: datetime | None = None,
    ) -> Review:
        """Record that `key` awaits a decision; when it was decided already, return that.

        A request that timed out is asked again (someone re-ran the work on purpose); one that
        is waiting is taken over by this run (its earlier run is gone or paused again).
        """
        now = now or datetime.now(UTC)
        values = {
            "status": WAITING,
            "requester": requester,
            "flow_run_id": flow_run_id,
            "requested_at": now,
        }
        for _ in range(3):
            current = self.get(key)
            if current is not None and current.decided:
                return current
            with self._engine.begin() as conn:
                if current is None:
                    try:
                        with conn.begin_nested():
                            conn.execute(
                                insert(reviews_table).values(
                                    key=key, automation=automation, **values
                                )
                            )
                    except IntegrityError:
                        continue
                else:
                    moved = conn.execute(
                        update(reviews_table)
                        .where(
                            reviews_table.c.key == key,
                            reviews_table.c.status == current.status,
                        )
                        .values(**values)
                    ).rowcount
                    if moved != 1:
                        continue
            found = self.get(key)
            assert found is not None
            return found
        raise RuntimeError(f"review {key}: could not record the request")

    def decide(
        self,
        key: str,
        *,
        status: str,
        reviewer: str | None,
        reason: str | None,
        decision: dict[str, Any] | None,
        now: datetime | None = None,
    ) -> Review:
        """Record the decision (or the timeout) of a waiting request; the stored review.

        When another run decided first, its decision is returned unchanged.
        """
        if status not in (*DECIDED, TIMED_OUT):
            raise ValueError(f"a review ends approved, rejected or timed_out, not {status!r}")
        values = {
            "status": status,
            "reviewer": reviewer,
            "reason": reason,
            "decision": None if decision is None else json.dumps(decision, ensure_ascii=False),
            "decided_at": now or datetime.now(UTC),
        }
        with self._engine.begin() as conn:
            conn.execute(
                update(reviews_table)
                .where(reviews_table.c.key == key, reviews_table.c.status == WAITING)
                .values(**values)
            )
        found = self.get(key)
        if found is None:
            raise KeyError(key)
        return found


def _as_review(fields: Any) -> Review:
    decision = fields["decision"]
    return Review(
        key=fields["key"],
        automation=fields["automation"],
        status=fields["status"],
        requester=fields["requester"],
        flow_run_id=fields["flow_run_id"],
        requested_at=fields["requested_at"],
        reviewer=fields["reviewer"],
        reason=fields["reason"],
        decision=json.loads(decision) if decision else None,
        decided_at=fields["decided_at"],
    )

"""Circuit breakers per destination, kept in the ledger database for every process and run."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Column, Engine, Integer, String, Table, insert, select, update
from sqlalchemy.exc import IntegrityError

from moltbot.state.ledger import UTCDateTime, ensure_table, metadata

circuits_table = Table(
    "circuits",
    metadata,
    Column("link", String(255), primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("opened_until", UTCDateTime(), nullable=True),
    Column("updated_at", UTCDateTime(), nullable=False),
)


@dataclass(frozen=True)
class CircuitState:
    """One destination's breaker: consecutive failures, and until when it is skipped."""

    link: str
    failures: int
    opened_until: datetime | None

    def is_open(self, now: datetime) -> bool:
        """True while the destination is being skipped."""
        return self.opened_until is not None and now < self.opened_until


class CircuitBreaker:
    """Skips a destination after `threshold` consecutive failures, for `cooldown` seconds.

    After the cool-down the next effect tries it again (half-open): a success closes the
    circuit, a failure opens it for another cool-down at once.

    Args:
        engine: the ledger's engine.
        threshold: consecutive failures that open the circuit.
        cooldown_seconds: how long an open circuit skips the destination.
    """

    def __init__(
        self, engine: Engine, *, threshold: int = 3, cooldown_seconds: float = 300
    ) -> None:
        self.engine = engine
        self.threshold = threshold
        self.cooldown = timedelta(seconds=cooldown_seconds)
        ensure_table(engine, circuits_table)

    def state(self, link: str) -> CircuitState:
        """The breaker of `link` (closed with no failures when never recorded)."""
        with self.engine.connect() as conn:
            row = conn.execute(select(circuits_table).where(circuits_table.c.link == link)).first()
        if row is None:
            return CircuitState(link, 0, None)
        return CircuitState(link, row.failures, row.opened_until)

    def is_open(self, link: str, now: datetime) -> bool:
        """True while `link` is skipped."""
        return self.state(link).is_open(now)

    def record_failure(self, link: str, now: datetime) -> CircuitState:
        """Count one more consecutive failure; open the circuit at the threshold."""
        self._ensure_row(link, now)
        with self.engine.begin() as conn:
            conn.execute(
                update(circuits_table)
                .where(circuits_table.c.link == link)
                .values(failures=circuits_table.c.failures + 1, updated_at=now)
            )
            row = conn.execute(select(circuits_table).where(circuits_table.c.link == link)).one()
            if row.failures >= self.threshold:
                conn.execute(
                    update(circuits_table)
                    .where(circuits_table.c.link == link)
                    .values(opened_until=now + self.cooldown)
                )
                return CircuitState(link, row.failures, now + self.cooldown)
        return CircuitState(link, row.failures, row.opened_until)

    def record_success(self, link: str, now: datetime) -> None:
        """Close the circuit: the destination works."""
        with self.engine.begin() as conn:
            conn.execute(
                update(circuits_table)
                .where(circuits_table.c.link == link)
                .values(failures=0, opened_until=None, updated_at=now)
            )

    def _ensure_row(self, link: str, now: datetime) -> None:
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(circuits_table).values(
                        link=link, failures=0, opened_until=None, updated_at=now
                    )
                )
        except IntegrityError:
            pass  # another process recorded this link first

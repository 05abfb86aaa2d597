"""The service-health store: each checked service's state and failure streak (one table)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import Column, Integer, String, Table, select
from sqlalchemy.dialects import postgresql, sqlite

from moltbot.state.ledger import Ledger, UTCDateTime, ensure_table, metadata

HealthState = Literal["UP", "DOWN", "DEGRADED", "UNKNOWN"]
HEALTH_STATES: tuple[HealthState, ...] = ("UP", "DOWN", "DEGRADED", "UNKNOWN")

service_health_table = Table(
    "service_health",
    metadata,
    Column("automation", String(200), primary_key=True),
    Column("service", String(200), primary_key=True),
    # UP, DOWN, DEGRADED, or UNKNOWN until a check decides (a first failure leaves it UNKNOWN).
    Column("state", String(16), nullable=False),
    # When the service entered `state`.
    Column("since", UTCDateTime(), nullable=False),
    # Consecutive failed checks up to the last one (0 after a success).
    Column("failures", Integer(), nullable=False),
    # The first failed check of the current streak (None after a success): where an outage
    # began, so a recovery says how long the service was down.
    Column("down_since", UTCDateTime(), nullable=True),
    # The key of the alert that reported the current DOWN or DEGRADED state (None while UP):
    # its recovery follows it (a reply in the alert's thread where the channel has threads).
    Column("alert_key", String(512), nullable=True),
    Column("updated_at", UTCDateTime(), nullable=False),
)


@dataclass(frozen=True)
class ServiceHealth:
    """One service's stored health.

    Attributes:
        service: the service's name in `[monitoring.services]`.
        state: UP, DOWN, DEGRADED or UNKNOWN.
        since: when it entered `state` (tz-aware).
        failures: consecutive failed checks.
        down_since: the first failed check of the current streak, None after a success.
        alert_key: the key of the alert that reported the current DOWN or DEGRADED state.
    """

    service: str
    state: HealthState
    since: datetime
    failures: int = 0
    down_since: datetime | None = None
    alert_key: str | None = None


class ServiceHealthStore:
    """Reads and writes of one automation's service states, on the ledger's own engine.

    Args:
        ledger: the open ledger whose engine (and database) to use.
        automation: whose services these are (part of the primary key).
    """

    def __init__(self, ledger: Ledger, automation: str) -> None:
        self.automation = automation
        self._engine = ledger.engine
        ensure_table(self._engine, service_health_table)

    def read(self) -> dict[str, ServiceHealth]:
        """Every stored service of the automation, by name."""
        table = service_health_table
        statement = select(
            table.c.service,
            table.c.state,
            table.c.since,
            table.c.failures,
            table.c.down_since,
            table.c.alert_key,
        ).where(table.c.automation == self.automation)
        with self._engine.connect() as conn:
            rows = conn.execute(statement).all()
        return {
            row.service: ServiceHealth(
                service=row.service,
                state=row.state,
                since=row.since,
                failures=row.failures,
                down_since=row.down_since,
                alert_key=row.alert_key,
            )
            for row in rows
        }

    def write(self, states: Iterable[ServiceHealth], *, now: datetime) -> int:
        """Insert or update the given services' states in one transaction; how many.

        Raises:
            ValueError: a service given twice (a caller bug).
        """
        rows = [
            {
                "automation": self.automation,
                "service": health.service,
                "state": health.state,
                "since": health.since,
                "failures": health.failures,
                "down_since": health.down_since,
                "alert_key": health.alert_key,
                "updated_at": now,
            }
            for health in states
        ]
        if len({row["service"] for row in rows}) != len(rows):
            raise ValueError("states repeat a service")
        if not rows:
            return 0
        dialect = self._engine.dialect.name
        if dialect == "postgresql":
            insert = postgresql.insert(service_health_table)
        elif dialect == "sqlite":
            insert = sqlite.insert(service_health_table)
        else:
            raise NotImplementedError(f"service states need SQLite or PostgreSQL, not {dialect}")
        statement = insert.on_conflict_do_update(
            index_elements=[service_health_table.c.automation, service_health_table.c.service],
            set_={
                name: insert.excluded[name]
                for name in ("state", "since", "failures", "down_since", "alert_key", "updated_at")
            },
        )
        with self._engine.begin() as conn:
            conn.execute(statement, rows)
        return len(rows)

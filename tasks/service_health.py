"""Tasks that read and save the services' health state between service-health runs."""

from __future__ import annotations

from datetime import datetime

from prefect import task
from prefect.cache_policies import NO_CACHE

from moltbot.state.ledger import Ledger
from moltbot.state.service_health import ServiceHealth, ServiceHealthStore


@task(name="read-service-health", cache_policy=NO_CACHE)
def read_service_health(automation: str) -> dict[str, ServiceHealth]:
    """Every stored service state of `automation`, by service name, in one query."""
    with Ledger.from_settings() as ledger:
        return ServiceHealthStore(ledger, automation).read()


@task(name="save-service-health", cache_policy=NO_CACHE)
def save_service_health(automation: str, states: list[ServiceHealth], now: datetime) -> int:
    """Upsert the given services' states in one transaction; how many were written."""
    with Ledger.from_settings() as ledger:
        return ServiceHealthStore(ledger, automation).write(states, now=now)

"""The task that reads a period's metrics: Prefect's run history, the ledger, the audit trail."""

from __future__ import annotations

from datetime import datetime

from prefect import task
from prefect.cache_policies import NO_CACHE

from moltbot.metrics import MetricsReport, compute, gather, hours_saved_config
from moltbot.registry import automation_names
from moltbot.state.ledger import Ledger


@task(name="gather-metrics", cache_policy=NO_CACHE)
def gather_metrics(since: datetime, until: datetime) -> MetricsReport:
    """Read the period's runs, effects and audit entries and compute the figures."""
    names = automation_names()
    hours = hours_saved_config(names)
    with Ledger.from_settings() as ledger:
        data = gather(ledger, since=since, until=until, automations=names, hours_saved=hours)
    return compute(data, names)

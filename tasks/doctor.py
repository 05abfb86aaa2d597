"""The task that runs `moltbot doctor`'s checks inside a flow (the health automation)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from moltbot.doctor import Check, decide
from moltbot.doctor_gather import gather_facts


@task(name="doctor-checks", cache_policy=NO_CACHE)
def run_doctor_checks(locale: str) -> list[Check]:
    """Gather the facts (Prefect API, blocks, deployments, gateway, ledger) and decide every
    check, worded in `locale`."""
    return decide(gather_facts(), locale=locale)

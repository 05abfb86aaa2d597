"""Tasks that read and save the per-item state an automation keeps between runs (one table)."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from moltbot.state.item_state import ItemStateStore
from moltbot.state.ledger import Ledger


@task(name="read-item-states", cache_policy=NO_CACHE)
def read_item_states(automation: str) -> pd.DataFrame:
    """The stored state of every item of `automation`, in one query.

    Args:
        automation: whose items (each automation keeps its own).

    Returns:
        One row per item with the columns of `moltbot.state.item_state.STATE_COLUMNS` and
        `ALERT_KEY`.
    """
    with Ledger.from_settings() as ledger:
        return ItemStateStore(ledger, automation).read()


@task(name="save-item-states", cache_policy=NO_CACHE)
def save_item_states(automation: str, writes: pd.DataFrame, now: datetime) -> int:
    """Upsert the changed items' states in one transaction.

    Args:
        automation: whose items.
        writes: the changed rows, with at least the columns of `STATE_COLUMNS` (and
            `ALERT_KEY` where the automation keeps it); other columns are ignored.
        now: the run's clock, stored as the rows' update time.

    Returns:
        How many rows were written.
    """
    with Ledger.from_settings() as ledger:
        return ItemStateStore(ledger, automation).write(writes, now=now)

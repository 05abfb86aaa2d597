"""inventory-alert in shadow mode: the input snapshot a real run records, and its replay.

A run alerts on state *changes*, so the snapshot holds the stored states the run compared
with (only the rows of the items it saw) beside the stock items it evaluated: replaying
against today's states would find no change and invent "removed" alerts. Reconstructing the
earlier states from later ones is not possible (a run saves only what changed), so they are
recorded.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from flows.inventory_alert.render import AUTOMATION
from flows.inventory_alert.states import QUANTITY_COLUMNS, compute_states, state_counts
from flows.shared.snapshots import split_json
from moltbot.messages import Message
from moltbot.shadow import ShadowEffect, message_effect
from moltbot.state.item_state import ALERT_KEY, STATE_COLUMNS
from moltbot.state.recorded_inputs import RecordedRun

KIND = "stock"
# What compute_states adds to the items; the snapshot keeps the items as they went in.
_COMPUTED = ("state", "days_of_cover", "stockout_date", "at_risk")
_TIMES = ("since", "episode_since", "last_alerted_at")


def snapshot(
    states: pd.DataFrame,
    bad_rows: pd.DataFrame,
    previous: pd.DataFrame,
    *,
    now: datetime,
    cooldown_hours: float,
    timezone: str,
    locale: str,
    top_n: int,
) -> dict[str, Any]:
    """What `replay` needs: the evaluated items, the bad rows, the earlier states of those
    items, and the run's moment and settings."""
    items = states.drop(columns=[name for name in _COMPUTED if name in states.columns])
    # Arrow's set lookup: pandas' `isin` walks a million SKUs in Python first (5 s).
    seen = pc.is_in(
        pa.array(previous["item_key"].array, type=pa.large_string(), from_pandas=True),
        value_set=pa.array(states["sku"].array, type=pa.large_string(), from_pandas=True),
    )
    earlier = previous[seen.to_numpy(zero_copy_only=False)]
    # Times to the microsecond (not pandas' default milliseconds): the stored `since` times
    # feed the digests of the alert keys.
    return {
        "items": split_json(items),
        "bad_rows": split_json(bad_rows),
        "previous": split_json(earlier),
        "now": now.isoformat(),
        "cooldown_hours": cooldown_hours,
        "timezone": timezone,
        "locale": locale,
        "top_n": top_n,
    }


def effects(messages: dict[str, Message]) -> list[ShadowEffect]:
    """The run's messages, one effect per severity (each goes to that severity's routes)."""
    return [message_effect(message, severity) for severity, message in messages.items()]


def replay(run: RecordedRun) -> list[ShadowEffect]:
    """The messages the current code renders from a recorded run's snapshot (nothing sent)."""
    from flows.inventory_alert.flow import Evaluation, plan_run

    payload = run.payload
    items = pd.DataFrame(**payload["items"])
    for name in QUANTITY_COLUMNS:
        if name in items.columns:
            items[name] = pd.to_numeric(items[name], errors="coerce").astype("float64")
    previous = pd.DataFrame(**payload["previous"])
    if previous.empty:
        previous = pd.DataFrame(columns=[*STATE_COLUMNS, ALERT_KEY])
    for name in _TIMES:
        previous[name] = pd.to_datetime(previous[name], utc=True, format="ISO8601")
    previous[ALERT_KEY] = previous[ALERT_KEY].astype(object)
    now = datetime.fromisoformat(payload["now"])
    timezone = payload["timezone"]
    states = compute_states(items, today=now.astimezone(ZoneInfo(timezone)).date())
    evaluation = Evaluation(
        states=states,
        counts=state_counts(states),
        bad_rows=pd.DataFrame(**payload["bad_rows"]),
        demand_matched=None,
    )
    # The task's own function: the same planning and rendering, outside a flow run.
    _, messages = plan_run.fn(
        evaluation,
        previous,
        now=now,
        cooldown_hours=payload["cooldown_hours"],
        timezone=timezone,
        locale=payload["locale"],
        top_n=payload["top_n"],
    )
    return effects(messages)


__all__ = ["AUTOMATION", "KIND", "effects", "replay", "snapshot"]

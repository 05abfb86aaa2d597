"""Inventory-alert rendering: one Message per severity (Slack blocks, e-mail, Markdown, CSV)."""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from flows.inventory_alert import ENTRY
from flows.inventory_alert.states import alert_digest
from moltbot.messages import Attachment, Message, Severity
from moltbot.templating import render_alert

AUTOMATION = "inventory-alert"
TEMPLATES = Path(__file__).parent / "templates"

MESSAGE_SEVERITY: dict[str, Severity] = {
    "out": "critical",
    "reminder": "critical",
    "low": "warning",
    "recovered": "info",
}

# The rule (`flows.inventory_alert.RULES`) of each severity's alert.
RULES: dict[str, str] = {
    "out": "out-of-stock",
    "low": "low-stock",
    "recovered": "recovered",
    "reminder": "reminder",
}

# The CSV attachment's columns, in order (English headers: it is read by programs too).
CSV_COLUMNS: tuple[str, ...] = (
    "sku",
    "name",
    "location",
    "from",
    "to",
    "on_hand",
    "reorder_point",
    "safety_stock",
    "daily_demand",
    "days_of_cover",
    "stockout_date",
    "lead_time_days",
    "at_risk",
    "lasted_hours",
)
BAD_ROWS_QUOTED = 5


def message_key(severity: str, digest: str) -> str:
    """The logical idempotency key of one severity's alert (the channel is added on delivery)."""
    return f"{AUTOMATION}:{severity}:{digest}"


def item_records(items: pd.DataFrame, columns: tuple[str, ...] = CSV_COLUMNS) -> list[dict]:
    """Items as JSON-friendly dicts: NaN -> None, numpy scalars -> Python, dates -> date."""
    present = [name for name in columns if name in items.columns]
    records = []
    for row in items[present].itertuples(index=False, name=None):
        records.append({name: _plain(value) for name, value in zip(present, row, strict=True)})
    return records


def _plain(value: object) -> Any:
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp):
        return value.date() if value.tz is None else value.to_pydatetime()
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating | float):
        number = float(value)
        if math.isnan(number):
            return None
        return int(number) if number.is_integer() and abs(number) < 2**53 else round(number, 2)
    return value


def alert_csv(items: pd.DataFrame) -> bytes:
    """The full list of one alert as CSV (UTF-8 with a byte-order mark, so Excel shows Korean)."""
    frame = items[[name for name in CSV_COLUMNS if name in items.columns]].copy()
    frame["stockout_date"] = frame["stockout_date"].dt.strftime("%Y-%m-%d")
    for name in frame.columns:
        values = frame[name]
        if pd.api.types.is_float_dtype(values):
            whole = values.dropna()
            # Counted stock reads "12", not "12.0"; figures like demand keep two decimals.
            if (whole == np.floor(whole)).all() and (whole.abs() < 2**53).all():
                frame[name] = values.astype("Int64")
            else:
                frame[name] = values.round(2)
    return frame.to_csv(index=False, lineterminator="\n").encode("utf-8-sig")


def build_alert_message(
    severity: str,
    items: pd.DataFrame,
    *,
    counts: dict[str, int],
    bad_rows: list[dict[str, Any]],
    bad_rows_total: int,
    now: datetime,
    timezone: str,
    locale: str,
    top_n: int,
) -> Message:
    """Render one severity's alert: counts, the `top_n` most urgent items, "and K more".

    Args:
        severity: `out`, `low`, `recovered` or `reminder`.
        items: the severity's items from `plan_alerts`, most urgent first.
        counts: this run's state counts (`state_counts`).
        bad_rows: the first bad rows of the run (for the footer); `bad_rows_total` all of them.
        now: the run's moment (the local date names the files).
        timezone: IANA timezone of the dates shown.
        locale: `en` or `ko`.
        top_n: how many items the message lists; the CSV attachment has them all.
    """
    digest = alert_digest(severity, items)
    local_date = now.astimezone(ZoneInfo(timezone)).date()
    stem = f"{AUTOMATION}-{severity}-{local_date.isoformat()}-{digest[:8]}"
    top = item_records(items.head(top_n))
    context = {
        "severity": severity,
        "items": top,
        "total": len(items),
        "more": max(len(items) - len(top), 0),
        "counts": counts,
        "bad_rows": bad_rows[:BAD_ROWS_QUOTED],
        "bad_rows_total": bad_rows_total,
        "timezone": timezone,
        "run_date": local_date,
        "csv_file": f"{stem}.csv",
    }
    alert = render_alert(TEMPLATES, locale, **context)
    title, markdown, html, blocks = alert.title, alert.markdown, alert.html, alert.slack_blocks
    return Message(
        key=message_key(severity, digest),
        rule=ENTRY.rule(RULES[severity]),
        automation=AUTOMATION,
        severity=MESSAGE_SEVERITY[severity],
        title=title,
        text=markdown,
        markdown=markdown,
        html=html,
        slack_blocks=blocks,
        attachments=[
            Attachment(filename=f"{stem}.csv", content_type="text/csv", data=alert_csv(items))
        ],
        file_stem=stem,
    )

"""Inventory-alert computation: clean stock table, states, transitions, reminders (no I/O)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from flows.shared.orders import EXCLUDED_STATUSES
from flows.shared.tables import rename_columns, require_columns, text_values
from moltbot.errors import InputError
from moltbot.state.item_state import ALERT_KEY, STATE_COLUMNS, empty_states

# The index name `tasks.sheets.read_worksheet` gives a worksheet: each row's sheet row number.
SHEET_ROW_INDEX = "sheet_row"
REQUIRED_COLUMNS: tuple[str, ...] = ("sku", "name", "on_hand", "reorder_point")
OPTIONAL_COLUMNS: tuple[str, ...] = ("safety_stock", "lead_time_days", "daily_demand", "location")
QUANTITY_COLUMNS: tuple[str, ...] = (
    "on_hand",
    "reorder_point",
    "safety_stock",
    "lead_time_days",
    "daily_demand",
)

OK, LOW, OUT = "ok", "low", "out"
STATES: tuple[str, ...] = (OK, LOW, OUT)

# The messages of one run, one per severity. Transitions into `out` and `low` are alerts,
# `recovered` is low/out -> ok, `reminder` is an item still out after a whole cooldown.
SEVERITIES: tuple[str, ...] = ("out", "low", "recovered", "reminder")

# Which state changes alert, and in which message. Others (out -> low after a partial restock,
# a new item that is fine) are saved silently.
ALERTING: dict[tuple[str, str], str] = {
    (OK, LOW): "low",
    (OK, OUT): "out",
    (LOW, OUT): "out",
    (LOW, OK): "recovered",
    (OUT, OK): "recovered",
}

DEMAND_WINDOW_DAYS = 28

# "1,234" or "-1,234.5": commas only where they group thousands, so "4,5" (a decimal comma) is
# rejected rather than silently read as 45.
_THOUSANDS = r"^[+-]?\d{1,3}(?:,\d{3})+(?:\.\d*)?$"
_STATE_RANK = {OUT: 0, LOW: 1, OK: 2}
_NO_STOCKOUT_DAYS = 36_500


# --------------------------------------------------------------------------- the stock table


@dataclass(frozen=True)
class Inventory:
    """A cleaned stock table.

    Attributes:
        items: the usable rows, one per SKU: `sku`, `name`, `location` (strings, location may be
            missing) and the `QUANTITY_COLUMNS` as floats (NaN where an optional one is blank).
        bad_rows: the unusable rows: `row` (1-based data row, header not counted), `sku` (None
            when missing) and `problem`; their SKUs are left out of `items`, so their stored
            state does not change this run.
    """

    items: pd.DataFrame
    bad_rows: pd.DataFrame


def normalize_inventory(
    raw: pd.DataFrame, *, source_label: str, columns: Mapping[str, str] | None = None
) -> Inventory:
    """Validate a raw stock table and split it into usable items and reported bad rows.

    A row is bad when its SKU is missing or appears more than once (every copy is bad: there is
    no telling which is right), or a quantity is missing (required ones only), non-numeric or
    negative. Bad rows never stop the run; a table that cannot be read as a stock list does.

    Args:
        raw: the table as loaded (CSV as text, Parquet or SQL with types). Not modified.
        source_label: what to call the source in error messages, e.g. the file name.
        columns: optional renaming of the source's column names to the canonical ones.

    Raises:
        InputError: the table is empty, a required column is missing (or named twice), or a
            quantity column holds no usable number at all (a wrong column, not a bad row).
    """
    if raw.shape[1] == 0 or len(raw) == 0:
        raise InputError(f"{source_label}: the source is empty (no rows)")
    # Rows are numbered as a spreadsheet shows them: a sheet's own row numbers when the table
    # came from one (its index), else the header is row 1 and the first item row 2.
    row_numbers = (
        raw.index.to_numpy(dtype="int64")
        if raw.index.name == SHEET_ROW_INDEX
        else np.arange(2, len(raw) + 2, dtype="int64")
    )
    known = (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)
    frame = rename_columns(raw, source_label=source_label, columns=columns, known=known)
    frame = frame.reset_index(drop=True)
    require_columns(frame, REQUIRED_COLUMNS, source_label=source_label)

    sku = text_values(frame["sku"])
    items = pd.DataFrame({"sku": sku}, index=frame.index)
    items["name"] = text_values(frame["name"]).fillna(sku)
    items["location"] = (
        text_values(frame["location"])
        if "location" in frame.columns
        else pd.Series(pd.NA, index=frame.index, dtype="str")
    )
    problems: list[tuple[pd.Series, str]] = [(sku.isna(), "missing sku")]
    duplicated = sku.duplicated(keep=False) & sku.notna()
    problems.append((duplicated, "duplicate sku"))
    for column in QUANTITY_COLUMNS:
        if column not in frame.columns:
            items[column] = np.nan
            continue
        values, blank, unparsed = _numbers(frame[column])
        _refuse_unusable_column(column, blank=blank, unparsed=unparsed, source_label=source_label)
        if column in REQUIRED_COLUMNS:
            problems.append((blank, f"missing {column}"))
        problems.append((unparsed, f"non-numeric {column}"))
        problems.append((values < 0, f"negative {column}"))
        items[column] = values

    bad = pd.Series(False, index=frame.index)
    for mask, _ in problems:
        bad |= mask
    if not bad.any():
        return Inventory(items=items, bad_rows=_no_bad_rows())
    described = pd.Series("", index=frame.index[bad.to_numpy()], dtype="str")
    for mask, problem in problems:
        hit = mask[bad]
        if hit.any():
            described = described.where(~hit, described + "; " + problem)
    bad_rows = pd.DataFrame(
        {
            "row": row_numbers[bad.to_numpy()],
            "sku": sku[bad].astype(object).where(sku[bad].notna(), None).to_numpy(),
            "problem": described.str.removeprefix("; ").to_numpy(),
        }
    )
    # Every row of a SKU with a bad row is left out, so the SKU keeps its stored state.
    held = sku.isin(set(sku[bad].dropna()))
    return Inventory(items=items[~(bad | held)].reset_index(drop=True), bad_rows=bad_rows)


def _no_bad_rows() -> pd.DataFrame:
    return pd.DataFrame(
        {"row": pd.Series([], dtype="int64"), "sku": pd.Series([], dtype=object), "problem": []}
    )


def _numbers(series: pd.Series) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Parse quantities: (values with NaN where unusable, blank mask, unparseable mask).

    Thousands separators are accepted; text, infinities and booleans are not numbers.
    """
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        values = series.astype("float64")
        blank = values.isna()
        unparsed = pd.Series(np.isinf(values.to_numpy()), index=series.index)
        return values.where(~unparsed), blank, unparsed
    text = series.astype("str").str.strip()
    blank = (text.isna() | (text == "")).astype(bool)
    values = _fast_floats(text.mask(blank))
    if values is None:
        values = pd.to_numeric(text, errors="coerce").astype("float64")
    failed = values.isna() & ~blank
    if failed.any():
        # The regex runs only on the values plain parsing refused (usually none): at a million
        # rows, matching every value would cost more than parsing them.
        retry = text[failed]
        grouped = retry.str.fullmatch(_THOUSANDS).fillna(False).astype(bool)
        parsed = pd.to_numeric(retry[grouped].str.replace(",", "", regex=False), errors="coerce")
        values.loc[parsed.index] = parsed.astype("float64")
    unparsed = (values.isna() | np.isinf(values)) & ~blank
    return values.where(~unparsed), blank, unparsed


def _fast_floats(text: pd.Series) -> pd.Series | None:
    """Plain decimal text (blanks as missing) as floats via Arrow, or None if any value is not.

    Arrow parses a million values in milliseconds where `pd.to_numeric` takes a third of a
    second; anything it refuses (thousands separators, words) goes the slow, forgiving way.
    """
    try:
        parsed = pc.cast(pa.array(text.array), pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None
    return pd.Series(parsed.to_numpy(zero_copy_only=False), index=text.index, dtype="float64")


def _refuse_unusable_column(
    column: str, *, blank: pd.Series, unparsed: pd.Series, source_label: str
) -> None:
    """A column with no usable number at all is a wrong column, not a set of bad rows."""
    filled = ~blank
    if column in REQUIRED_COLUMNS and not filled.any():
        raise InputError(f"{source_label}: column {column!r} is empty")
    if filled.any() and unparsed[filled].all():
        raise InputError(f"{source_label}: column {column!r} holds no numbers")


# --------------------------------------------------------------------------- demand


def average_daily_units(
    orders: pd.DataFrame, *, end_date: date, days: int = DEMAND_WINDOW_DAYS
) -> pd.Series:
    """Average units sold per day by product over the `days` local dates ending at `end_date`.

    Cancelled and refunded lines do not count. When the sales start inside the window, the
    average is over the days since the first sale, so a young shop's demand is not diluted by
    days it did not exist.

    Args:
        orders: a table returned by `flows.shared.orders.normalize_orders`.
        end_date: the last local date counted (usually yesterday, the last full day).
        days: the window length.

    Returns:
        Units per day, a float Series indexed by `product`.
    """
    if days < 1:
        raise InputError(f"the demand window must be at least one day, got {days}")
    start = end_date - timedelta(days=days - 1)
    if orders.empty:
        return pd.Series(dtype="float64", name="daily_demand")
    local_date = pd.to_datetime(orders["local_date"]).dt.date
    counted = ~orders["status"].isin(EXCLUDED_STATUSES)
    in_window = counted & (local_date >= start) & (local_date <= end_date)
    first = max(min(local_date), start)
    covered = max((end_date - first).days + 1, 1)
    units = orders.loc[in_window, "quantity"].groupby(orders.loc[in_window, "product"]).sum()
    return (units / covered).rename("daily_demand")


def fill_daily_demand(items: pd.DataFrame, demand: pd.Series) -> tuple[pd.DataFrame, int]:
    """Fill missing `daily_demand` from sales per product: matched on `sku`, else on `name`.

    An item with no sales in the window gets 0 (it sold nothing), not an unknown demand.

    Returns:
        The items with `daily_demand` filled, and how many items matched a sold product.
    """
    by_sku = items["sku"].map(demand)
    by_name = items["name"].map(demand)
    matched = by_sku.fillna(by_name)
    filled = items.copy()
    filled["daily_demand"] = items["daily_demand"].fillna(matched).fillna(0.0)
    return filled, int(matched.notna().sum())


# --------------------------------------------------------------------------- states


def compute_states(items: pd.DataFrame, *, today: date) -> pd.DataFrame:
    """Each item's stock state, days of cover, projected stock-out date and risk flag.

    `out` when on_hand <= 0, `low` when on_hand <= reorder_point, else `ok`. Days of cover is
    on_hand / daily_demand (NaN when the demand is unknown or zero: no stock-out in sight); the
    projected stock-out date is `today` plus the whole days of cover; `at_risk` when an item in
    stock has fewer days of cover than its lead time, i.e. it runs out before a reorder placed
    now arrives.

    Returns:
        A copy of `items` with `state`, `days_of_cover`, `stockout_date` (datetime64 days) and
        `at_risk` (bool).
    """
    on_hand = items["on_hand"].to_numpy(dtype="float64")
    reorder_point = items["reorder_point"].to_numpy(dtype="float64")
    demand = items["daily_demand"].to_numpy(dtype="float64")
    lead_time = items["lead_time_days"].to_numpy(dtype="float64")
    state = np.select([on_hand <= 0, on_hand <= reorder_point], [OUT, LOW], default=OK)
    with np.errstate(divide="ignore", invalid="ignore"):
        cover = np.where(demand > 0, np.maximum(on_hand, 0.0) / demand, np.nan)
    # Beyond a century there is no stock-out in sight (and dates would overflow).
    whole_days = np.where(cover <= _NO_STOCKOUT_DAYS, np.floor(cover), np.nan)
    stockout = np.datetime64(today, "D") + pd.to_timedelta(whole_days, unit="D").to_numpy()
    out = items.copy()
    out["state"] = pd.array(state, dtype="str")
    out["days_of_cover"] = cover
    out["stockout_date"] = pd.Series(stockout, index=items.index).astype("datetime64[s]")
    with np.errstate(invalid="ignore"):
        # An item already out is past being at risk; it is counted as out.
        out["at_risk"] = (cover < lead_time) & (state != OUT)
    return out


def state_counts(states: pd.DataFrame) -> dict[str, int]:
    """How many items are `ok`, `low`, `out`, and `at_risk` (any state)."""
    counts = states["state"].value_counts()
    return {
        OK: int(counts.get(OK, 0)),
        LOW: int(counts.get(LOW, 0)),
        OUT: int(counts.get(OUT, 0)),
        "at_risk": int(states["at_risk"].sum()),
    }


def by_urgency(items: pd.DataFrame) -> pd.DataFrame:
    """Most urgent first: out before low before ok, then fewest days of cover, then the fastest
    sellers, then the lowest stock against its reorder point, then SKU."""
    rank = items["state"].map(_STATE_RANK).fillna(3)
    with np.errstate(divide="ignore", invalid="ignore"):
        fill = items["on_hand"] / items["reorder_point"].where(items["reorder_point"] > 0)
    keys = pd.DataFrame(
        {
            "rank": rank.to_numpy(),
            "cover": items["days_of_cover"].to_numpy(),
            "demand": -items["daily_demand"].to_numpy(),
            "fill": fill.to_numpy(),
            "sku": items["sku"].to_numpy(),
        }
    )
    order = keys.sort_values(
        ["rank", "cover", "demand", "fill", "sku"], na_position="last", kind="mergesort"
    ).index
    return items.iloc[order.to_numpy()].reset_index(drop=True)


# --------------------------------------------------------------------------- transitions


@dataclass(frozen=True)
class Plan:
    """What one run decided, before anything is sent or saved.

    Attributes:
        alerts: per severity (`SEVERITIES`), the items it reports, most urgent first, with their
            figures plus `from`, `to`, `previous_since` (the stored `since` the key is built
            from), `lasted_hours` (recoveries and reminders), `period` (reminders) and
            `alert_key` (the stored key of the alert that reported the item's out or low state,
            None if none: what a reminder or recovery follows up). Severities with nothing to
            say are absent.
        writes: the stored rows to write (`STATE_COLUMNS` and `alert_key`) plus `severity`:
            the message that must be delivered before the row is saved (None for silent changes
            such as a new item that is fine or out -> low). `alert_key` is the stored one while
            the item stays out or low (a reminder and out -> low keep it) and None once it is
            ok; an out or low alert's rows get its message's key later, once the messages (and
            so their keys) exist (`flows.inventory_alert.flow.follow_ups`).
    """

    alerts: dict[str, pd.DataFrame]
    writes: pd.DataFrame


def plan_alerts(
    states: pd.DataFrame,
    previous: pd.DataFrame | None,
    *,
    now: datetime,
    cooldown: timedelta,
) -> Plan:
    """Compare this run's states with the stored ones: transitions, reminders, rows to save.

    An item with no stored state counts as `ok` (a new item that is low alerts as ok -> low).
    Only ok -> low, ok/low -> out and recoveries (low/out -> ok) alert. An item that stays out
    is reminded once per `cooldown` since it went out: reminder `k` is due from
    `since + k * cooldown`, so its `period` is the same for every run within that cooldown.

    Args:
        states: this run's items from `compute_states` (one row per SKU).
        previous: stored states (`moltbot.state.item_state.STATE_COLUMNS`, and `alert_key`
            if known; items absent from `states` are ignored and keep their rows).
        now: the moment of this run (tz-aware); becomes `since` of every changed item.
        cooldown: time between reminders of an item still out.

    Returns:
        The plan; nothing in it depends on the wall clock except through `now`.
    """
    if cooldown <= timedelta(0):
        raise InputError(f"cooldown must be positive, got {cooldown}")
    stamp = pd.Timestamp(now).tz_convert("UTC").as_unit("us")
    previous = empty_states() if previous is None else previous
    if ALERT_KEY not in previous.columns:
        previous = previous.assign(**{ALERT_KEY: None})
    stored = previous.rename(
        columns={
            "item_key": "sku",
            "state": "prev_state",
            "since": "prev_since",
            "episode_since": "prev_episode_since",
            "last_alerted_at": "prev_last_alerted_at",
            ALERT_KEY: "prev_alert_key",
        }
    ).set_index("sku")
    joined = states.join(stored, on="sku", how="left")
    is_new = joined["prev_state"].isna().to_numpy()
    prev_state = joined["prev_state"].fillna(OK).astype("str")
    before = prev_state.to_numpy(dtype=object)
    after = joined["state"].to_numpy(dtype=object)
    changed = before != after

    # Reminder periods count whole cooldowns since the item went out.
    prev_since = joined["prev_since"]
    period = np.floor((stamp - prev_since) / cooldown).to_numpy()
    last_alerted = joined["prev_last_alerted_at"].fillna(prev_since)
    last_period = np.floor((last_alerted - prev_since) / cooldown).to_numpy()
    with np.errstate(invalid="ignore"):
        reminder = ~changed & ~is_new & (after == OUT) & (period >= 1) & (period > last_period)

    names = [*ALERTING.values(), "reminder"]
    conditions = [changed & (before == b) & (after == a) for b, a in ALERTING]
    severity = np.select([*conditions, reminder], names, default=None)
    alerted = severity != None  # noqa: E711  (an elementwise test on an object array)

    now_column = pd.Series(stamp, index=joined.index)
    episode = joined["prev_episode_since"].fillna(prev_since)
    # An episode starts when an item leaves ok and ends when it is ok again.
    new_episode = now_column.where(prev_state == OK, episode).where(joined["state"] != OK)
    write = changed | is_new | reminder
    # The alert that reported the item's out or low state stays its thread until it is ok.
    prev_alert_key = joined["prev_alert_key"].astype(object)
    prev_alert_key = prev_alert_key.where(prev_alert_key.notna(), None)
    alert_key = prev_alert_key.where(joined["state"] != OK, None)
    writes = pd.DataFrame(
        {
            "item_key": joined["sku"],
            "state": joined["state"],
            "since": now_column.where(changed | is_new, prev_since),
            "episode_since": new_episode,
            "last_alerted_at": now_column.where(alerted, joined["prev_last_alerted_at"]),
            ALERT_KEY: alert_key,
            "severity": severity,
        }
    )[write]
    writes = writes.astype(
        {name: "datetime64[us, UTC]" for name in ("since", "episode_since", "last_alerted_at")}
    ).reset_index(drop=True)

    # Figures only for the items that alert: at a million items, most rows say nothing new.
    figures = joined[alerted].drop(columns=_STORED_EXTRA)
    figures = figures.assign(
        **{
            "from": prev_state[alerted],
            "previous_since": prev_since[alerted],
            "lasted_hours": (stamp - episode[alerted]).dt.total_seconds() / 3600,
            "period": period[alerted],
            ALERT_KEY: prev_alert_key[alerted],
        }
    )
    figures["to"] = figures["state"]
    severity = severity[alerted]
    alerts: dict[str, pd.DataFrame] = {}
    for name in SEVERITIES:
        selected = figures[severity == name]
        if selected.empty:
            continue
        if name in ("out", "low"):
            selected = selected.assign(lasted_hours=np.nan, period=np.nan)
        elif name == "recovered":
            selected = selected.assign(period=np.nan)
        else:
            # A reminder says how long the item has been out, not the whole episode.
            selected = selected.assign(
                lasted_hours=(stamp - selected["previous_since"]).dt.total_seconds() / 3600
            )
        alerts[name] = by_urgency(selected).reset_index(drop=True)
    return Plan(alerts=alerts, writes=writes[[*STATE_COLUMNS, ALERT_KEY, "severity"]])


_STORED_EXTRA = [
    "prev_state",
    "prev_since",
    "prev_episode_since",
    "prev_last_alerted_at",
    "prev_alert_key",
]


def alert_digest(severity: str, items: pd.DataFrame) -> str:
    """A digest of the logical content of one severity's alert, the same on every re-run.

    Transitions are identified by (sku, from, to, previous since): a re-run after a crash sees
    the same stored states and so the same tuples; a later, new transition of the same item has
    a different previous `since`. Reminders are identified by (sku, since, period).
    """
    since = items["previous_since"].map(lambda value: "" if pd.isna(value) else value.isoformat())
    if severity == "reminder":
        parts = [items["sku"], since, items["period"].astype("int64").astype("str")]
    else:
        parts = [items["sku"], items["from"], items["to"], since]
    lines = parts[0].astype("str")
    for part in parts[1:]:
        lines = lines + "\t" + part.astype("str")
    text = "\n".join(sorted(lines.tolist()))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]

"""Daily-report computation: the day's KPIs from the canonical orders table (no I/O)."""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa

from flows.shared.orders import EXCLUDED_STATUSES, ORDER_COLUMNS
from moltbot.errors import InputError

CANONICAL_COLUMNS = ORDER_COLUMNS

# The anomaly check compares the day with the 28 days before it, and only once two full weeks of
# history exist: fewer days make the standard deviation too noisy to alert on.
HISTORY_WINDOW_DAYS = 28
MIN_HISTORY_DAYS = 14
ANOMALY_Z = 3.0
# Summing equal floats leaves a standard deviation like 2e-13, not 0: below a displayed cent the
# history counts as flat.
_FLAT_STD = 0.005
_EPOCH = date(1970, 1, 1)


# --------------------------------------------------------------------------- KPIs


def compute_kpis(orders: pd.DataFrame, *, report_date: date, top_n: int = 5) -> dict:
    """The day's figures for the report, as plain JSON-serialisable Python values.

    Revenue, orders, units and the breakdowns count only rows whose status is not in
    ``EXCLUDED_STATUSES``; cancelled and refunded rows of the day are summarised separately.

    Args:
        orders: a table returned by ``normalize_orders`` (may hold many days).
        report_date: the local date to report on.
        top_n: how many products to list, best-selling by revenue first.

    Returns:
        A dict with ``revenue``, ``orders``, ``units``, ``aov``, ``top_products``,
        ``by_channel``, ``by_region``, ``change_vs_prev_day_pct``, ``change_vs_prev_week_pct``,
        ``cancelled``, ``anomaly``, ``anomaly_detail`` and ``no_orders``; amounts and
        percentages rounded to 2 decimals, ``None`` where a figure is undefined.

    Raises:
        InputError: ``top_n`` is negative.
    """
    _require_normalized(orders)
    report_date = _as_date(report_date)
    if top_n < 0:
        raise InputError(f"top_n must be 0 or more, got {top_n}")

    # Select the day first: copying every column of the whole history is the costly part.
    days = _day_numbers(orders["local_date"])
    day_rows = orders.take(np.flatnonzero(days == _day_number(report_date)))
    excluded = _excluded(day_rows)
    day = day_rows[~excluded]
    revenue = float(day["amount"].sum())
    order_count = int(day["order_id"].nunique())
    daily = _revenue_by_date(orders)
    history = _history(daily, report_date=report_date, first_date=_first_date(orders))
    anomaly, anomaly_detail = _anomaly(history, revenue=revenue)
    return {
        "revenue": _money(revenue),
        "orders": order_count,
        "units": _units(day["quantity"].sum()),
        "aov": _money(revenue / order_count) if order_count else None,
        "top_products": _top_products(day, top_n),
        "by_channel": _revenue_by(day, "channel"),
        "by_region": _revenue_by(day, "region"),
        "change_vs_prev_day_pct": _pct_change(
            revenue, _revenue_on(daily, report_date - timedelta(days=1))
        ),
        "change_vs_prev_week_pct": _pct_change(
            revenue, _revenue_on(daily, report_date - timedelta(days=7))
        ),
        "cancelled": _cancelled(day_rows[excluded]),
        "anomaly": anomaly,
        "anomaly_detail": anomaly_detail,
        "no_orders": order_count == 0,
    }


def data_warnings(orders: pd.DataFrame, *, report_date: date, source_label: str) -> list[str]:
    """What an analyst should know about the data behind the report, one line each.

    A report date on which the source has no rows at all (not even cancelled ones) is reported
    as a zero day, which can be real (a holiday) or a sign of stale data: the warning says so,
    with the source's latest date before it when there is one.

    Args:
        orders: a table returned by ``normalize_orders``.
        report_date: the local date reported on.
        source_label: how to name the source (a file name, never a URL with a password).
    """
    _require_normalized(orders)
    report_date = _as_date(report_date)
    days = _day_numbers(orders["local_date"])
    wanted = _day_number(report_date)
    if (days == wanted).any():
        return []
    earlier = days[days < wanted]
    latest = f" (latest order: {_date_of(earlier.max()).isoformat()})" if len(earlier) else ""
    return [f"no orders on {report_date.isoformat()} in {source_label}{latest}"]


def daily_revenue(orders: pd.DataFrame, *, end_date: date, days: int = 28) -> pd.Series:
    """Revenue per local date for the ``days`` dates ending at ``end_date``, for the chart.

    Args:
        orders: a table returned by ``normalize_orders``.
        end_date: the last date of the series (usually the report date).
        days: how many dates the series covers.

    Returns:
        A float Series named ``revenue``, indexed by ``datetime.date`` in ascending order,
        0.0 on days without counted orders.

    Raises:
        InputError: ``days`` is less than 1.
    """
    _require_normalized(orders)
    end_date = _as_date(end_date)
    if days < 1:
        raise InputError(f"days must be 1 or more, got {days}")
    window = _date_range(end_date - timedelta(days=days - 1), end_date)
    series = _revenue_by_date(orders).reindex(window, fill_value=0.0).astype("float64")
    series.index.name = "date"
    return series.rename("revenue")


def _require_normalized(orders: pd.DataFrame) -> None:
    # A programming error rather than bad user input, so not an InputError.
    missing = [c for c in (*CANONICAL_COLUMNS, "local_date", "amount") if c not in orders.columns]
    if missing:
        raise ValueError(f"orders lacks {missing}: pass it through normalize_orders first")


def _as_date(value: date) -> date:
    # datetime is a subclass of date but never equals one, which would silently match no rows.
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    raise TypeError(f"expected a datetime.date, got {type(value).__name__}")


def _excluded(orders: pd.DataFrame) -> np.ndarray:
    return orders["status"].isin(EXCLUDED_STATUSES).to_numpy(dtype=bool)


def _day_numbers(local_date: pd.Series) -> np.ndarray:
    """Each row's local date as days since 1970-01-01: a whole history compared as integers."""
    dtype = local_date.dtype
    if isinstance(dtype, pd.ArrowDtype) and pa.types.is_date32(dtype.pyarrow_dtype):
        # Arrow keeps a date as exactly this number: a view, not a conversion.
        return pa.chunked_array(pa.array(local_date.array)).cast(pa.int32()).to_numpy()
    return np.asarray(local_date.tolist(), dtype="datetime64[D]").astype(np.int64)


def _day_number(day: date) -> int:
    return (day - _EPOCH).days


def _date_of(day_number: int) -> date:
    return _EPOCH + timedelta(days=int(day_number))


def _revenue_by_date(orders: pd.DataFrame) -> pd.Series:
    """Revenue of the counted rows per local date (``datetime.date`` index, ascending)."""
    counted = ~_excluded(orders)
    # Only two columns are needed; filtering the whole frame would copy every string column.
    amounts = pd.Series(orders["amount"].to_numpy()[counted])
    days = _day_numbers(orders["local_date"])[counted]
    if not len(days):
        return pd.Series([], index=pd.Index([], dtype=object), dtype="float64", name="amount")
    # Days as category codes: pandas sums each day's rows as before, without hashing millions
    # of keys to find the few hundred days.
    first = int(days.min())
    by_day = pd.Categorical.from_codes(days - first, categories=range(first, int(days.max()) + 1))
    totals = amounts.groupby(by_day, observed=True, sort=True).sum()
    totals.index = pd.Index([_date_of(number) for number in totals.index], dtype=object)
    return totals.rename("amount")


def _revenue_on(daily: pd.Series, day: date) -> float:
    return float(daily.get(day, 0.0))


def _first_date(orders: pd.DataFrame) -> date | None:
    # Any row, cancelled or not, shows that data was being collected that day.
    return _date_of(_day_numbers(orders["local_date"]).min()) if len(orders) else None


def _date_range(start: date, end: date) -> list[date]:
    return list(pd.date_range(start, end, freq="D").date)


def _money(value: float) -> float:
    # "+ 0.0" turns a -0.0 from rounding into 0.0.
    return round(float(value), 2) + 0.0


def _units(value: float) -> int | float:
    rounded = round(float(value), 2)
    return int(rounded) if rounded.is_integer() else rounded


def _pct_change(current: float, base: float) -> float | None:
    """Percent change from ``base``; undefined (None) when there was nothing to compare with."""
    if round(base, 2) == 0:
        return None
    return _money((current - base) / base * 100)


def _top_products(day: pd.DataFrame, top_n: int) -> list[dict]:
    totals = (
        day.groupby("product", sort=False)
        .agg(revenue=("amount", "sum"), units=("quantity", "sum"))
        .reset_index()
    )
    # Rounded before sorting so float noise (0.1 + 0.2) cannot break a tie differently than shown.
    totals["revenue"] = totals["revenue"].round(2)
    top = totals.sort_values(
        ["revenue", "product"], ascending=[False, True], kind="mergesort"
    ).head(top_n)
    return [
        {"product": str(product), "revenue": _money(revenue), "units": _units(units)}
        for product, revenue, units in zip(
            top["product"], top["revenue"], top["units"], strict=True
        )
    ]


def _revenue_by(day: pd.DataFrame, column: str) -> dict[str, float]:
    totals = day.groupby(column, sort=False)["amount"].sum().round(2).rename("revenue")
    ordered = totals.reset_index().sort_values(
        ["revenue", column], ascending=[False, True], kind="mergesort"
    )
    return {
        str(name): _money(revenue)
        for name, revenue in zip(ordered[column], ordered["revenue"], strict=True)
    }


def _cancelled(excluded: pd.DataFrame) -> dict:
    return {
        "count": int(excluded["order_id"].nunique()),
        "amount": _money(excluded["amount"].sum()),
    }


def _history(daily: pd.Series, *, report_date: date, first_date: date | None) -> pd.Series:
    """Daily revenue of the 28 days before ``report_date``, none before the data's first date.

    Days before the source existed are not zero-revenue days, so they are left out; days inside
    the span without counted orders are 0.
    """
    end = report_date - timedelta(days=1)
    start = report_date - timedelta(days=HISTORY_WINDOW_DAYS)
    if first_date is None or first_date > end:
        window: list[date] = []
    else:
        window = _date_range(max(start, first_date), end)
    return daily.reindex(window, fill_value=0.0).astype("float64")


def _anomaly(history: pd.Series, *, revenue: float) -> tuple[bool, dict]:
    """Whether ``revenue`` is over 3 sample standard deviations from the history's mean."""
    days = len(history)
    mean = float(history.mean()) if days >= 1 else None
    std = float(history.std(ddof=1)) if days >= 2 else None
    flat = std is not None and std < _FLAT_STD
    z_score = None if mean is None or std is None or flat else (revenue - mean) / std
    detail = {
        "history_days": days,
        "mean": None if mean is None else _money(mean),
        "std": None if std is None else (0.0 if flat else _money(std)),
        "z_score": None if z_score is None else _money(z_score),
    }
    if days < MIN_HISTORY_DAYS or mean is None or std is None:
        return False, detail
    if flat:
        # A flat history: any departure from it is unusual, however small.
        return not math.isclose(revenue, mean, abs_tol=_FLAT_STD), detail
    return abs(revenue - mean) > ANOMALY_Z * std, detail

"""Benchmark: the daily-report flow against plain pandas and DuckDB computing the same KPIs.

Usage (see bench/README.md):
    uv run python bench/daily_report.py make DIR [ORDERS_PER_DAY]   # write DIR/orders.csv
    uv run python bench/daily_report.py plain DIR/orders.csv         # pandas only, no Prefect
    uv run python bench/daily_report.py flow DIR/orders.csv          # the flow, dry run
    uv run python bench/daily_report.py duckdb DIR/orders.csv        # DuckDB from the file
    uv run python bench/daily_report.py compare DIR/orders.csv       # plain KPIs == DuckDB's?
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from datetime import date, timedelta
from pathlib import Path

REPORT_DATE = date(2026, 11, 23)
TIMEZONE = "Asia/Seoul"
TOP_N = 5


def make(folder: str, orders_per_day: str = "20000") -> None:
    from demo.sample_orders import write_sample_orders

    path = write_sample_orders(
        Path(folder) / "orders.csv", end_date=REPORT_DATE, orders_per_day=int(orders_per_day)
    )
    print(path)


def plain_kpis(source: str) -> dict:
    """What a hand-written cron script would do: read, validate, compute, render the chart."""
    from flows.daily_report.chart import render_revenue_chart
    from flows.daily_report.kpis import compute_kpis, daily_revenue
    from flows.shared.orders import normalize_orders
    from tasks.sources import read_table

    orders = normalize_orders(read_table(source), source_label=source, timezone=TIMEZONE)
    kpis = compute_kpis(orders, report_date=REPORT_DATE, top_n=TOP_N)
    render_revenue_chart(daily_revenue(orders, end_date=REPORT_DATE), report_date=REPORT_DATE)
    return kpis


def plain(source: str) -> None:
    print(plain_kpis(source)["revenue"])


def flow(source: str) -> None:
    from flows.daily_report.flow import daily_report

    result = daily_report(source=source, report_date=REPORT_DATE, dry_run=True)
    print(result["kpis"]["revenue"])


# --------------------------------------------------------------------------- DuckDB

# The file's columns typed by DuckDB's own reader; a day is the local date in TIMEZONE of a UTC
# time. No cleaning beyond that (the generated file is clean): the floor for these KPIs.
_DUCKDB_ORDERS = """
CREATE TEMP VIEW orders AS
SELECT order_id, product, channel, region, quantity, unit_price,
       quantity * unit_price AS amount,
       lower(status) IN ('cancelled', 'refunded') AS excluded,
       (ordered_at::TIMESTAMPTZ AT TIME ZONE $timezone)::DATE AS local_date
FROM read_csv($path, header = true, columns = {
    'order_id': 'VARCHAR', 'ordered_at': 'TIMESTAMP', 'product': 'VARCHAR',
    'channel': 'VARCHAR', 'region': 'VARCHAR', 'quantity': 'DOUBLE',
    'unit_price': 'DOUBLE', 'status': 'VARCHAR'})
"""
_DUCKDB_DAY = """
CREATE TEMP TABLE day AS SELECT * FROM orders WHERE local_date = $day
"""


def duckdb_kpis(source: str) -> dict:
    """The daily-report KPIs computed by DuckDB straight from the CSV file."""
    import duckdb

    connection = duckdb.connect()
    connection.execute("SET TimeZone = 'UTC'")
    connection.execute(
        _DUCKDB_ORDERS.replace("$path", _quoted(source)).replace("$timezone", _quoted(TIMEZONE))
    )
    # One pass over the file for the whole history: revenue per day, and the days with any row
    # (the first one starts the anomaly history, cancelled or not).
    per_day = connection.execute(
        "SELECT local_date, coalesce(sum(amount) FILTER (WHERE NOT excluded), 0)"
        " FROM orders GROUP BY local_date"
    ).fetchall()
    daily = dict(per_day)
    first_date = min(daily, default=REPORT_DATE)
    connection.execute(_DUCKDB_DAY.replace("$day", _quoted(REPORT_DATE.isoformat())))
    [(revenue, order_count, units)] = connection.execute(
        "SELECT coalesce(sum(amount), 0), count(DISTINCT order_id), coalesce(sum(quantity), 0)"
        " FROM day WHERE NOT excluded"
    ).fetchall()
    top = connection.execute(
        "SELECT product, round(sum(amount), 2) AS revenue, sum(quantity) FROM day"
        f" WHERE NOT excluded GROUP BY product ORDER BY revenue DESC, product LIMIT {TOP_N}"
    ).fetchall()
    by = {
        column: connection.execute(
            f"SELECT {column}, round(sum(amount), 2) AS revenue FROM day WHERE NOT excluded"
            f" GROUP BY {column} ORDER BY revenue DESC, {column}"
        ).fetchall()
        for column in ("channel", "region")
    }
    [(cancelled_count, cancelled_amount)] = connection.execute(
        "SELECT count(DISTINCT order_id), coalesce(sum(amount), 0) FROM day WHERE excluded"
    ).fetchall()

    def on(day: date) -> float:
        return float(daily.get(day, 0.0))

    start = max(REPORT_DATE - timedelta(days=28), first_date)
    history = [on(start + timedelta(days=n)) for n in range((REPORT_DATE - start).days)]
    mean = statistics.fmean(history) if history else None
    std = statistics.stdev(history) if len(history) >= 2 else None
    flat = std is not None and std < 0.005
    z_score = None if mean is None or std is None or flat else (revenue - mean) / std
    if len(history) < 14 or mean is None or std is None:
        anomaly = False
    elif flat:
        anomaly = not math.isclose(revenue, mean, abs_tol=0.005)
    else:
        anomaly = abs(revenue - mean) > 3 * std
    return {
        "revenue": _money(revenue),
        "orders": order_count,
        "units": _units(units),
        "aov": _money(revenue / order_count) if order_count else None,
        "top_products": [
            {"product": product, "revenue": _money(total), "units": _units(sold)}
            for product, total, sold in top
        ],
        "by_channel": {name: _money(total) for name, total in by["channel"]},
        "by_region": {name: _money(total) for name, total in by["region"]},
        "change_vs_prev_day_pct": _pct(revenue, on(REPORT_DATE - timedelta(days=1))),
        "change_vs_prev_week_pct": _pct(revenue, on(REPORT_DATE - timedelta(days=7))),
        "cancelled": {"count": cancelled_count, "amount": _money(cancelled_amount)},
        "anomaly": anomaly,
        "anomaly_detail": {
            "history_days": len(history),
            "mean": None if mean is None else _money(mean),
            "std": None if std is None else (0.0 if flat else _money(std)),
            "z_score": None if z_score is None else _money(z_score),
        },
        "no_orders": order_count == 0,
    }


def duckdb(source: str) -> None:
    print(duckdb_kpis(source)["revenue"])


def compare(source: str) -> None:
    """Exit 1 unless the pandas path and DuckDB give the same KPIs, to the last won."""
    ours, theirs = plain_kpis(source), duckdb_kpis(source)
    print(json.dumps({"plain": ours, "duckdb": theirs}, ensure_ascii=False, indent=1))
    same = ours == theirs
    print("same KPIs" if same else "KPIs differ")
    sys.exit(0 if same else 1)


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _money(value: float) -> float:
    return round(float(value), 2) + 0.0


def _units(value: float) -> int | float:
    rounded = round(float(value), 2)
    return int(rounded) if rounded.is_integer() else rounded


def _pct(current: float, base: float) -> float | None:
    return None if round(base, 2) == 0 else _money((current - base) / base * 100)


if __name__ == "__main__":
    command, *arguments = sys.argv[1:]
    commands = {"make": make, "plain": plain, "flow": flow, "duckdb": duckdb, "compare": compare}
    commands[command](*arguments)

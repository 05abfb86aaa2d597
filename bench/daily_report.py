"""Benchmark: the daily-report flow against a plain pandas script computing the same KPIs.

Usage (see bench/README.md):
    uv run python bench/daily_report.py make DIR [ORDERS_PER_DAY]   # write DIR/orders.csv
    uv run python bench/daily_report.py plain DIR/orders.csv         # pandas only, no Prefect
    uv run python bench/daily_report.py flow DIR/orders.csv          # the flow, dry run
"""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

REPORT_DATE = date(2026, 11, 23)
TIMEZONE = "Asia/Seoul"


def make(folder: str, orders_per_day: str = "20000") -> None:
    from demo.sample_orders import write_sample_orders

    path = write_sample_orders(
        Path(folder) / "orders.csv", end_date=REPORT_DATE, orders_per_day=int(orders_per_day)
    )
    print(path)


def plain(source: str) -> None:
    """What a hand-written cron script would do: read, compute, render the chart."""
    from flows.daily_report.chart import render_revenue_chart
    from flows.daily_report.kpis import compute_kpis, daily_revenue
    from flows.shared.orders import normalize_orders
    from tasks.sources import read_table

    orders = normalize_orders(read_table(source), source_label=source, timezone=TIMEZONE)
    kpis = compute_kpis(orders, report_date=REPORT_DATE)
    render_revenue_chart(daily_revenue(orders, end_date=REPORT_DATE), report_date=REPORT_DATE)
    print(kpis["revenue"])


def flow(source: str) -> None:
    from flows.daily_report.flow import daily_report

    result = daily_report(source=source, report_date=REPORT_DATE, dry_run=True)
    print(result["kpis"]["revenue"])


if __name__ == "__main__":
    command, *arguments = sys.argv[1:]
    {"make": make, "plain": plain, "flow": flow}[command](*arguments)

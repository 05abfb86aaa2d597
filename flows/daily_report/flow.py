"""The daily-report flow: load orders, compute the day's KPIs, deliver once per channel, publish."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from flows.daily_report import ENTRY
from flows.daily_report.chart import render_revenue_chart
from flows.daily_report.kpis import compute_kpis, daily_revenue
from flows.daily_report.render import AUTOMATION, build_report_message
from flows.shared.orders import normalize_orders
from moltbot.config.settings import checked_timezone, get_settings
from moltbot.effects.report import RunReport, finish_run
from moltbot.messages import Message
from tasks.artifacts import publish_markdown, publish_table
from tasks.effects import channel_destinations, deliver, routes_for
from tasks.sources import load_table, refuse_inline_password, source_label

REPORT_ARTIFACT_KEYS = {"report": "daily-report", "top": "daily-report-top-products"}


class DailyReportResult(RunReport):
    """A daily-report run: the day, its KPIs, and where the report went."""

    report_date: str
    timezone: str
    kpis: dict[str, Any]


def yesterday(timezone: str) -> date:
    """The local date before today in `timezone`."""
    return datetime.now(ZoneInfo(timezone)).date() - timedelta(days=1)


@task(name="compute-report", cache_policy=NO_CACHE)
def compute_report(
    raw_orders: Any,
    *,
    source: str,
    report_date: date,
    timezone: str,
    columns: dict[str, str] | None,
    currency: str,
    locale: str,
) -> tuple[dict[str, Any], Message]:
    """Validate the orders, compute the day's KPIs and render the report message with its chart."""
    orders = normalize_orders(
        raw_orders, source_label=source_label(source), timezone=timezone, columns=columns
    )
    kpis = compute_kpis(orders, report_date=report_date)
    chart_png = render_revenue_chart(
        daily_revenue(orders, end_date=report_date), report_date=report_date, currency=currency
    )
    message = build_report_message(
        kpis,
        report_date=report_date,
        timezone=timezone,
        currency=currency,
        locale=locale,
        chart_png=chart_png,
    )
    return kpis, message


@flow(name=AUTOMATION, log_prints=False)
def daily_report(
    source: str,
    report_date: date | None = None,
    channels: list[str | list[str]] | None = None,
    timezone: str | None = None,
    columns: dict[str, str] | None = None,
    query: str | None = None,
    force: bool = False,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Report one day's sales KPIs to chat, e-mail and the outbox, once per channel.

    Args:
        source: orders as a CSV or Parquet path, or a SQLAlchemy URL (with `query`).
        report_date: the local day to report; default yesterday in `timezone`.
        channels: routes: each a channel block name (or `outbox`, for local files), or a list
            of them tried in order (a fallback chain); default `[routes.daily-report]` in
            moltbot.toml, else the outbox.
        timezone: IANA timezone of day boundaries; default `MOLTBOT_TIMEZONE`.
        columns: mapping from the source's column names to the canonical ones.
        query: SQL to run when `source` is a database URL.
        force: send again even where the ledger says the report was already delivered.
        dry_run: compute and render, but deliver nothing and record nothing in the ledger.

    Returns:
        The `DailyReportResult` as JSON: report date, timezone, KPIs, deliveries (one per
        route, in the effects layer's words), artifacts, outcome counts.
    """
    logger = get_run_logger()
    settings = get_settings()
    timezone = checked_timezone(timezone or settings.timezone)
    report_date = report_date or yesterday(timezone)
    routes = routes_for(ENTRY, "info", channels)
    refuse_inline_password(source)

    destinations = channel_destinations(link for route in routes for link in route.links)
    raw_orders = load_table(source, query)
    kpis, message = compute_report(
        raw_orders,
        source=source,
        report_date=report_date,
        timezone=timezone,
        columns=columns,
        currency=settings.currency,
        locale=settings.locale,
    )
    logger.info(
        "Report %s: revenue %s, %s orders%s",
        report_date,
        kpis["revenue"],
        kpis["orders"],
        " (anomaly)" if kpis["anomaly"] else "",
    )

    deliveries = deliver(message, routes, destinations, force=force, dry_run=dry_run)

    # A dry run's preview stays on its own run page: it must not become the latest version of
    # the keyed artifacts analysts follow.
    keys = {"report": None, "top": None} if dry_run else REPORT_ARTIFACT_KEYS
    caption = f"{message.title}{' (dry run)' if dry_run else ''}"
    artifacts = [
        {
            "key": keys["report"],
            "id": publish_markdown(
                keys["report"], message.markdown or message.text, description=caption
            ),
        },
        {
            "key": keys["top"],
            "id": publish_table(
                keys["top"],
                kpis["top_products"],
                description=f"Top products {report_date.isoformat()}",
            ),
        },
    ]
    report = DailyReportResult(
        report_date=report_date.isoformat(),
        timezone=timezone,
        kpis=kpis,
        deliveries=deliveries,
        artifacts=artifacts,
        dry_run=dry_run,
    )
    return finish_run(report)

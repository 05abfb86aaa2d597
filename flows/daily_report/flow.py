"""The daily-report flow: load orders, compute the day's KPIs, deliver once per channel, publish."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger
from prefect.utilities.annotations import quote
from pydantic import Field

from flows.daily_report import ENTRY
from flows.daily_report.chart import render_revenue_chart
from flows.daily_report.kpis import compute_kpis, daily_revenue, data_warnings
from flows.daily_report.render import AUTOMATION, build_artifact_markdown, build_report_message
from flows.shared.orders import normalize_orders
from flows.shared.runs import AUTOMATION_FLOW
from moltbot.config.settings import checked_timezone, get_settings
from moltbot.effects.report import RunReport, finish_run
from moltbot.formatting import format_money, format_number
from moltbot.messages import Message
from moltbot.runlabels import artifact_description, flow_run_namer, label_current_run
from tasks.artifacts import (
    MarkdownArtifact,
    TableArtifact,
    TableColumn,
    publish_artifacts,
    readable_rows,
)
from tasks.effects import deliver, route_destinations, routes_for
from tasks.sources import load_table, refuse_inline_password, source_label

REPORT_ARTIFACT_KEYS = {"report": "daily-report", "top": "daily-report-top-products"}
TOP_PRODUCT_COLUMNS = (
    TableColumn("rank", "#", "순위"),
    TableColumn("product", "Product", "상품"),
    TableColumn("revenue", "Revenue", "매출", kind="money"),
    TableColumn("units", "Units", "수량", kind="number"),
)
_TOP_PRODUCTS = {"en": "top products", "ko": "인기 상품"}


class DailyReportResult(RunReport):
    """A daily-report run: the day, its KPIs, and where the report went."""

    report_date: str
    timezone: str
    kpis: dict[str, Any]
    warnings: list[str] = Field(default_factory=list)


class ComputedReport(NamedTuple):
    """The day's figures, the message for the channels, the artifact's Markdown, warnings."""

    kpis: dict[str, Any]
    message: Message
    artifact_markdown: str
    warnings: list[str]


def yesterday(timezone: str, now: datetime | None = None) -> date:
    """The local date before today (or before `now`) in `timezone`."""
    moment = now or datetime.now(UTC)
    return moment.astimezone(ZoneInfo(timezone)).date() - timedelta(days=1)


def report_date_label(parameters: Mapping[str, Any], timezone: str, now: datetime) -> str:
    """What a run's name says: the day it reports (`2026-12-02`), yesterday by default."""
    given = parameters.get("report_date")
    if isinstance(given, datetime):
        return given.date().isoformat()
    if isinstance(given, date):
        return given.isoformat()
    if given:
        return date.fromisoformat(str(given)).isoformat()
    return yesterday(timezone, now).isoformat()


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
) -> ComputedReport:
    """Validate the orders, compute the day's KPIs and render the report message with its chart."""
    label = source_label(source)
    orders = normalize_orders(raw_orders, source_label=label, timezone=timezone, columns=columns)
    kpis = compute_kpis(orders, report_date=report_date)
    warnings = data_warnings(orders, report_date=report_date, source_label=label)
    chart_png = render_revenue_chart(
        daily_revenue(orders, end_date=report_date),
        report_date=report_date,
        currency=currency,
        locale=locale,
    )
    message = build_report_message(
        kpis,
        report_date=report_date,
        timezone=timezone,
        currency=currency,
        locale=locale,
        chart_png=chart_png,
    )
    artifact_markdown = build_artifact_markdown(
        kpis,
        report_date=report_date,
        timezone=timezone,
        currency=currency,
        locale=locale,
        chart_png=chart_png,
        warnings=warnings,
    )
    return ComputedReport(kpis, message, artifact_markdown, warnings)


@flow(
    name=AUTOMATION,
    flow_run_name=flow_run_namer(AUTOMATION, report_date_label),
    log_prints=False,
    **AUTOMATION_FLOW,
)
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
        route, in the effects layer's words), artifacts, outcome counts, and warnings about
        the data (e.g. no orders at all on the report date: still reported, as a zero day).
    """
    label_current_run(AUTOMATION, dry_run=dry_run)
    logger = get_run_logger()
    settings = get_settings()
    timezone = checked_timezone(timezone or settings.timezone)
    report_date = report_date or yesterday(timezone)
    routes = routes_for(ENTRY, "info", channels)
    refuse_inline_password(source)

    destinations = route_destinations(link for route in routes for link in route.links)
    raw_orders = load_table(source, query)
    kpis, message, artifact_markdown, warnings = compute_report(
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
        format_money(kpis["revenue"], settings.currency),
        format_number(kpis["orders"]),
        " (anomaly)" if kpis["anomaly"] else "",
    )
    for warning in warnings:
        logger.warning("Report %s: %s", report_date, warning)

    deliveries = deliver(message, routes, destinations, force=force, dry_run=dry_run)

    # A dry run's preview stays on its own run page: it must not become the latest version of
    # the keyed artifacts analysts follow.
    keys = {"report": None, "top": None} if dry_run else REPORT_ARTIFACT_KEYS
    day = report_date.isoformat()
    notes = [f"⚠ {warning}" for warning in warnings]
    top_rows = readable_rows(
        [{"rank": rank, **row} for rank, row in enumerate(kpis["top_products"], start=1)],
        TOP_PRODUCT_COLUMNS,
        locale=settings.locale,
        currency=settings.currency,
    )
    published = [
        MarkdownArtifact(
            keys["report"],
            artifact_markdown,
            artifact_description(AUTOMATION, day, message.title, *notes, dry_run=dry_run),
        ),
        TableArtifact(
            keys["top"],
            top_rows,
            artifact_description(
                AUTOMATION,
                day,
                _TOP_PRODUCTS.get(settings.locale, _TOP_PRODUCTS["en"]),
                *notes,
                dry_run=dry_run,
            ),
        ),
    ]
    artifacts = [
        {"key": artifact.key, "id": artifact_id}
        for artifact, artifact_id in zip(
            published, publish_artifacts(quote(published)), strict=True
        )
    ]
    report = DailyReportResult(
        report_date=report_date.isoformat(),
        timezone=timezone,
        kpis=kpis,
        warnings=warnings,
        deliveries=deliveries,
        artifacts=artifacts,
        dry_run=dry_run,
    )
    return finish_run(report)

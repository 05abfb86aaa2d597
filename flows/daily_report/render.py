"""Daily-report rendering: one Message with Slack blocks, HTML e-mail, Markdown and chart."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from flows.daily_report import ENTRY
from moltbot.messages import SLACK_SECTION_LIMIT, Attachment, Message
from moltbot.templating import render_template
from tasks.artifacts import data_uri

AUTOMATION = "daily-report"
TEMPLATES = Path(__file__).parent / "templates"
CHART_CID = "revenue-chart"
_WARNING_LABEL = {"en": "Warning", "ko": "경고"}


def report_key(report_date: date) -> str:
    """The logical idempotency key of one day's report."""
    return f"{AUTOMATION}:{report_date.isoformat()}"


def report_file_stem(report_date: date) -> str:
    """Base name of the report's files in the outbox."""
    return f"daily-report-{report_date.isoformat()}"


def _slack_blocks(title: str, summary: str, top: str, timezone: str) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150], "emoji": True}},
        {"type": "section", "text": {"type": "mrkdwn", "text": summary[:SLACK_SECTION_LIMIT]}},
    ]
    if top.strip():
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": top[:SLACK_SECTION_LIMIT]}}
        )
    blocks.append(
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": f"moltbot daily-report · {timezone}"}],
        }
    )
    return blocks


def build_report_message(
    kpis: dict[str, Any],
    *,
    report_date: date,
    timezone: str,
    currency: str,
    locale: str,
    chart_png: bytes,
) -> Message:
    """Render the day's KPIs into one message for every channel kind.

    Args:
        kpis: the result of `compute_kpis`.
        report_date: the local date reported on.
        timezone: IANA timezone of the day boundaries (shown in the message).
        currency: ISO 4217 code of the amounts.
        locale: `en` or `ko`: which templates and number/date formats.
        chart_png: the 28-day revenue chart, sent inline in e-mail and as a file in the outbox.
    """
    stem = report_file_stem(report_date)
    chart_file = f"{stem}-revenue.png"
    context = _context(kpis, report_date, timezone, currency)
    title = render_template(TEMPLATES, locale, "title.txt.j2", **context).strip()
    summary = render_template(TEMPLATES, locale, "slack.mrkdwn.j2", **context).strip()
    top = render_template(TEMPLATES, locale, "slack_top.mrkdwn.j2", **context).strip()
    markdown = render_template(TEMPLATES, locale, "report.md.j2", chart_file=chart_file, **context)
    html = render_template(
        TEMPLATES, locale, "email.html.j2", title=title, chart_cid=CHART_CID, **context
    )
    return Message(
        key=report_key(report_date),
        rule=ENTRY.rule("report"),
        automation=AUTOMATION,
        severity="warning" if kpis.get("anomaly") else "info",
        title=title,
        text=markdown,
        markdown=markdown,
        html=html,
        slack_blocks=_slack_blocks(title, summary, top if kpis["top_products"] else "", timezone),
        attachments=[
            Attachment(
                filename=chart_file, content_type="image/png", data=chart_png, inline_id=CHART_CID
            )
        ],
        file_stem=stem,
    )


def build_artifact_markdown(
    kpis: dict[str, Any],
    *,
    report_date: date,
    timezone: str,
    currency: str,
    locale: str,
    chart_png: bytes,
    warnings: list[str] | None = None,
) -> str:
    """The report as the Prefect UI shows it: the outbox's Markdown with the chart inside.

    The outbox's Markdown names the chart's file beside it, which the UI cannot load; here the
    chart is a `data:` URI, which both Prefect UIs render. The warnings (e.g. no orders on the
    day) stand under the title, where nobody reads past them.

    Args:
        kpis: the result of `compute_kpis`.
        report_date: the local date reported on.
        timezone: IANA timezone of the day boundaries.
        currency: ISO 4217 code of the amounts.
        locale: `en` or `ko`.
        chart_png: the 28-day revenue chart.
        warnings: lines from `data_warnings`.
    """
    markdown = render_template(
        TEMPLATES,
        locale,
        "report.md.j2",
        chart_file=data_uri(chart_png, "image/png"),
        **_context(kpis, report_date, timezone, currency),
    )
    if not warnings:
        return markdown
    title, _, body = markdown.partition("\n")
    label = _WARNING_LABEL.get(locale, _WARNING_LABEL["en"])
    notes = "\n".join(f"> ⚠ **{label}:** {line}  " for line in warnings)
    return f"{title}\n\n{notes}\n{body}"


def _context(
    kpis: dict[str, Any], report_date: date, timezone: str, currency: str
) -> dict[str, Any]:
    return {"kpis": kpis, "report_date": report_date, "timezone": timezone, "currency": currency}

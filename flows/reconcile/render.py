"""Reconcile's rendering: the alert about new omissions, the run summary, the table's columns."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from flows.reconcile import ENTRY
from flows.reconcile.checks import AUTOMATION, REASONS, Omission, Rate, alert_key
from moltbot.messages import SLACK_SECTION_LIMIT, Message, slack_sections
from moltbot.templating import render_template
from tasks.artifacts import TableColumn

TEMPLATES = Path(__file__).parent / "templates"
# Omissions an alert lists one by one; the artifact table lists every one.
ALERT_LISTED = 20

OMISSION_COLUMNS = (
    TableColumn("automation", "Automation", "자동화"),
    TableColumn("item_text", "Item", "항목"),
    TableColumn("reason", "Reason", "사유", values=REASONS),
    TableColumn("detail", "Detail", "세부"),
    TableColumn("at", "Due since", "발생 시각", kind="datetime"),
    TableColumn("key", "Expected effect key", "예상 작업 키"),
    TableColumn("new", "New", "신규", kind="flag"),
)


def omission_rows(
    omissions: Sequence[Omission], new_ids: set[str], locale: str
) -> list[dict[str, Any]]:
    """The omissions as table rows (plain values; `readable_rows` words and formats them)."""
    return [
        {
            "automation": omission.automation,
            "item_text": omission.item_text(locale),
            "reason": omission.reason,
            "detail": omission.detail,
            "at": omission.at,
            "key": omission.key,
            "new": omission.id in new_ids,
        }
        for omission in omissions
    ]


def _context(
    new: Sequence[Omission],
    rates: Mapping[str, Rate],
    *,
    total: int,
    since_hours: float,
    locale: str,
) -> dict[str, Any]:
    listed = new[:ALERT_LISTED]
    return {
        "new": [omission.as_dict(locale) for omission in listed],
        "new_total": len(new),
        "more": len(new) - len(listed),
        "total": total,
        "since_hours": since_hours,
        "rates": {name: rate.as_dict() for name, rate in rates.items()},
    }


def build_alert_message(
    new: Sequence[Omission],
    rates: Mapping[str, Rate],
    *,
    total: int,
    since_hours: float,
    now: datetime,
    timezone: str,
    locale: str,
) -> Message:
    """The one alert of a run that found new omissions; keyed by their ids (`alert_key`).

    Args:
        new: the omissions not alerted before (the alert lists the first `ALERT_LISTED`).
        rates: the omission rate per automation.
        total: every omission found, new or known.
        since_hours: the period looked at.
        now: the moment of the check (the local date names the outbox file).
        timezone: IANA timezone of the times shown.
        locale: `en` or `ko`.
    """
    context = _context(new, rates, total=total, since_hours=since_hours, locale=locale)
    title = render_template(TEMPLATES, locale, "title.txt.j2", **context).strip()
    markdown = render_template(TEMPLATES, locale, "alert.md.j2", title=title, **context)
    lines = render_template(TEMPLATES, locale, "slack.mrkdwn.j2", **context)
    key = alert_key(new)
    local = now.astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%d-%H%M")
    return Message(
        key=key,
        rule=ENTRY.rule("omissions"),
        automation=AUTOMATION,
        severity="warning",
        title=title,
        text=markdown,
        markdown=markdown,
        slack_blocks=[
            {"type": "header", "text": {"type": "plain_text", "text": title[:150], "emoji": True}},
            *slack_sections([line[:SLACK_SECTION_LIMIT] for line in lines.splitlines() if line]),
        ],
        file_stem=f"{AUTOMATION}-{local}-{key.rsplit(':', 1)[-1][:8]}",
    )


def run_summary(
    locale: str,
    *,
    new: Sequence[Omission],
    rates: Mapping[str, Rate],
    total: int,
    since_hours: float,
    deliveries: Sequence[Mapping[str, Any]],
    dry_run: bool,
) -> str:
    """The run's markdown artifact: omission rate per automation, what was alerted."""
    context = _context(new, rates, total=total, since_hours=since_hours, locale=locale)
    return render_template(
        TEMPLATES, locale, "run_summary.md.j2", deliveries=deliveries, dry_run=dry_run, **context
    )

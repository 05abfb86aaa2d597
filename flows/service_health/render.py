"""Service-health rendering: one Message per severity (Slack blocks, e-mail, Markdown)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from flows.service_health import ENTRY
from flows.service_health.plan import Severity, Transition, alert_digest
from moltbot.messages import Message
from moltbot.messages import Severity as MessageSeverity
from moltbot.runlabels import local_minute
from moltbot.templating import render_alert

AUTOMATION = "service-health"
TEMPLATES = Path(__file__).parent / "templates"

MESSAGE_SEVERITY: dict[Severity, MessageSeverity] = {
    "down": "critical",
    "degraded": "warning",
    "recovered": "info",
}
# Services named in a title; the body lists them all.
TITLE_NAMES = 3


def message_key(severity: Severity, digest: str) -> str:
    """The logical idempotency key of one severity's alert (the channel is added on delivery)."""
    return f"{AUTOMATION}:{severity}:{digest}"


def transition_record(item: Transition, timezone: str) -> dict[str, Any]:
    """A transition as the templates and the run result see it (local times as text)."""
    return {
        "service": item.service,
        "from": item.before,
        "to": item.after,
        "status_code": item.status_code,
        "latency_ms": item.latency_ms,
        "threshold_ms": item.threshold_ms,
        "reason": item.reason,
        "failures": item.failures,
        "down_since": local_minute(item.down_since, timezone) if item.down_since else None,
        "lasted_seconds": item.lasted_seconds,
        # 10, not 10.0: a whole number of seconds reads as one.
        "timeout_seconds": (
            int(item.timeout_seconds)
            if float(item.timeout_seconds).is_integer()
            else item.timeout_seconds
        ),
    }


def build_alert_message(
    severity: Severity,
    transitions: Sequence[Transition],
    *,
    counts: dict[str, int],
    now: datetime,
    timezone: str,
    locale: str,
) -> Message:
    """Render one severity's alert: every service that changed that way, and the counts.

    Args:
        severity: `down`, `degraded` or `recovered`.
        transitions: the severity's changes from `plan_health`.
        counts: how many checked services are in each state now.
        now: the run's moment (shown in local time).
        timezone: IANA timezone of the times shown.
        locale: `en` or `ko`.
    """
    digest = alert_digest(severity, transitions)
    items = [transition_record(item, timezone) for item in transitions]
    names = [item["service"] for item in items]
    checked = local_minute(now, timezone)
    context = {
        "severity": severity,
        "items": items,
        "total": len(items),
        "title_names": names[:TITLE_NAMES],
        "more_names": max(len(names) - TITLE_NAMES, 0),
        "counts": counts,
        "checked": checked,
        "timezone": timezone,
    }
    alert = render_alert(TEMPLATES, locale, **context)
    title, markdown, html, blocks = alert.title, alert.markdown, alert.html, alert.slack_blocks
    return Message(
        key=message_key(severity, digest),
        rule=ENTRY.rule(severity),
        automation=AUTOMATION,
        severity=MESSAGE_SEVERITY[severity],
        title=title,
        text=markdown,
        markdown=markdown,
        html=html,
        slack_blocks=blocks,
        file_stem=f"{AUTOMATION}-{severity}-{checked[:10]}-{digest[:8]}",
    )

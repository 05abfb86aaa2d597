"""Health rendering: the one ops message of a run whose checks changed (Slack, e-mail, Markdown)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from flows.health import ENTRY
from flows.health.plan import Change, HealthPlan
from moltbot.doctor import Status
from moltbot.messages import Message
from moltbot.messages import Severity as MessageSeverity
from moltbot.runlabels import local_minute
from moltbot.templating import render_alert

AUTOMATION = "health"
TEMPLATES = Path(__file__).parent / "templates"

MESSAGE_SEVERITY: dict[Status, MessageSeverity] = {
    "fail": "critical",
    "warn": "warning",
    "ok": "info",
}
# Checks named in a title; the body lists them all.
TITLE_NAMES = 3


def change_record(change: Change) -> dict[str, Any]:
    """A change as the templates and the run result see it."""
    return {
        "name": change.name,
        "before": change.before,
        "after": change.after,
        "detail": change.detail,
        "action": change.action,
    }


def message_key(plan: HealthPlan) -> str:
    """The logical idempotency key of the run's message (the channel is added on delivery)."""
    return f"{AUTOMATION}:{plan.key_digest()}"


def build_message(
    plan: HealthPlan,
    *,
    worst: Status,
    counts: Mapping[str, int],
    now: datetime,
    timezone: str,
    locale: str,
) -> Message:
    """Render the message announcing `plan`'s changes (its severity: the worst status now).

    Args:
        plan: the run's changes (at least one).
        worst: the worst status of all checks now.
        counts: how many checks have each status now.
        now: the run's moment (shown in local time).
        timezone: IANA timezone of the time shown.
        locale: `en` or `ko`.
    """
    items = [change_record(change) for change in plan.changes]
    names = [item["name"] for item in items]
    checked = local_minute(now, timezone)
    alert = render_alert(
        TEMPLATES,
        locale,
        worst=worst,
        items=items,
        total=len(items),
        names=names[:TITLE_NAMES],
        more_names=max(len(names) - TITLE_NAMES, 0),
        counts=dict(counts),
        checked=checked,
        timezone=timezone,
    )
    digest = plan.key_digest()
    return Message(
        key=message_key(plan),
        rule=ENTRY.rule("changed"),
        automation=AUTOMATION,
        severity=MESSAGE_SEVERITY[worst],
        title=alert.title,
        text=alert.markdown,
        markdown=alert.markdown,
        html=alert.html,
        slack_blocks=alert.slack_blocks,
        file_stem=f"{AUTOMATION}-{checked[:10]}-{digest[:8]}",
    )

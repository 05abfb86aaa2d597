"""Error-spike rendering: one Message per spike or clear (Slack blocks, e-mail, Markdown)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from flows.error_spike import ENTRY
from flows.error_spike.spikes import TopSignature, Transition, WindowCheck
from moltbot.masking import mask_text
from moltbot.messages import Message, Severity
from moltbot.templating import render_alert

AUTOMATION = "error-spike"
TEMPLATES = Path(__file__).parent / "templates"

MESSAGE_SEVERITY: dict[str, Severity] = {"spike": "critical", "cleared": "info"}


def local_time(epoch: int, timezone: str, *, with_date: bool = True) -> str:
    """`2026-03-01 09:05` (or `09:05`) in `timezone`."""
    moment = datetime.fromtimestamp(epoch, UTC).astimezone(ZoneInfo(timezone))
    return moment.strftime("%Y-%m-%d %H:%M" if with_date else "%H:%M")


def check_context(check: WindowCheck, window_seconds: int, timezone: str) -> dict[str, Any]:
    """A judged window as template values, with its local start and end."""
    return {
        **asdict(check),
        "window_from": local_time(check.start, timezone),
        "window_to": local_time(check.start + window_seconds, timezone, with_date=False),
    }


def build_message(
    transition: Transition,
    *,
    signatures: list[TopSignature],
    more_signatures: int,
    window_seconds: int,
    timezone: str,
    locale: str,
) -> Message:
    """Render one source's spike or clear.

    Args:
        transition: what changed (its `key` is the message's idempotency key).
        signatures: the top signatures of the spiking windows (spikes only), samples masked.
        more_signatures: how many further signatures there were.
        window_seconds: the counting window.
        timezone: IANA timezone of the times shown.
        locale: `en` or `ko`.
    """
    lasted = transition.lasted_seconds
    context = {
        "severity": transition.severity,
        "source": transition.source,
        "check": check_context(transition.check, window_seconds, timezone),
        "window_minutes": window_seconds // 60,
        "timezone": timezone,
        "spike_from": local_time(transition.spike_start, timezone),
        "spike_to": (
            local_time(transition.spike_end, timezone) if transition.spike_end is not None else ""
        ),
        "lasted_minutes": 0 if lasted is None else lasted // 60,
        "errors_during": transition.errors_during or 0,
        # Samples were masked when stored; masking is idempotent, and this is what people read.
        "signatures": [{**asdict(item), "sample": mask_text(item.sample)} for item in signatures],
        "more": more_signatures,
    }
    alert = render_alert(TEMPLATES, locale, items_template="slack_signatures.mrkdwn.j2", **context)
    title, markdown, html, blocks = alert.title, alert.markdown, alert.html, alert.slack_blocks
    stamp = datetime.fromtimestamp(transition.spike_start, UTC).strftime("%Y%m%dT%H%M")
    return Message(
        key=transition.key,
        rule=ENTRY.rule(transition.severity),
        automation=AUTOMATION,
        severity=MESSAGE_SEVERITY[transition.severity],
        title=title,
        text=markdown,
        markdown=markdown,
        html=html,
        slack_blocks=blocks,
        file_stem=f"{AUTOMATION}-{transition.severity}-{_file_safe(transition.source)}-{stamp}",
    )


def _file_safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in name)[:60]

"""Quiet hours: which message waits until when, and the one digest held messages become."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from moltbot.config.alerting import QuietHoursConfig, QuietWindow, severity_rank
from moltbot.effects.model import Route
from moltbot.messages import Message, slack_sections
from moltbot.templating import render_template

TEMPLATES = Path(__file__).parent / "templates"
DIGEST_AUTOMATION = "on-call"
DIGEST_RULE = "on-call.quiet-digest"
"""The rule the on-call automation declares for digests (`moltbot policy`)."""
# A digest quotes this many lines of each held message's chat text (the e-mail text may say
# more than chat may); the held message itself is in the ledger until the digest is delivered.
DIGEST_LINES_PER_MESSAGE = 6


def quiet_until(now: datetime, window: QuietWindow) -> datetime | None:
    """When the quiet hours around `now` end (aware UTC), or None when `now` is not in them.

    A window whose start is later than its end spans midnight (22:00-08:00). Times are wall
    clock times in the window's timezone, so a window keeps its hours across DST changes.
    """
    zone = ZoneInfo(window.timezone)
    local = now.astimezone(zone)
    clock = local.time().replace(tzinfo=None)
    start, end = window.start, window.end
    if start < end:
        inside = start <= clock < end
        end_day = local.date()
    else:
        inside = clock >= start or clock < end
        end_day = local.date() + timedelta(days=1) if clock >= start else local.date()
    if not inside:
        return None
    return datetime.combine(end_day, end, tzinfo=zone).astimezone(UTC)


def held_until(
    message: Message,
    route: Route,
    now: datetime,
    config: QuietHoursConfig | None,
    default_timezone: str,
) -> datetime | None:
    """When `message` on `route` may go, if it must wait for the end of quiet hours (else None):
    its route has quiet hours now and its severity is below the route's `hold_below`."""
    if config is None:
        return None
    window = config.window_for(route.name, default_timezone)
    if window is None or severity_rank(message.severity) >= severity_rank(window.hold_below):
        return None
    return quiet_until(now, window)


@dataclass(frozen=True)
class HeldMessage:
    """A message the ledger holds for the end of quiet hours.

    Attributes:
        key: its ledger key.
        message: the held message.
        route: its route.
        due_at: when the quiet hours it waits for end (aware UTC).
        held_at: when it was held (aware UTC).
    """

    key: str
    message: Message
    route: Route
    due_at: datetime
    held_at: datetime


@dataclass(frozen=True)
class Digest:
    """One message standing for the held messages of one route and one end of quiet hours.

    Attributes:
        message: the digest (its key names the route, the end and the members, so a member
            held later makes another digest and a re-run makes the same one).
        route: where it goes: the members' route.
        members: the ledger keys of the held messages it delivers.
    """

    message: Message
    route: Route
    members: tuple[str, ...]


def plan_digests(held: Sequence[HeldMessage], *, locale: str, timezone: str) -> list[Digest]:
    """One digest per (route, end of quiet hours) of `held`, oldest first inside each."""
    groups: dict[tuple[tuple[str, ...], datetime], list[HeldMessage]] = {}
    for item in held:
        groups.setdefault((item.route.links, item.due_at), []).append(item)
    digests = []
    for (links, due_at), items in groups.items():
        items = sorted(items, key=lambda item: (item.held_at, item.key))
        route = Route(links, items[0].route.policy)
        members = tuple(item.key for item in items)
        digests.append(
            Digest(_digest_message(items, route, due_at, locale, timezone), route, members)
        )
    return digests


def _digest_message(
    items: list[HeldMessage], route: Route, due_at: datetime, locale: str, timezone: str
) -> Message:
    zone = ZoneInfo(timezone)
    rows = [
        {
            "title": item.message.title,
            "automation": item.message.automation,
            "severity": item.message.severity,
            "held_at": item.held_at.astimezone(zone).strftime("%m-%d %H:%M"),
            "lines": [
                line
                for line in item.message.chat_text().splitlines()
                if line.strip() and line.strip() != item.message.title.strip()
            ][:DIGEST_LINES_PER_MESSAGE],
        }
        for item in items
    ]
    ends = due_at.astimezone(zone).strftime("%Y-%m-%d %H:%M")
    title = render_template(
        TEMPLATES, locale, "digest_title.txt.j2", count=len(items), ends=ends
    ).strip()
    text = render_template(TEMPLATES, locale, "digest.md.j2", items=rows, ends=ends).strip()
    members = hashlib.sha256(json.dumps([item.key for item in items]).encode()).hexdigest()[:12]
    stamp = due_at.astimezone(UTC).strftime("%Y%m%dT%H%MZ")
    most_urgent = max((item.message.severity for item in items), key=severity_rank)
    return Message(
        key=f"{DIGEST_AUTOMATION}:digest:{route.name}:{stamp}:{members}",
        automation=DIGEST_AUTOMATION,
        rule=DIGEST_RULE,
        severity=most_urgent,
        title=title,
        text=text,
        markdown=f"# {title}\n\n{text}\n",
        slack_blocks=[
            {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
            *slack_sections(text.splitlines()),
        ],
        file_stem=f"{DIGEST_AUTOMATION}-digest-{route.name}-{stamp}-{members}",
    )

"""Announcements to ops: effects that became dead or in doubt, one message per automation."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path

from moltbot.effects.executors import message_intent
from moltbot.effects.model import Intent, Outcome, Route
from moltbot.messages import Message, slack_sections
from moltbot.templating import render_template

TEMPLATES = Path(__file__).parent / "templates"
logger = logging.getLogger("moltbot.effects")


def ops_message(items: list[tuple[Intent, Outcome]], *, locale: str) -> list[Message]:
    """One message per automation listing its dead and in-doubt effects (keys, routes, masked
    errors; never payloads). Its key is derived from the effects' keys, so an announcement is
    itself sent at most once per route."""
    by_automation: dict[str, list[tuple[Intent, Outcome]]] = {}
    for intent, outcome in items:
        by_automation.setdefault(intent.automation, []).append((intent, outcome))
    messages = []
    for automation, group in by_automation.items():

        def rows(status: str, group: list[tuple[Intent, Outcome]] = group) -> list[dict]:
            return [
                {
                    "key": intent.key,
                    "kind": intent.kind,
                    "label": intent.label,
                    "route": intent.route.describe(),
                    "error": outcome.error or "",
                }
                for intent, outcome in group
                if outcome.status == status
            ]

        dead, in_doubt = rows("dead"), rows("in_doubt")
        text = render_template(
            TEMPLATES, locale, "ops.md.j2", automation=automation, dead=dead, in_doubt=in_doubt
        ).strip()
        title = render_template(
            TEMPLATES, locale, "ops_title.txt.j2", automation=automation, count=len(group)
        ).strip()
        digest = hashlib.sha256(
            json.dumps(sorted(intent.key for intent, _ in group)).encode()
        ).hexdigest()[:16]
        messages.append(
            Message(
                key=f"moltbot-ops:{automation}:{digest}",
                automation=automation,
                severity="critical",
                title=title,
                text=text,
                markdown=f"# {title}\n\n{text}\n",
                slack_blocks=slack_sections(text.splitlines()),
                file_stem=f"moltbot-ops-{automation}-{digest}",
            )
        )
    return messages


def announcer(
    ops_route: Route, *, locale: str, send: Callable[[list[Intent]], list[Outcome]]
) -> Callable[[list[tuple[Intent, Outcome]]], None]:
    """The `announce` hook of a runtime: ops messages performed through `send` (the same
    layer without an announcer, so a failing ops channel is recorded, never announced in a
    loop)."""

    def announce(items: list[tuple[Intent, Outcome]]) -> None:
        intents = [
            message_intent(message, ops_route) for message in ops_message(items, locale=locale)
        ]
        for outcome in send(intents):
            if not outcome.settled:
                logger.error(
                    "ops announcement %s: %s (%s)", outcome.key, outcome.status, outcome.error
                )

    return announce

"""Announcements to ops: effects that became dead or in doubt, one message per automation."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path

from moltbot.effects.executors import Executor, message_intent
from moltbot.effects.model import Intent, Outcome, Route
from moltbot.effects.perform import EffectsRuntime, perform
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


def attach_announcer(
    runtime: EffectsRuntime,
    ops_route: Route,
    *,
    locale: str,
    load: Callable[[list[str]], Mapping[str, Executor]],
) -> None:
    """Make `runtime` announce its dead and in-doubt effects on `ops_route`.

    The announcements go through the same layer without an announcer, so a failing ops channel
    is recorded, never announced in a loop; `load` builds the ops channels the runtime lacks,
    only when there is something to announce.
    """

    def announce(items: list[tuple[Intent, Outcome]]) -> None:
        missing = [link for link in ops_route.links if link not in runtime.executors]
        # Announcements are urgent by nature: never held for quiet hours nor escalated again.
        ops = replace(
            runtime,
            announce=None,
            hold_until=None,
            watch=None,
            executors={**runtime.executors, **load(missing)},
        )
        messages = ops_message(items, locale=locale)
        for outcome in perform([message_intent(m, ops_route) for m in messages], ops):
            if not outcome.settled:
                logger.error(
                    "ops announcement %s: %s (%s)", outcome.key, outcome.status, outcome.error
                )

    runtime.announce = announce

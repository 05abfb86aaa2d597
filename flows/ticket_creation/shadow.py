"""ticket-creation in shadow mode: the input snapshot a real event run records, and its replay.

Webhook events are not copied: the snapshot names their inbox entries, which the inbox keeps
until `moltbot prune` removes settled ones; a run whose entries are gone is reported as such.
Events given as a parameter or a file are kept in the snapshot. What the plan read besides the
events is kept too (the issues the label search found, the ledger rows of the drafts' keys,
the handled-occurrence counts, the drafts a reviewer rejected), so the replay decides create
or comment as that run did. Sheet (form) runs record nothing yet.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from flows.ticket_creation.drafts import AUTOMATION, read_events_file
from flows.ticket_creation.plan import LedgerEntry, Plan, plan_drafts, reject
from flows.ticket_creation.render import comment_body
from moltbot.errors import InputError
from moltbot.shadow import InputsGone, ShadowEffect, effect, fields_text
from moltbot.state.recorded_inputs import RecordedRun

KIND = "events"
_ISSUES, _COMMENTS = "jira", "jira-comments"


def snapshot(
    *,
    events: list[Any] | None,
    events_file: str | None,
    inbox_ids: list[str] | None,
    mapping: str | None,
    existing: dict[str, str],
    entries: dict[str, LedgerEntry],
    seen: dict[str, int],
    rejected: list[str],
    timezone: str,
    locale: str,
) -> dict[str, Any]:
    """What `replay` needs to draft and plan the run's events again."""
    source: dict[str, Any]
    if inbox_ids is not None:
        source = {"inbox_ids": list(inbox_ids)}
    elif events_file is not None:
        source = {"records": [list(pair) for pair in read_events_file(events_file)]}
    else:
        source = {"records": [[f"events[{i}]", record] for i, record in enumerate(events or [])]}
    return {
        **source,
        "mapping": mapping,
        "existing": existing,
        "entries": {
            key: [entry.status, entry.kind, entry.remote_id, entry.fresh]
            for key, entry in entries.items()
        },
        "seen": seen,
        "rejected": rejected,
        "timezone": timezone,
        "locale": locale,
    }


def effects(plan: Plan, seen: dict[str, int], *, locale: str, timezone: str) -> list[ShadowEffect]:
    """The issues and comments a run of `plan` creates (issues found by label, which are only
    recorded, send nothing and are left out)."""
    from flows.ticket_creation.effects import preview_intents

    body = partial(comment_body, locale=locale, timezone=timezone)
    found: list[ShadowEffect] = []
    for intent in preview_intents(plan, _ISSUES, _COMMENTS, body, seen):
        if intent.payload is None:
            continue
        if intent.kind == "comment":
            found.append(effect(intent.key, "comment", intent.target, intent.payload["body"]))
        else:
            text = fields_text(intent.payload["fields"])
            found.append(effect(intent.key, "ticket", intent.target, text))
    return found


def _records(payload: dict[str, Any]) -> list[tuple[str, Any]]:
    if "inbox_ids" not in payload:
        return [(origin, record) for origin, record in payload["records"]]
    from tasks.inbox import read_inbox_events

    try:
        # The run's own reading of its inbox entries (the task's body, outside a flow run).
        events = read_inbox_events.fn(payload["inbox_ids"])
    except InputError:  # an entry the inbox no longer has
        raise InputsGone("its webhook inbox entries were pruned: the events are gone") from None
    # Origins as the run named them: it read the entries' events as a list.
    return [(f"events[{i}]", event) for i, event in enumerate(events)]


def replay(run: RecordedRun) -> list[ShadowEffect]:
    """The issues and comments the current mappings and templates make of a recorded run's
    events (nothing is searched, created or recorded)."""
    from flows.ticket_creation.flow import draft_tickets, event_items
    from flows.ticket_creation.mapping import load_mappings
    from moltbot.config.project import ProjectConfig

    payload = run.payload
    locale, timezone = payload["locale"], payload["timezone"]
    mappings = load_mappings(ProjectConfig.load(), locale=locale)
    items = event_items(
        _records(payload), mappings=mappings, mapping=payload["mapping"], timezone=timezone
    )
    drafts = draft_tickets.fn(items, timezone=timezone, locale=locale)
    entries = {key: LedgerEntry(*values) for key, values in payload["entries"].items()}
    plan = plan_drafts(drafts, payload["existing"], entries)
    if payload["rejected"]:
        plan = reject(plan, set(payload["rejected"]))
    return effects(plan, payload["seen"], locale=locale, timezone=timezone)


__all__ = ["AUTOMATION", "KIND", "effects", "replay", "snapshot"]

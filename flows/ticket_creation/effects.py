"""Ticket-creation's effects as intents (issues, recurrence comments, found issues to record) and
what their outcomes mean for each draft; plain functions, performed by the effects layer."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from blocks.jira import JiraCredentials
from flows.ticket_creation import ENTRY
from flows.ticket_creation.drafts import AUTOMATION, TicketDraft
from flows.ticket_creation.plan import COMMENT, TICKET, LedgerEntry, Plan, PlannedDraft
from moltbot.effects import Intent, Outcome, Route
from moltbot.effects.services import JiraCommentExecutor, JiraIssueExecutor
from tasks.effects import EffectState, count_done, perform_effects


def ledger_entries(states: Mapping[str, EffectState]) -> dict[str, LedgerEntry]:
    """The plan's view of the ledger rows read before planning (`held`: fresh in the plan)."""
    return {
        key: LedgerEntry(state.status, state.kind, state.remote_id, state.held)
        for key, state in states.items()
    }


def record_intents(plan: Plan, issue_link: str) -> list[Intent]:
    """Issues found in Jira by their label that the ledger does not record as done: recorded,
    nothing performed (the issue key and, for `record` drafts, the occurrence that made it)."""
    targets = {planned.draft.ledger_key: planned.draft.target for planned in plan.drafts}
    intents = [
        _known(key, targets[key], issue, issue_link, label="found issue")
        for key, issue in plan.found.items()
    ]
    for planned in plan.having("record"):
        assert planned.issue_key is not None  # a record action always has its issue
        draft = planned.draft
        intents.append(_known(draft.occurrence_key, draft.target, planned.issue_key, issue_link,
                              label=draft.id))  # fmt: skip
    return intents


def _known(key: str, target: str, issue: str, link: str, *, label: str) -> Intent:
    return Intent(
        key=key,
        automation=AUTOMATION,
        kind=TICKET,
        target=target,
        payload=None,
        route=Route((link,)),
        label=label,
        known_remote_id=issue,
        rule_id=ENTRY.rule("issue"),
    )


def creators(plan: Plan) -> list[TicketDraft]:
    """The drafts whose issue this run creates: planned `create`, and the first occurrence of a
    key another run holds (the layer waits for that run, or takes over if it died)."""
    held_first: dict[str, TicketDraft] = {}
    for planned in plan.having("in_progress"):
        current = held_first.get(planned.draft.ledger_key)
        if current is None or planned.draft.occurred_at < current.occurred_at:
            held_first[planned.draft.ledger_key] = planned.draft
    firsts = {draft.id for draft in held_first.values()}
    return [
        planned.draft
        for planned in plan.drafts
        if planned.action == "create" or planned.draft.id in firsts
    ]


def create_intents(drafts: Sequence[TicketDraft], issue_link: str) -> list[Intent]:
    """One issue per draft, keyed by its issue ledger key, settling its occurrence key with it."""
    return [
        Intent(
            key=draft.ledger_key,
            automation=AUTOMATION,
            kind=TICKET,
            target=draft.target,
            payload={"fields": draft.fields, "label": draft.label},
            route=Route((issue_link,)),
            label=draft.id,
            companion_keys=(draft.occurrence_key,),
            rule_id=ENTRY.rule("issue"),
        )
        for draft in drafts
    ]


def comment_intents(
    comments: Sequence[PlannedDraft],
    issues: Mapping[str, str],
    seen: Mapping[str, int],
    comment_link: str,
    body: Callable[[TicketDraft, int], str],
) -> tuple[list[Intent], dict[str, int]]:
    """One comment per recurring occurrence, in time order, with its ``N times in total``.

    Args:
        comments: the drafts planned `comment`.
        issues: issue ledger key -> issue key (existing, or created in this run).
        seen: issue ledger key -> occurrences the ledger records as handled.
        comment_link: the comment destination's name.
        body: the comment text for a draft and its N.

    Returns:
        The intents (drafts whose issue is unknown are left out) and each draft's N.
    """
    counts = dict(seen)
    intents: list[Intent] = []
    numbers: dict[str, int] = {}
    for planned in sorted(comments, key=lambda item: item.draft.occurred_at):
        draft = planned.draft
        issue = planned.issue_key or issues.get(draft.ledger_key)
        if issue is None:
            continue
        # An issue that exists was seen at least once, even if an older ledger lost it.
        number = max(counts.get(draft.ledger_key, 0), 1) + 1
        counts[draft.ledger_key] = number
        numbers[draft.id] = number
        intents.append(
            Intent(
                key=draft.occurrence_key,
                automation=AUTOMATION,
                kind=COMMENT,
                target=draft.target,
                payload={"issue_key": issue, "body": body(draft, number)},
                route=Route((comment_link,)),
                label=draft.id,
                rule_id=ENTRY.rule("recurrence"),
            )
        )
    return intents, numbers


def draft_outcomes(
    plan: Plan,
    created: Sequence[Outcome],
    commented: Sequence[Outcome],
    recorded: Sequence[Outcome],
    numbers: Mapping[str, int],
) -> dict[str, dict[str, Any]]:
    """Each acted-on draft's outcome in the run result's words (created, recovered,
    commented, unchanged, in_progress, failed), with the effect's own status beside it."""
    by_id = {planned.draft.id: planned for planned in plan.drafts}
    result: dict[str, dict[str, Any]] = {}

    def entry(draft: TicketDraft, status: str, outcome: Outcome, **details: Any) -> None:
        result[draft.id] = {
            "status": status,
            "effect": outcome.status,
            "draft": draft.id,
            "item": draft.item,
            "dedup_key": draft.dedup_key,
            **details,
        }

    for outcome in recorded:
        planned = by_id.get(outcome.label)
        if planned is not None:
            entry(planned.draft, "recovered", outcome, key=outcome.remote_id)
    for outcome in [*created, *commented]:
        draft = by_id[outcome.label].draft
        issue = _issue_of(outcome.remote_id)
        if outcome.status == "done" and outcome.kind == COMMENT:
            entry(draft, "commented", outcome, key=issue, recovered=outcome.recovered,
                  comment_id=(outcome.remote_id or "").rpartition("/")[2],
                  seen=numbers[draft.id])  # fmt: skip
        elif outcome.status == "done":
            entry(draft, "recovered" if outcome.recovered else "created", outcome, key=issue)
        elif outcome.status == "already_done":
            entry(draft, "unchanged", outcome, key=issue)
        elif outcome.status == "held":
            entry(draft, "in_progress", outcome, held_by=outcome.held_by)
        else:
            entry(draft, "failed", outcome, error=outcome.error, transient=outcome.transient)
    creation = {by_id[o.label].draft.ledger_key: o for o in created}
    for planned in plan.having("comment", "in_progress"):
        draft = planned.draft
        if draft.id in result:
            continue
        # A later occurrence of an issue this run did not get to create: it waits for it.
        first = creation.get(draft.ledger_key)
        waiting = {"draft": draft.id, "item": draft.item, "dedup_key": draft.dedup_key}
        if first is not None and first.status == "held":
            result[draft.id] = {
                "status": "in_progress",
                "effect": "held",
                "held_by": first.held_by,
                **waiting,
            }
        else:
            result[draft.id] = {
                "status": "failed",
                "effect": "failed",
                "transient": True,
                "error": "its issue was not created in this run",
                **waiting,
            }
    return result


def _issue_of(remote_id: str | None) -> str | None:
    return None if remote_id is None else remote_id.partition("/")[0]


def seen_prefixes(comments: Sequence[PlannedDraft]) -> list[str]:
    """The ledger key prefixes whose done rows count an issue's handled occurrences."""
    return list(dict.fromkeys(f"{planned.draft.ledger_key}:seen:" for planned in comments))


def browse_url(server_url: str, issue_key: str) -> str:
    """The issue's page: ``<site>/browse/OPS-12``."""
    return f"{server_url.rstrip('/')}/browse/{issue_key}"


def preview_intents(
    plan: Plan,
    issue_link: str,
    comment_link: str,
    body: Callable[[TicketDraft, int], str],
    seen: Mapping[str, int],
) -> list[Intent]:
    """Every effect a real run of `plan` would hand the layer: the issues found to record,
    the issues to create, and the recurrence comments (on an issue this run would create, the
    comment names the draft creating it)."""
    creating = creators(plan)
    issues = {draft.ledger_key: f"<issue of {draft.id}>" for draft in creating}
    comments, _ = comment_intents(plan.having("comment"), issues, seen, comment_link, body)
    return [*record_intents(plan, issue_link), *create_intents(creating, issue_link), *comments]


def dry_run_effects(
    plan: Plan,
    jira: JiraCredentials | None,
    jira_block: str | None,
    *,
    body: Callable[[TicketDraft, int], str],
) -> list[Outcome]:
    """A dry run's outcomes of `plan`, each previewing its issue's fields or its comment.

    Nothing is created, commented, claimed or recorded; Jira is not called (a dry run may
    have no Jira block: the destination is then named ``jira:(no block)``).

    Args:
        plan: the plan a real run would perform.
        jira: the Jira block, if the run has one.
        jira_block: its name.
        body: the comment text for a draft and its N (see `comment_body`).
    """
    name = jira_block or "(no block)"
    issues = JiraIssueExecutor(jira, name)
    comments = JiraCommentExecutor(jira, name)
    planned_comments = plan.having("comment")
    seen = count_done(AUTOMATION, seen_prefixes(planned_comments)) if planned_comments else {}
    intents = preview_intents(
        plan,
        issues.name,
        comments.name,
        body,
        {prefix.removesuffix(":seen:"): count for prefix, count in seen.items()},
    )
    destinations = {issues.name: issues, comments.name: comments}
    return perform_effects(intents, destinations, dry_run=True)

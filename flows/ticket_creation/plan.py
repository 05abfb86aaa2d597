"""What to do with each draft, from the dedup search and the ledger: create, comment or nothing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from flows.ticket_creation.drafts import TicketDraft

TICKET = "ticket"
COMMENT = "comment"

# create:      the first occurrence of a new dedup key: a new issue.
# comment:     a later occurrence of a key whose issue exists (or is created in this run).
# record:      this occurrence created the issue in an earlier run that died before recording
#              it (found by its label): record it, create and comment nothing.
# done:        this occurrence was handled by an earlier run: nothing to do.
# in_progress: another run holds this key's ledger claim right now.
# rejected:    the reviewer did not approve it.
Action = Literal["create", "comment", "record", "done", "in_progress", "rejected"]


@dataclass(frozen=True)
class LedgerEntry:
    """What the ledger says about one key (read before acting).

    Attributes:
        status: ``pending``, ``done``, ``failed`` or ``dead``.
        kind: ``ticket`` (the issue, or the occurrence that created it) or ``comment``.
        remote_id: the issue key (or ``<issue key>/comment/<id>``) once done.
        fresh: a pending claim whose lease has not run out (some run is acting on it now).
    """

    status: str
    kind: str
    remote_id: str | None = None
    fresh: bool = False


@dataclass(frozen=True)
class PlannedDraft:
    """A draft and what this run does with it.

    Attributes:
        draft: the draft.
        action: see `Action`.
        issue_key: the existing issue (comment, record, done), None when it is to be created.
    """

    draft: TicketDraft
    action: Action
    issue_key: str | None = None


@dataclass(frozen=True)
class Plan:
    """Every draft's action, and the issues found that the ledger does not record as done yet.

    Attributes:
        drafts: the planned drafts, in draft order.
        found: issue ledger key -> issue key, for existing issues to record as done.
    """

    drafts: list[PlannedDraft]
    found: dict[str, str]

    def having(self, *actions: Action) -> list[PlannedDraft]:
        """The planned drafts with one of `actions`, in draft order."""
        return [planned for planned in self.drafts if planned.action in actions]


def plan_drafts(
    drafts: Sequence[TicketDraft],
    existing: Mapping[str, str],
    ledger: Mapping[str, LedgerEntry],
) -> Plan:
    """Decide each draft's action.

    An issue exists for a dedup key when the label search found it or the ledger records it as
    done (the ledger wins when the search misses it: no duplicate even if someone removed the
    label). For an existing issue, each occurrence is commented once; the occurrence that
    created it (its ledger row has kind ``ticket``) is only recorded. For a new key, the
    earliest occurrence creates the issue and the later ones comment on it, unless another run
    holds a fresh claim on the key.

    Args:
        drafts: the drafts, in draft order.
        existing: dedup label -> issue key, from the label search (empty when not searched).
        ledger: ledger key -> entry, for the issue and occurrence keys that have rows.
    """
    groups: dict[str, list[TicketDraft]] = {}
    for draft in drafts:
        groups.setdefault(draft.ledger_key, []).append(draft)
    actions: dict[str, PlannedDraft] = {}
    found: dict[str, str] = {}
    for key, group in groups.items():
        issue = ledger.get(key)
        ordered = sorted(group, key=lambda draft: draft.occurred_at)
        issue_key = existing.get(ordered[0].label)
        if issue_key is None and issue is not None and issue.status == "done":
            issue_key = issue.remote_id
        if issue_key is not None:
            if issue is None or issue.status != "done":
                found[key] = issue_key
            for draft in ordered:
                actions[draft.id] = PlannedDraft(
                    draft, _known_issue_action(ledger.get(draft.occurrence_key)), issue_key
                )
        elif issue is not None and issue.status == "pending" and issue.fresh:
            for draft in ordered:
                actions[draft.id] = PlannedDraft(draft, "in_progress")
        else:
            first, *later = ordered
            actions[first.id] = PlannedDraft(first, "create")
            for draft in later:
                actions[draft.id] = PlannedDraft(draft, "comment")
    return Plan([actions[draft.id] for draft in drafts], found)


def _known_issue_action(occurrence: LedgerEntry | None) -> Action:
    if occurrence is None:
        return "comment"
    if occurrence.status == "done":
        return "done"
    if occurrence.kind == TICKET:
        return "record"
    if occurrence.status == "pending" and occurrence.fresh:
        return "in_progress"
    return "comment"


def reject(plan: Plan, draft_ids: set[str]) -> Plan:
    """The plan with the `create` drafts in `draft_ids` rejected, and with them the comments
    planned on the issues they would have created."""
    dropped = {
        planned.draft.ledger_key
        for planned in plan.drafts
        if planned.action == "create" and planned.draft.id in draft_ids
    }
    drafts = [
        replace(planned, action="rejected")
        if planned.action in ("create", "comment")
        and planned.issue_key is None
        and planned.draft.ledger_key in dropped
        else planned
        for planned in plan.drafts
    ]
    return Plan(drafts, plan.found)

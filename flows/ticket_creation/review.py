"""Human review of ticket drafts: the reviewer's input form and how a decision changes the plan."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from prefect.input import RunInput
from pydantic import BaseModel, ConfigDict, Field, create_model

from flows.ticket_creation.drafts import clean_summary
from flows.ticket_creation.mapping import Privacy
from flows.ticket_creation.plan import Plan, PlannedDraft, reject
from moltbot.errors import InputError
from moltbot.masking import mask_text

ReviewStatus = Literal["approved", "timed_out", "not_needed"]


class DraftEdit(BaseModel):
    """A change to one draft before it is created."""

    model_config = ConfigDict(extra="forbid")

    draft: str = Field(description="The draft's id (d3) or its dedup key.")
    summary: str | None = Field(
        default=None, description="New summary (leave empty, or as shown, to keep)."
    )
    priority: str | None = Field(
        default=None, description="New priority name, e.g. Highest, High, Medium, Low, Lowest."
    )


class ReviewDecision(RunInput):
    """The reviewer's answer: create the drafts shown, except those rejected, with edits."""

    reviewer: str = Field(
        min_length=1,
        max_length=200,
        description="Your name or e-mail, as the approvers list names you (recorded in the "
        "audit trail).",
    )
    reason: str = Field(
        default="", max_length=1000, description="Why (recorded in the audit trail)."
    )
    approve: bool = Field(
        default=True,
        description="Create the drafts that are not rejected below. Untick to create none.",
    )
    reject: list[str] = Field(
        default_factory=list,
        description="Draft ids (d3) or dedup keys of the drafts not to create.",
    )
    edits: list[DraftEdit] = Field(
        default_factory=list,
        description="Changes of summary or priority, by draft id or dedup key.",
    )


@dataclass(frozen=True)
class ReviewOutcome:
    """What the review decided, for the result, the artifact and the log.

    Attributes:
        status: ``approved`` (a decision came), ``timed_out`` or ``not_needed`` (no new issue
            to create).
        approved: draft ids to create.
        rejected: draft ids not to create.
        edited: draft id -> the fields the reviewer changed (summary, priority).
        unknown: references in the decision that name no draft awaiting review.
        reviewer: who decided (masked), when someone did.
        decided_earlier: the decision was taken for an earlier run of the same drafts and
            applied again without asking.
        key: the review's ledger key (`review_key`), also the target of its audit entries.
    """

    status: ReviewStatus
    approved: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    edited: dict[str, list[str]] = field(default_factory=dict)
    unknown: list[str] = field(default_factory=list)
    reviewer: str | None = None
    decided_earlier: bool = False
    key: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The outcome as plain JSON types."""
        return {
            "status": self.status,
            "approved": self.approved,
            "rejected": self.rejected,
            "edited": self.edited,
            "unknown": self.unknown,
            "reviewer": self.reviewer,
            "decided_earlier": self.decided_earlier,
            "key": self.key,
        }


def shown_edit(planned: PlannedDraft) -> DraftEdit:
    """A draft as the form shows it for editing: its id, summary (masked: the form lives in
    the Prefect UI) and priority."""
    priority = planned.draft.fields.get("priority")
    if isinstance(priority, Mapping):
        priority = priority.get("name")
    return DraftEdit(
        draft=planned.draft.id,
        summary=mask_text(planned.draft.summary),
        priority=str(priority) if priority else None,
    )


def review_form(plan: Plan, description: str) -> type[ReviewDecision]:
    """The resume form of `plan`'s review.

    `description` (the drafts table of `review_request`: type, priority, summary) is shown
    above the form, and the form's `edits` come filled with every new draft's id, summary and
    priority, so the reviewer reads each draft in the form itself and changes it in place. An
    edit left as shown changes nothing (see `apply_decision`).
    """
    shown = [shown_edit(planned) for planned in plan.having("create")]
    # Not `with_initial_data`: it rebuilds the field from its type alone and drops the field's
    # description, which tells the reviewer what the filled-in list is.
    form = create_model(
        ReviewDecision.__name__,
        __base__=ReviewDecision,
        edits=(
            list[DraftEdit],
            Field(
                default=shown,
                description="Every new draft as it will be created: change a summary or a "
                "priority here; a draft left as shown is created as it is.",
            ),
        ),
    )
    # Prefect saves this class attribute as the text shown above the form (see
    # `BaseRunInput.with_initial_data`).
    form._description = description  # type: ignore[assignment]
    return form


def _resolve(reference: str, reviewable: list[PlannedDraft]) -> str | None:
    wanted = reference.strip()
    for planned in reviewable:
        if wanted in (planned.draft.id, planned.draft.dedup_key):
            return planned.draft.id
    return None


def apply_decision(
    plan: Plan, decision: ReviewDecision, privacy: Mapping[str, Privacy]
) -> tuple[Plan, ReviewOutcome]:
    """The plan after the reviewer's decision, and a record of it.

    Only ``create`` drafts are reviewed: rejecting one also drops the comments planned on the
    issue it would have created. Edited summaries get the mapping's privacy masking and
    Jira's limits like rendered ones. A summary or priority left as the form showed it (see
    `review_form`) is not a change: the draft keeps its own (unmasked) summary.

    Args:
        plan: the plan shown to the reviewer.
        decision: the reviewer's input.
        privacy: mapping name -> its privacy rules.
    """
    reviewable = plan.having("create")
    unknown: list[str] = []
    rejected: set[str] = set()
    if not decision.approve:
        rejected = {planned.draft.id for planned in reviewable}
    for reference in decision.reject:
        found = _resolve(reference, reviewable)
        if found is None:
            unknown.append(mask_text(reference))
        else:
            rejected.add(found)
    changes: dict[str, DraftEdit] = {}
    for edit in decision.edits:
        found = _resolve(edit.draft, reviewable)
        if found is None:
            unknown.append(mask_text(edit.draft))
        else:
            changes[found] = edit
    edited: dict[str, list[str]] = {}
    drafts: list[PlannedDraft] = []
    for planned in plan.drafts:
        edit = changes.get(planned.draft.id)
        if edit is not None and planned.draft.id not in rejected:
            fields = dict(planned.draft.fields)
            names = []
            shown = shown_edit(planned)
            if edit.summary and edit.summary.strip() not in ("", shown.summary):
                fields["summary"] = clean_summary(edit.summary, privacy[planned.draft.mapping])
                names.append("summary")
            if edit.priority and edit.priority.strip() not in ("", shown.priority):
                fields["priority"] = edit.priority.strip()
                names.append("priority")
            if names:
                edited[planned.draft.id] = names
                planned = replace(planned, draft=replace(planned.draft, fields=fields))
        drafts.append(planned)
    reviewed = reject(Plan(drafts, plan.found), rejected)
    approved = [planned.draft.id for planned in reviewed.having("create")]
    outcome = ReviewOutcome(
        status="approved",
        reviewer=mask_text(decision.reviewer.strip()),
        approved=approved,
        rejected=[planned.draft.id for planned in reviewable if planned.draft.id in rejected],
        edited=edited,
        unknown=unknown,
    )
    return reviewed, outcome


REVIEW_TABLE = ("ticket_creation", "review")
DECISION_FIELDS = ("approve", "reject", "edits")


@dataclass(frozen=True)
class ReviewPolicy:
    """Who may answer a review (`[ticket_creation.review]` in moltbot.toml).

    Attributes:
        approvers: the names (or e-mails) allowed to decide, compared without case; empty:
            anyone who gives a name.
        allow_self_approval: whether the person whose run asks may decide it.
    """

    approvers: tuple[str, ...] = ()
    allow_self_approval: bool = False

    @classmethod
    def from_table(cls, table: Mapping[str, Any] | None, where: str) -> ReviewPolicy:
        """The policy written in `table`; `where` names it in errors.

        Raises:
            InputError: approvers is not a list of names, or allow_self_approval not a boolean.
        """
        table = table or {}
        approvers = table.get("approvers", [])
        if not isinstance(approvers, list) or not all(
            isinstance(name, str) and name.strip() for name in approvers
        ):
            raise InputError(f"{where}: approvers must be a list of names")
        allow_self = table.get("allow_self_approval", False)
        if not isinstance(allow_self, bool):
            raise InputError(f"{where}: allow_self_approval must be true or false")
        return cls(tuple(name.strip() for name in approvers), allow_self)


def review_key(plan: Plan) -> str:
    """The review's ledger key: the same new drafts, as shown, give the same key.

    A re-run of the same work (a retry, a rescheduled or crashed run) finds the decision taken
    for it instead of asking again; different drafts are a different review.
    """
    shown = sorted(
        (planned.draft.dedup_key, shown_edit(planned).model_dump_json())
        for planned in plan.having("create")
    )
    digest = hashlib.sha256(json.dumps(shown, ensure_ascii=False).encode("utf-8")).hexdigest()
    return f"ticket-creation:review:{digest[:32]}"


def refusal(reviewer: str, requester: str | None, policy: ReviewPolicy) -> str | None:
    """Why `reviewer` may not decide this review, or None when they may.

    Args:
        reviewer: the name the reviewer gave.
        requester: the actor whose run asks (`user:alice` for a CLI run; None or a
            deployment when no person is known).
        policy: the configured approvers.
    """
    name = reviewer.strip().casefold()
    if not name:
        return "the reviewer gave no name"
    if policy.approvers and name not in {a.casefold() for a in policy.approvers}:
        return "the reviewer is not on the approvers list"
    if (
        not policy.allow_self_approval
        and requester is not None
        and requester.startswith("user:")
        and requester.removeprefix("user:").casefold() == name
    ):
        return "the reviewer asked for this run and may not approve it"
    return None


def poll_seconds(timeout_seconds: float) -> float:
    """How often a paused run asks the API whether it was resumed: about 30 times per
    timeout, between every half second and every 10 seconds."""
    return min(10.0, max(0.5, timeout_seconds / 30))

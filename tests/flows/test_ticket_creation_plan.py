"""Planning each draft from the dedup search and the ledger, and applying a review decision."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from flows.ticket_creation.drafts import TicketDraft, issue_ledger_key
from flows.ticket_creation.mapping import Privacy
from flows.ticket_creation.plan import LedgerEntry, plan_drafts, reject
from flows.ticket_creation.review import DraftEdit, ReviewDecision, apply_decision, poll_seconds
from tasks.jira import dedup_label

T0 = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)


def draft(number: int, key: str, minutes: int = 0) -> TicketDraft:
    ledger_key = issue_ledger_key(f"event:t:{key}", "OPS")
    return TicketDraft(
        id=f"d{number}",
        item=f"event {key}",
        mapping="m",
        dedup_key=f"event:t:{key}",
        ledger_key=ledger_key,
        label=dedup_label(ledger_key),
        occurrence=f"o{number}",
        occurred_at=T0 + timedelta(minutes=minutes),
        fields={"project": "OPS", "issuetype": "Task", "summary": f"요약 {number}"},
    )


def actions(plan) -> list[tuple[str, str, str | None]]:
    return [(p.draft.id, p.action, p.issue_key) for p in plan.drafts]


def test_new_keys_are_created_by_their_earliest_occurrence_and_later_ones_comment() -> None:
    # d2 happened before d1: it creates the issue, d1 and d3 comment on it.
    drafts = [draft(1, "a", 5), draft(2, "a", 1), draft(3, "a", 9), draft(4, "b")]

    plan = plan_drafts(drafts, {}, {})

    assert actions(plan) == [
        ("d1", "comment", None),
        ("d2", "create", None),
        ("d3", "comment", None),
        ("d4", "create", None),
    ]
    assert plan.found == {}


@pytest.mark.parametrize(
    ("occurrence", "action"),
    [
        (None, "comment"),
        (LedgerEntry("done", "comment", "OPS-7/comment/1"), "done"),
        (LedgerEntry("done", "ticket", "OPS-7"), "done"),
        # The creating occurrence of a run that died after Jira created the issue.
        (LedgerEntry("pending", "ticket", fresh=True), "record"),
        (LedgerEntry("failed", "ticket"), "record"),
        (LedgerEntry("pending", "comment", fresh=True), "in_progress"),
        (LedgerEntry("pending", "comment", fresh=False), "comment"),
        (LedgerEntry("failed", "comment"), "comment"),
    ],
)
def test_an_existing_issue(occurrence: LedgerEntry | None, action: str) -> None:
    [one] = drafts = [draft(1, "a")]
    ledger = {one.occurrence_key: occurrence} if occurrence else {}

    plan = plan_drafts(drafts, {one.label: "OPS-7"}, ledger)

    assert actions(plan) == [("d1", action, "OPS-7")]
    assert plan.found == {one.ledger_key: "OPS-7"}  # found in Jira, not done in the ledger


def test_the_ledger_wins_when_the_search_misses_an_issue() -> None:
    [one] = drafts = [draft(1, "a")]
    ledger = {one.ledger_key: LedgerEntry("done", "ticket", "OPS-3")}

    plan = plan_drafts(drafts, {}, ledger)

    assert actions(plan) == [("d1", "comment", "OPS-3")]
    assert plan.found == {}


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (LedgerEntry("pending", "ticket", fresh=True), "in_progress"),
        (LedgerEntry("pending", "ticket", fresh=False), "create"),  # its lease ran out
        (LedgerEntry("failed", "ticket"), "create"),  # refused before: retried
    ],
)
def test_a_key_without_an_issue(entry: LedgerEntry, expected: str) -> None:
    [one] = drafts = [draft(1, "a")]

    plan = plan_drafts(drafts, {}, {one.ledger_key: entry})

    assert [p.action for p in plan.drafts] == [expected]


def test_rejecting_a_new_issue_drops_the_comments_planned_on_it() -> None:
    drafts = [draft(1, "a"), draft(2, "a", 5), draft(3, "b"), draft(4, "c")]
    plan = plan_drafts(drafts, {drafts[3].label: "OPS-1"}, {})

    reviewed = reject(plan, {"d1", "d4"})

    # d4 comments on an existing issue: not something the review can reject.
    assert [p.action for p in reviewed.drafts] == ["rejected", "rejected", "create", "comment"]


def test_a_review_decision_rejects_edits_and_records() -> None:
    drafts = [draft(n, k) for n, k in ((1, "a"), (2, "b"), (3, "c"), (4, "d"))]
    plan = plan_drafts(drafts, {drafts[3].label: "OPS-1"}, {})
    decision = ReviewDecision(
        reviewer="kim",
        reject=["d2", "event:t:c", "d4", "nope"],
        edits=[
            DraftEdit(draft="d1", summary="새 요약\n연락처 010-1234-5678", priority="Highest"),
            DraftEdit(draft="d2", summary="ignored: rejected"),
        ],
    )

    reviewed, outcome = apply_decision(plan, decision, {"m": Privacy()})

    assert [p.action for p in reviewed.drafts] == ["create", "rejected", "rejected", "comment"]
    assert reviewed.drafts[0].draft.fields | {} == {
        "project": "OPS",
        "issuetype": "Task",
        "summary": "새 요약 연락처 ***",
        "priority": "Highest",
    }
    assert drafts[0].fields["summary"] == "요약 1"  # the original draft is untouched
    assert outcome.as_dict() == {
        "status": "approved",
        "approved": ["d1"],
        "rejected": ["d2", "d3"],
        "edited": {"d1": ["summary", "priority"]},
        "unknown": ["d4", "nope"],  # d4 is a comment, not a draft awaiting review
        "reviewer": "kim",
        "decided_earlier": False,
        "key": None,
    }


def test_approve_false_rejects_every_new_issue() -> None:
    plan = plan_drafts([draft(1, "a"), draft(2, "b")], {}, {})

    reviewed, outcome = apply_decision(
        plan, ReviewDecision(reviewer="kim", approve=False), {"m": Privacy()}
    )

    assert [p.action for p in reviewed.drafts] == ["rejected", "rejected"]
    assert (outcome.approved, outcome.rejected) == ([], ["d1", "d2"])


@pytest.mark.parametrize(("timeout", "poll"), [(1, 0.5), (30, 1.0), (3600, 10.0)])
def test_poll_interval(timeout: float, poll: float) -> None:
    assert poll_seconds(timeout) == poll

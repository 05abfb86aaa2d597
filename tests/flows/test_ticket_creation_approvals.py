"""Approvals that hold: decisions kept in the ledger, approvers, no self-approval, the audit."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prefect import tags
from prefect.flow_runs import resume_flow_run

from flows.ticket_creation.flow import ReviewTimedOut, ticket_creation
from flows.ticket_creation.review import ReviewPolicy, refusal
from moltbot.audit import cli_actor, os_user
from moltbot.errors import InputError
from moltbot.sandbox import Sandbox
from moltbot.sandbox.jira import JiraState
from moltbot.state.audit import AuditTrail
from moltbot.state.ledger import Ledger
from moltbot.state.reviews import APPROVED, ReviewStore
from tests.e2e.servers import HANG_GUARD_SECONDS
from tests.flows.test_ticket_creation_review import (
    JIRA,
    MAPPING,
    alert,
    paused_run,
    start_in_thread,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def jira(sandbox: Sandbox, sandbox_blocks: list[str], tmp_path: Path) -> JiraState:
    """The Jira emulator, with the review tests' alert mapping in moltbot.toml."""
    (tmp_path / "moltbot.toml").write_text(MAPPING, encoding="utf-8")
    return sandbox.state.jira


@pytest.mark.parametrize(
    ("reviewer", "requester", "approvers", "refused"),
    [
        ("kim", "user:alice", (), None),
        (" Kim ", None, ("kim", "lee"), None),
        ("park", None, ("kim", "lee"), "the reviewer is not on the approvers list"),
        ("Alice", "user:alice", (), "the reviewer asked for this run and may not approve it"),
        ("alice", "deployment:ticket-creation/webhook", (), None),
        ("   ", None, (), "the reviewer gave no name"),
    ],
)
def test_who_may_decide(reviewer, requester, approvers, refused) -> None:
    assert refusal(reviewer, requester, ReviewPolicy(approvers)) == refused


def test_self_approval_can_be_allowed() -> None:
    policy = ReviewPolicy(allow_self_approval=True)

    assert refusal("alice", "user:alice", policy) is None


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ({"approvers": "kim"}, "approvers must be a list of names"),
        ({"approvers": ["kim", ""]}, "approvers must be a list of names"),
        ({"allow_self_approval": "yes"}, "allow_self_approval must be true or false"),
    ],
)
def test_a_bad_review_table_is_one_line(table, problem) -> None:
    with pytest.raises(InputError, match=problem):
        ReviewPolicy.from_table(table, "moltbot.toml line 9")


def audit_rows() -> list:
    with Ledger.from_settings() as ledger:
        return AuditTrail(ledger).rows()


def test_a_refused_answer_is_recorded_and_the_run_waits_for_an_approver(
    jira: JiraState, tmp_path: Path
) -> None:
    config = MAPPING + '\n[ticket_creation.review]\napprovers = ["kim"]\n'
    (tmp_path / "moltbot.toml").write_text(config, encoding="utf-8")
    tag = f"review-{uuid.uuid4().hex[:8]}"
    with ThreadPoolExecutor(1) as pool:
        future = start_in_thread(
            pool,
            tag,
            events=[alert(1), alert(2)],
            jira_block=JIRA,
            review=True,
            review_timeout_seconds=60,
        )
        first = paused_run(tag, future)
        resume_flow_run(first.id, run_input={"reviewer": "park", "reason": "looks fine"})
        second = paused_run(tag, future)  # asked again: park may not decide
        assert jira.issues() == []
        resume_flow_run(
            second.id,
            run_input={"reviewer": "kim", "reason": "d2 is noise", "reject": ["d2"]},
        )
        result = future.result(timeout=HANG_GUARD_SECONDS)

    assert [c["draft"] for c in result["created"]] == ["d1"]
    assert len(jira.issues()) == 1
    review = [row for row in audit_rows() if row.target.startswith("review ")]
    assert [(row.action, row.actor, row.outcome) for row in review] == [
        ("approval refused", "reviewer:park", "refused"),
        ("approve", "reviewer:kim", "1 draft(s)"),
        ("reject", "reviewer:kim", "1 draft(s)"),
    ]
    assert review[0].detail == "the reviewer is not on the approvers list"
    assert review[2].parameters == {"rejected": ["d2"]} and review[2].detail == "d2 is noise"
    [run] = [row for row in audit_rows() if row.action == "run"]
    assert run.automation == "ticket-creation" and run.outcome == "completed"


def test_the_requester_cannot_approve_their_own_cli_run(jira: JiraState) -> None:
    tag = f"review-{uuid.uuid4().hex[:8]}"
    with ThreadPoolExecutor(1) as pool:

        def run() -> dict:
            with tags(tag, "cli"):  # a `moltbot run`: the OS user asked for it
                return ticket_creation(
                    events=[alert(1)], jira_block=JIRA, review=True, review_timeout_seconds=60
                )

        future = pool.submit(run)
        first = paused_run(tag, future)
        resume_flow_run(first.id, run_input={"reviewer": os_user()})
        second = paused_run(tag, future)
        resume_flow_run(second.id, run_input={"reviewer": "kim"})
        result = future.result(timeout=HANG_GUARD_SECONDS)

    assert result["review"]["reviewer"] == "kim" and len(jira.issues()) == 1
    refused = [row for row in audit_rows() if row.action == "approval refused"]
    assert [row.actor for row in refused] == [f"reviewer:{os_user()}"]
    assert [row.actor for row in audit_rows() if row.action == "run"] == [cli_actor()]


def test_a_rerun_of_reviewed_drafts_applies_the_decision_without_asking(
    jira: JiraState,
) -> None:
    """The first run timed out; the decision came afterwards (the reviewer answered the run
    that asked, which is gone): the next run of the same drafts acts on it without a pause."""
    events = [alert(1), alert(2), alert(3)]
    with pytest.raises(ReviewTimedOut) as raised:
        ticket_creation(events=events, jira_block=JIRA, review=True, review_timeout_seconds=1)
    key = raised.value.result["review"]["key"]
    with Ledger.from_settings() as ledger:
        store = ReviewStore(ledger)
        assert store.get(key).status == "timed_out"
        store.ask(key, automation="ticket-creation", requester=None, flow_run_id=None)
        store.decide(
            key,
            status=APPROVED,
            reviewer="kim",
            reason=None,
            decision={"reviewer": "kim", "approve": True, "reject": ["d3"], "edits": []},
        )

    # A pause would wait 60 s and fail the run: the run must not ask.
    result = ticket_creation(events=events, jira_block=JIRA, review=True, review_timeout_seconds=60)

    assert result["review"]["decided_earlier"] is True
    assert result["review"]["reviewer"] == "kim" and result["review"]["rejected"] == ["d3"]
    assert sorted(c["draft"] for c in result["created"]) == ["d1", "d2"]
    assert len(jira.issues()) == 2
    timeouts = [row for row in audit_rows() if row.action == "review timed out"]
    assert [(row.actor, row.target, row.outcome) for row in timeouts] == [
        ("moltbot", f"review {key}", "nothing created")
    ]

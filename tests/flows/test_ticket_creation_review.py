"""Review mode: the run pauses for typed input and is resumed through the Prefect API."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect import tags
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import StateType
from prefect.flow_runs import resume_flow_run
from prefect.input.actions import read_flow_run_input

from flows.ticket_creation.flow import ReviewTimedOut, ticket_creation
from moltbot.sandbox import Sandbox
from moltbot.sandbox.jira import JiraState
from moltbot.state.ledger import Ledger

pytestmark = pytest.mark.slow

JIRA = "sandbox-jira"
MAPPING = """
[ticket_creation.mappings.alerts]
source = "events"
event_types = ["alert.fired"]
project = "OPS"
issue_type = "Incident"
summary = "{{ payload.title }}"
privacy = { email = "keep" }
"""


@pytest.fixture
def jira(sandbox: Sandbox, sandbox_blocks: list[str], tmp_path: Path) -> JiraState:
    (tmp_path / "moltbot.toml").write_text(MAPPING, encoding="utf-8")
    return sandbox.state.jira


def alert(n: int) -> dict[str, Any]:
    return {
        "id": f"alert-{n}",
        "type": "alert.fired",
        "occurred_at": f"2026-11-24T09:0{n}:00+09:00",
        "payload": {"title": f"결제 API 오류 {n}, 담당 kim{n}@example.com"},
    }


def start_in_thread(pool: ThreadPoolExecutor, tag: str, **params: Any) -> Future:
    def run() -> dict[str, Any]:
        with tags(tag):
            return ticket_creation(**params)

    return pool.submit(run)


def paused_run(tag: str, future: Future, timeout: float = 30) -> Any:
    """The flow run tagged `tag` once it is paused and its review is readable.

    Prefect stores the input's schema, then its description, just after the Paused state: a
    reviewer (and a test) seeing the pause a moment earlier would find no description yet.
    """
    deadline = time.monotonic() + timeout
    paused = FlowRunFilter(
        tags=FlowRunFilterTags(all_=[tag]),
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED])),
    )
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            assert not future.done(), future.result()
            runs = client.read_flow_runs(flow_run_filter=paused)
            keyset = runs[0].state.state_details.run_input_keyset if runs else None
            if runs and (
                keyset is None
                or read_flow_run_input(keyset["description"], flow_run_id=runs[0].id) is not None
            ):
                return runs[0]
            time.sleep(0.1)
    raise AssertionError("the run never paused")


def test_review_rejecting_2_of_5_creates_3_with_the_edits(jira: JiraState) -> None:
    tag = f"review-{uuid.uuid4().hex[:8]}"
    with ThreadPoolExecutor(1) as pool:
        future = start_in_thread(
            pool,
            tag,
            events=[alert(n) for n in range(1, 6)],
            jira_block=JIRA,
            review=True,
            review_timeout_seconds=30,
        )
        run = paused_run(tag, future)
        assert jira.issues() == []  # nothing before the decision
        keyset = run.state.state_details.run_input_keyset
        shown = read_flow_run_input(keyset["description"], flow_run_id=run.id)
        assert "**5 new Jira issues await your review**" in shown
        row = "| d1 | event alert-1 (alert.fired) | Incident |  | 결제 API 오류 1, 담당 ***@"
        assert row + "example.com |" in shown
        table = drafts_artifact(run.id)
        assert [row["Draft"] for row in table] == ["d1", "d2", "d3", "d4", "d5"]
        assert "kim1@" not in str(table)  # the mapping keeps e-mails in Jira; artifacts never

        resume_flow_run(
            run.id,
            run_input={
                "reviewer": "kim",
                "reason": "d2 and d4 are duplicates of OPS-7",
                "reject": ["d2", "event:alert.fired:alert-4", "d9"],
                "edits": [
                    {"draft": "d1", "summary": "결제 API 오류 (검토됨)", "priority": "Highest"}
                ],
            },
        )
        result = future.result(timeout=60)

    assert [c["draft"] for c in result["created"]] == ["d1", "d3", "d5"]
    assert [r["draft"] for r in result["rejected"]] == ["d2", "d4"]
    assert result["review"] == {
        "status": "approved",
        "approved": ["d1", "d3", "d5"],
        "rejected": ["d2", "d4"],
        "edited": {"d1": ["summary", "priority"]},
        "unknown": ["d9"],
        "reviewer": "kim",
        "decided_earlier": False,
        "key": result["review"]["key"],  # checked below
    }
    assert result["review"]["key"].startswith("ticket-creation:review:")
    issues = jira.issues()
    assert [(i.summary, i.priority) for i in issues] == [
        ("결제 API 오류 (검토됨)", "Highest"),
        ("결제 API 오류 3, 담당 kim3@example.com", "Medium"),
        ("결제 API 오류 5, 담당 kim5@example.com", "Medium"),
    ]
    with Ledger.from_settings() as ledger:
        assert all(":alert-2:" not in e.key and ":alert-4:" not in e.key for e in ledger.effects())


def drafts_artifact(flow_run_id: UUID) -> list[dict[str, Any]]:
    import json

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    [table] = [a for a in artifacts if a.key == "ticket-creation-drafts"]
    return json.loads(table.data) if isinstance(table.data, str) else table.data


def test_a_review_nobody_answers_creates_nothing_and_says_so(jira: JiraState) -> None:
    tag = f"review-{uuid.uuid4().hex[:8]}"
    with tags(tag), pytest.raises(ReviewTimedOut) as raised:
        ticket_creation(
            events=[alert(1), alert(2)], jira_block=JIRA, review=True, review_timeout_seconds=1
        )

    assert str(raised.value) == (
        "nobody answered the review within 1 s: none of the 2 new issue(s) was created"
    )
    assert raised.value.result["review"]["status"] == "timed_out"
    assert raised.value.result["created"] == []
    assert jira.issues() == []
    with Ledger.from_settings() as ledger:
        assert ledger.effects() == []
    with get_client(sync_client=True) as client:
        [run] = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[tag]))
        )
    assert run.state.type == StateType.FAILED


def test_nothing_new_to_review_does_not_pause(jira: JiraState) -> None:
    ticket_creation(events=[alert(1)], jira_block=JIRA)

    again = ticket_creation(events=[alert(1)], jira_block=JIRA, review=True)

    assert again["review"]["status"] == "not_needed"
    assert again["unchanged"] == 1

"""The review form: each new draft's summary and priority are shown, in the form and above it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.input.run_input import keyset_from_base_key

from flows.ticket_creation.drafts import TicketDraft
from flows.ticket_creation.mapping import Privacy
from flows.ticket_creation.plan import Plan, PlannedDraft
from flows.ticket_creation.render import draft_rows, review_request
from flows.ticket_creation.review import apply_decision, review_form

DRAFTS = [
    ("d1", "결제 실패: 주문 A-10023 (59,000원), 고객 minji@example.com", "High", ["payment"]),
    ("d2", "오류 급증: checkout-api (840건/분)", "Highest", ["error-spike"]),
]
PRIVACY = {"alerts": Privacy(email="keep")}


def draft(draft_id: str, summary: str, priority: str, labels: list[str]) -> TicketDraft:
    return TicketDraft(
        id=draft_id,
        item=f"event {draft_id}",
        mapping="alerts",
        dedup_key=f"event:alert:{draft_id}",
        ledger_key=f"ticket-creation:event:alert:{draft_id}:jira:OPS",
        label=f"moltbot-{draft_id}",
        occurrence="0",
        occurred_at=datetime(2026, 11, 24, tzinfo=UTC),
        fields={
            "project": "OPS",
            "issuetype": "Incident",
            "summary": summary,
            "priority": priority,
            "labels": [*labels, f"moltbot-{draft_id}"],
        },
    )


@pytest.fixture
def plan() -> Plan:
    planned = [PlannedDraft(draft(*values), "create") for values in DRAFTS]
    done = PlannedDraft(draft("d3", "이미 만든 이슈", "Low", []), "done", "OPS-1")
    return Plan([*planned, done], {})


def form_text(plan: Plan, locale: str = "ko") -> str:
    return review_request(draft_rows(plan, {}, "Asia/Seoul"), locale=locale, timeout=600)


def test_the_form_and_its_description_show_each_new_drafts_summary_and_priority(
    plan: Plan,
) -> None:
    form = review_form(plan, form_text(plan))

    shown = [edit.model_dump() for edit in form(reviewer="kim").edits]
    assert shown == [
        {
            "draft": "d1",
            "summary": "결제 실패: 주문 A-10023 (59,000원), 고객 ***@example.com",
            "priority": "High",
        },
        {"draft": "d2", "summary": "오류 급증: checkout-api (840건/분)", "priority": "Highest"},
    ]
    description = form._description
    assert "| d1 | event d1 | Incident | High | 결제 실패: 주문 A-10023 (59,000원)" in description
    row = "| d2 | event d2 | Incident | Highest | 오류 급증: checkout-api (840건/분) |"
    assert row in description
    assert "minji@" not in description and "이미 만든 이슈" not in description
    schema = form.model_json_schema()
    assert schema["properties"]["edits"]["description"].startswith("Every new draft")


def test_the_form_is_saved_with_korean_text_as_is(plan: Plan, prefect_api: str) -> None:
    form = review_form(plan, form_text(plan))
    keyset = keyset_from_base_key("review-form-test")

    @flow
    def save_form() -> Any:
        from prefect.runtime import flow_run

        form.save(keyset)
        return flow_run.get_id()

    flow_run_id = save_form()

    with get_client(sync_client=True) as client:
        schema = client.read_flow_run_input(flow_run_id, keyset["schema"])
        description = client.read_flow_run_input(flow_run_id, keyset["description"])
    # Stored as UTF-8 JSON, not \\uXXXX escapes: the UI and the API show the words.
    assert "오류 급증: checkout-api (840건/분)" in schema and '"Highest"' in schema
    assert "새 Jira 이슈 2건이 검토를 기다립니다" in description


def test_a_form_sent_back_as_shown_changes_nothing(plan: Plan) -> None:
    form = review_form(plan, form_text(plan))

    reviewed, outcome = apply_decision(plan, form(reviewer="kim"), PRIVACY)

    assert outcome.edited == {}
    assert outcome.approved == ["d1", "d2"]
    # The form showed the masked summary; the draft keeps the mapping's own (e-mail kept).
    assert reviewed.drafts[0].draft.summary == DRAFTS[0][1]


def test_a_changed_priority_in_the_form_is_the_only_edit(plan: Plan) -> None:
    form = review_form(plan, form_text(plan))
    edits = [edit.model_dump() for edit in form(reviewer="kim").edits]
    edits[1]["priority"] = "Medium"

    reviewed, outcome = apply_decision(
        plan, form(reviewer="kim", edits=edits, reject=["d1"]), PRIVACY
    )

    assert outcome.edited == {"d2": ["priority"]}
    assert (outcome.approved, outcome.rejected) == (["d2"], ["d1"])
    created = reviewed.having("create")[0].draft
    assert (created.fields["priority"], created.summary) == ("Medium", DRAFTS[1][1])

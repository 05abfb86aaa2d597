"""Ticket-creation wording: hand-off note (en, ko), recurrence comment, artifact rows."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from flows.ticket_creation.drafts import TicketDraft
from flows.ticket_creation.plan import plan_drafts
from flows.ticket_creation.render import comment_body, draft_rows, handoff_message

SEOUL = "Asia/Seoul"


def draft(number: int, summary: str) -> TicketDraft:
    return TicketDraft(
        id=f"d{number}",
        item=f"row {number + 1}",
        mapping="support-form",
        dedup_key=f"form:abc:{number}",
        ledger_key=f"ticket-creation:form:abc:{number}:jira:OPS",
        label=f"moltbot-{number:016d}",
        occurrence=f"o{number}",
        occurred_at=datetime(2026, 11, 24, 6, 12, tzinfo=UTC),
        fields={
            "project": "OPS",
            "issuetype": "Task",
            "summary": summary,
            "priority": "High",
            "components": ["Payments", "Web"],
            "duedate": "2026-11-25",
        },
    )


DRAFTS = {
    "d1": draft(1, "[결제 문의] 환불 요청 kim@example.com"),
    "d2": draft(2, "[버그 신고] 로그인 오류"),
    "d3": draft(3, "배송 지연"),
}
CREATED = [
    {"key": "OPS-1", "draft": "d1", "item": "row 2", "recovered": False},
    {"key": "OPS-2", "draft": "d2", "item": "row 3", "recovered": True},
]
COMMENTED = [{"key": "OPS-9", "draft": "d3", "item": "row 4", "comment_id": "10001", "seen": 3}]
FAILED = [{"item": "row 5", "error": "priority: The priority selected is invalid."}]


def url(key: str) -> str:
    return f"https://example.atlassian.net/browse/{key}"


def test_handoff_lists_issues_with_links_comments_and_failures() -> None:
    message = handoff_message(CREATED, COMMENTED, FAILED, DRAFTS, url=url, locale="en")

    assert message is not None
    assert message.title == "Jira: 2 issues created, 1 comment added, 1 failed"
    assert message.severity == "warning"
    section = message.slack_blocks[1]["text"]["text"]
    link = "<https://example.atlassian.net/browse/"
    assert section.splitlines() == [
        "*Created*",
        f"• {link}OPS-1|OPS-1> [결제 문의] 환불 요청 ***@example.com (row 2)",
        f"• {link}OPS-2|OPS-2> [버그 신고] 로그인 오류 (row 3, recorded after an interrupted run)",
        "*Seen again (comment added)*",
        f"• {link}OPS-9|OPS-9> 배송 지연: 3 times in total (row 4)",
        "*Not created*",
        "• row 5: priority: The priority selected is invalid.",
    ]
    assert "- [OPS-1](https://example.atlassian.net/browse/OPS-1) [결제 문의]" in message.markdown
    assert '<a href="https://example.atlassian.net/browse/OPS-9">OPS-9</a>' in message.html
    assert "kim@" not in message.text + message.html + section


def test_handoff_in_korean() -> None:
    message = handoff_message(CREATED, COMMENTED, [], DRAFTS, url=url, locale="ko")

    assert message is not None
    assert message.title == "Jira: 이슈 2건 생성, 댓글 1건 추가"
    assert "*재발 (댓글 추가)*" in message.slack_blocks[1]["text"]["text"]
    assert "배송 지연: 총 3회 (row 4)" in message.markdown


def test_handoff_key_depends_on_what_it_lists_not_the_order() -> None:
    one = handoff_message(CREATED, COMMENTED, [], DRAFTS, url=url, locale="en")
    same = handoff_message(CREATED[::-1], COMMENTED, FAILED, DRAFTS, url=url, locale="ko")
    other = handoff_message(CREATED[:1], COMMENTED, [], DRAFTS, url=url, locale="en")

    assert one is not None and same is not None and other is not None
    assert one.key == same.key != other.key
    assert one.key.startswith("ticket-creation:handoff:")


def test_no_handoff_when_nothing_was_created_or_commented() -> None:
    assert handoff_message([], [], FAILED, DRAFTS, url=url, locale="en") is None


@pytest.mark.parametrize(
    ("locale", "first_line"),
    [
        ("en", "Seen again at 2026-11-24 15:12 KST (row 4), 3 times in total."),
        ("ko", "2026-11-24 15:12 KST에 다시 발생했습니다 (row 4). 지금까지 총 3회입니다."),
    ],
)
def test_comment_body(locale: str, first_line: str) -> None:
    body = comment_body(DRAFTS["d3"], 3, locale=locale, timezone=SEOUL)

    assert body.splitlines() == [first_line, "", "배송 지연"]


def test_artifact_rows_are_masked() -> None:
    plan = plan_drafts(list(DRAFTS.values()), {}, {})

    rows = draft_rows(plan, {"d1": {"status": "created", "key": "OPS-1"}}, SEOUL)

    assert rows[0] == {
        "draft": "d1",
        "item": "row 2",
        "action": "created",
        "issue": "OPS-1",
        "project": "OPS",
        "type": "Task",
        "priority": "High",
        "summary": "[결제 문의] 환불 요청 ***@example.com",
        "labels": "",
        "components": "Payments, Web",
        "assignee": "",
        "due": "2026-11-25",
        "dedup_key": "form:abc:1",
    }
    assert rows[1]["action"] == "create"

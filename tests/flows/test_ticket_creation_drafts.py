"""Ticket drafts: events and form rows -> Jira fields, dedup keys and privacy (pure functions)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from flows.shared.forms import parse_form_timestamps
from flows.ticket_creation.drafts import (
    SUMMARY_MAX_CHARS,
    SourceItem,
    TicketDraft,
    apply_privacy,
    build_drafts,
    clean_summary,
    event_item,
    form_items,
    parse_events,
    read_events_file,
    short_hash,
)
from flows.ticket_creation.mapping import Privacy, TicketMapping, load_mappings
from moltbot.config.project import ProjectConfig
from moltbot.errors import InputError
from tasks.jira import dedup_label

ROOT = Path(__file__).parents[2]
SEOUL = "Asia/Seoul"
NOW = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def shipped() -> dict[str, TicketMapping]:
    return load_mappings(ProjectConfig.load(ROOT / "moltbot.toml"))


def mappings_from(tmp_path: Path, text: str) -> dict[str, TicketMapping]:
    path = tmp_path / "moltbot.toml"
    path.write_text(text, encoding="utf-8")
    return load_mappings(ProjectConfig.load(path))


def footer(item: SourceItem, key: str) -> str:
    return f"-- {item.label} / {key}"


def draft_all(items: list[SourceItem]) -> list[TicketDraft]:
    return build_drafts(items, timezone=SEOUL, footer=footer)


def events(*records: dict) -> list:
    return parse_events([(f"events[{i}]", r) for i, r in enumerate(records)], SEOUL)


PAYMENT = {
    "id": "pay-1",
    "type": "payment.failed",
    "occurred_at": "2026-11-24T09:12:45+09:00",
    "payload": {
        "order_id": "A-10023",
        "amount": 59000,
        "provider": "toss",
        "error_code": "CARD_DECLINED",
        "severity": "critical",
        "customer_email": "minji.kim@example.com",
    },
}


# --------------------------------------------------------------------------- events


def test_events_are_validated_and_read_in_utc() -> None:
    naive = PAYMENT | {"id": 7, "occurred_at": "2026-11-24T09:00:00"}
    parsed = events(PAYMENT, naive, PAYMENT)  # the same event twice is kept once

    assert [(e.id, e.occurred_at) for e in parsed] == [
        ("pay-1", datetime(2026, 11, 24, 0, 12, 45, tzinfo=UTC)),
        ("7", datetime(2026, 11, 24, 0, 0, tzinfo=UTC)),  # no offset: Asia/Seoul
    ]
    assert parsed[0].label == "event pay-1 (payment.failed)"


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ([1, 2], "events[0]: an event must be a JSON object"),
        ({"id": "x"}, "events[0]: missing 'type', 'occurred_at', 'payload' (an event has id,"),
        (PAYMENT | {"id": True}, "events[0]: 'id' must be a non-empty text or number"),
        (PAYMENT | {"id": ""}, "events[0]: 'id' must be a non-empty text or number"),
        (PAYMENT | {"type": " "}, "events[0]: 'type' must be a non-empty text"),
        (PAYMENT | {"payload": []}, "events[0]: 'payload' must be a JSON object"),
        (PAYMENT | {"occurred_at": 1}, "events[0]: 'occurred_at' must be an ISO 8601 text"),
        (
            PAYMENT | {"occurred_at": "24.11.2026"},
            "events[0]: 'occurred_at' '24.11.2026' is not an ISO 8601 time",
        ),
    ],
)
def test_bad_events(record: object, message: str) -> None:
    with pytest.raises(InputError) as raised:
        events(record)  # type: ignore[arg-type]

    assert str(raised.value).startswith(message)


def test_events_file_lines(tmp_path: Path) -> None:
    path = tmp_path / "이벤트.jsonl"
    path.write_text(json.dumps(PAYMENT, ensure_ascii=False) + "\n\n{broken\n", encoding="utf-8")

    with pytest.raises(InputError, match=r"^이벤트.jsonl line 3: not JSON \(Expecting"):
        read_events_file(str(path))
    path.write_text(json.dumps(PAYMENT) + "\n", encoding="utf-8")
    assert read_events_file(str(path)) == [("이벤트.jsonl line 1", PAYMENT)]
    with pytest.raises(InputError, match=r"^events_file 'nope' does not exist$"):
        read_events_file("nope")


def test_a_payment_event_drafted_with_the_shipped_mapping(shipped) -> None:
    [event] = events(PAYMENT)
    [draft] = draft_all([event_item(event, shipped["payment-failed"], SEOUL)])

    key = "ticket-creation:event:payment.failed:pay-1:jira:OPS"
    assert (draft.id, draft.dedup_key, draft.ledger_key) == (
        "d1",
        "event:payment.failed:pay-1",
        key,
    )
    assert draft.label == dedup_label(key)
    assert draft.fields == {
        "project": "OPS",
        "issuetype": "Incident",
        "summary": "결제 실패: 주문 A-10023 (₩59,000, toss)",
        "description": (
            "결제가 실패했습니다.\n\n- 주문: A-10023\n- 금액: ₩59,000\n"
            "- 결제사: toss (CARD_DECLINED)\n- 고객: ***@example.com\n"
            "- 발생: 2026-11-24 09:12 KST\n\n"
            "-- event pay-1 (payment.failed) / event:payment.failed:pay-1"
        ),
        "labels": ["payment", "toss", draft.label],
        "priority": "Highest",
        "components": ["Payments"],
        "assignee": "712020:00000000-0000-4000-8000-00000000a002",
        "duedate": "2026-11-24",  # 09:12 KST + 4 h
    }
    assert draft.occurrence_key == f"{key}:seen:{draft.occurrence}"


def test_each_occurrence_has_its_own_key_but_shares_the_dedup_key(shipped) -> None:
    later = PAYMENT | {"occurred_at": "2026-11-24T10:00:00+09:00"}
    first, second = draft_all(
        [event_item(e, shipped["payment-failed"], SEOUL) for e in events(PAYMENT, later)]
    )

    assert first.ledger_key == second.ledger_key
    assert first.occurrence != second.occurrence


def test_a_dedup_template_groups_events_and_hashes_the_value(tmp_path: Path) -> None:
    mappings = mappings_from(
        tmp_path,
        '[ticket_creation.mappings.spikes]\nsource = "events"\nevent_types = ["error.spike"]\n'
        'project = "OPS"\nissue_type = "Incident"\nsummary = "{{ payload.service }}"\n'
        'dedup = "{{ payload.service }}"\n',
    )
    spikes = events(
        *[
            {"id": f"s{n}", "type": "error.spike", "occurred_at": "2026-11-24T10:00:00+09:00",
             "payload": {"service": service}}
            for n, service in enumerate(["checkout", "checkout", "search", ""])
        ]
    )  # fmt: skip
    drafts = draft_all([event_item(e, mappings["spikes"], SEOUL) for e in spikes])

    assert drafts[0].dedup_key == drafts[1].dedup_key == f"event:spikes:{short_hash('checkout')}"
    assert drafts[2].dedup_key == f"event:spikes:{short_hash('search')}"
    assert drafts[3].dedup_key == "event:error.spike:s3"  # blank: the event's own id


# --------------------------------------------------------------------------- form answers


HEADER = ["타임스탬프", "이름", "이메일", "연락처", "문의 유형", "긴급도", "제목", "내용"]


def sheet(*rows: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame(list(rows), columns=HEADER, index=range(2, 2 + len(rows)))
    frame.index.name = "sheet_row"
    return frame


def test_form_answers_with_the_shipped_mapping(shipped) -> None:
    rows = sheet(
        ["2026. 11. 24 오후 3:12:45", "김민지", "minji@example.com", "010-1234-5678",
         "버그 신고", "긴급", "결제 버튼이\n안 눌려요", "앱에서 결제 버튼이 동작하지 않습니다."],
        ["", "Alex", "alex@example.com", "+82 10 9876 5432", "기타", "모름", "문의", "내용"],
    )  # fmt: skip
    times = parse_form_timestamps(rows["타임스탬프"], SEOUL)
    items = form_items(
        rows, times, stream="sheet-id/응답", timestamp_column="타임스탬프",
        mapping=shipped["support-form"], timezone=SEOUL, now=NOW,
    )  # fmt: skip
    bug, other = draft_all(items)

    content = short_hash(*rows.loc[2].tolist(), length=12)
    stream = short_hash("sheet-id/응답", length=10)
    assert bug.dedup_key == f"form:{stream}:2026. 11. 24 오후 3:12:45:{content}"
    assert bug.item == "row 2"
    assert bug.fields["summary"] == "[버그 신고] 결제 버튼이 안 눌려요"  # one line
    assert bug.fields["description"].startswith(
        "앱에서 결제 버튼이 동작하지 않습니다.\n\n신청자: 김민지 (***@example.com, ***)\n"
        "접수: 2026-11-24 15:12\n\n-- row 2 / form:"
    )
    assert (bug.fields["issuetype"], bug.fields["priority"], bug.fields["components"]) == (
        "Bug", "High", ["Web"],
    )  # fmt: skip
    assert bug.fields["assignee"] == "712020:00000000-0000-4000-8000-00000000a003"
    assert bug.fields["duedate"] == "2026-11-25"  # High: 24 h
    assert bug.fields["labels"][:2] == ["support", "버그-신고"]
    # An unreadable timestamp: the due date counts from now; unmatched choices take defaults.
    assert other.occurred_at == NOW
    assert (other.fields["issuetype"], other.fields["priority"]) == ("Task", "Medium")
    assert "assignee" not in other.fields
    assert other.fields["components"] == ["Support"]
    assert other.fields["duedate"] == "2026-11-27"
    assert "***" in other.fields["description"] and "9876" not in other.fields["description"]


def test_a_missing_column_names_the_sheet_columns(shipped, tmp_path: Path) -> None:
    rows = sheet(["2026. 11. 24 오후 3:12:45", "a", "b", "c", "d", "e", "f", "g"])
    items = form_items(
        rows.drop(columns=["제목"]), parse_form_timestamps(rows["타임스탬프"], SEOUL),
        stream="s/w", timestamp_column="타임스탬프", mapping=shipped["support-form"],
        timezone=SEOUL, now=NOW,
    )  # fmt: skip

    with pytest.raises(InputError) as raised:
        draft_all(items)

    line = ProjectConfig.load(ROOT / "moltbot.toml").line_of(
        "ticket_creation", "mappings", "support-form", "summary"
    )
    assert str(raised.value) == (
        f"mapping 'support-form' (moltbot.toml line {line}): summary: the sheet has no '제목' "
        "(it has: '타임스탬프', '이름', '이메일', '연락처', '문의 유형', '긴급도', '내용') (row 2)"
    )


# --------------------------------------------------------------------------- privacy, limits


@pytest.mark.parametrize(
    ("email", "phone", "expected"),
    [
        ("keep-domain", "mask", "메일 ***@example.co.kr, 전화 ***, 주문 2026-11-24 #12345"),
        ("mask", "mask", "메일 ***, 전화 ***, 주문 2026-11-24 #12345"),
        ("keep", "mask", "메일 kim@example.co.kr, 전화 ***, 주문 2026-11-24 #12345"),
        ("keep", "keep", "메일 kim@example.co.kr, 전화 010-1234-5678, 주문 2026-11-24 #12345"),
    ],
)
def test_privacy_rules(email: str, phone: str, expected: str) -> None:
    text = "메일 kim@example.co.kr, 전화 010-1234-5678, 주문 2026-11-24 #12345"

    assert apply_privacy(text, Privacy(email=email, phone=phone)) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("  두 줄\n요약\t입니다 ", "두 줄 요약 입니다"),
        ("x" * 300, "x" * (SUMMARY_MAX_CHARS - 1) + "…"),
        ("문의: 01012345678", "문의: ***"),
    ],
)
def test_clean_summary(text: str, expected: str) -> None:
    assert clean_summary(text, Privacy()) == expected


def test_a_blank_summary_falls_back_to_the_item(tmp_path: Path) -> None:
    mappings = mappings_from(
        tmp_path,
        '[ticket_creation.mappings.m]\nsource = "events"\nproject = "OPS"\n'
        'issue_type = "Task"\nsummary = "{{ payload.title }}"\nlabels = ["{{ payload.title }}"]\n',
    )
    [event] = events(
        {"id": 1, "type": "t", "occurred_at": "2026-11-24T09:00:00", "payload": {"title": " "}}
    )
    [draft] = draft_all([event_item(event, mappings["m"], SEOUL)])

    assert draft.fields["summary"] == "m: event 1 (t)"
    assert draft.fields["labels"] == [draft.label]  # blank labels are dropped


def test_payload_keys_named_like_attributes_are_payload_values(tmp_path: Path) -> None:
    mappings = mappings_from(
        tmp_path,
        '[ticket_creation.mappings.m]\nsource = "events"\nproject = "OPS"\n'
        'issue_type = "Task"\nsummary = "{{ payload.label }} / {{ event.payload.label }}"\n',
    )
    [event] = events(
        {"id": 1, "type": "t", "occurred_at": "2026-11-24T09:00:00", "payload": {"label": "긴급"}}
    )

    [draft] = draft_all([event_item(event, mappings["m"], SEOUL)])

    assert draft.fields["summary"] == "긴급 / 긴급"

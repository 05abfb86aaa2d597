"""Tests of event normalisation: Stripe and GitHub bodies to {id, type, occurred_at, payload}."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from moltbot.webhooks.events import EventError, normalize_event, parse_json_object

RECEIVED = datetime(2026, 11, 24, 6, 12, 45, tzinfo=UTC)


def test_stripe_event_takes_id_type_created_and_data() -> None:
    document = {
        "id": "evt_1",
        "type": "payment.failed",
        "created": 1_795_000_000,
        "livemode": False,
        "data": {"object": {"customer": "김민수", "amount": 12000}},
    }

    event = normalize_event("stripe", document, {}, received_at=RECEIVED)

    assert event == {
        "id": "evt_1",
        "type": "payment.failed",
        "occurred_at": "2026-11-18T11:06:40+00:00",
        "payload": {"object": {"customer": "김민수", "amount": 12000}},
    }


def test_stripe_event_without_created_or_data_uses_the_receive_time_and_an_empty_payload() -> None:
    event = normalize_event("stripe", {"id": "e", "type": "t"}, {}, received_at=RECEIVED)

    assert event["occurred_at"] == "2026-11-24T06:12:45+00:00"
    assert event["payload"] == {}


def test_github_event_takes_headers_and_action() -> None:
    headers = {"x-github-delivery": "72d3162e-cc78", "x-github-event": "issues"}
    document = {"action": "opened", "issue": {"title": "로그인 오류"}}

    event = normalize_event("github", document, headers, received_at=RECEIVED)

    assert event == {
        "id": "72d3162e-cc78",
        "type": "issues.opened",
        "occurred_at": "2026-11-24T06:12:45+00:00",
        "payload": document,
    }
    push = normalize_event("github", {"ref": "main"}, headers | {"x-github-event": "push"},
                           received_at=RECEIVED)  # fmt: skip
    assert push["type"] == "push"


@pytest.mark.parametrize(
    ("scheme", "document", "headers", "message"),
    [
        ("stripe", {"type": "t"}, {}, "missing event id (body field 'id')"),
        ("stripe", {"id": "e"}, {}, "missing event type (body field 'type')"),
        ("stripe", {"id": "", "type": "t"}, {}, "missing event id"),
        ("stripe", {"id": 7, "type": "t"}, {}, "event id (body field 'id') must be a string"),
        ("stripe", {"id": "e" * 256, "type": "t"}, {}, "longer than 255"),
        ("stripe", {"id": "e", "type": "t", "created": "yesterday"}, {}, "Unix seconds"),
        ("stripe", {"id": "e", "type": "t", "created": True}, {}, "Unix seconds"),
        ("stripe", {"id": "e", "type": "t", "created": 10**20}, {}, "not a valid Unix time"),
        ("stripe", {"id": "e", "type": "t", "data": [1]}, {}, "'data' must be a JSON object"),
        ("github", {}, {"x-github-event": "push"}, "missing event id (X-GitHub-Delivery header)"),
        ("github", {}, {"x-github-delivery": "d"}, "missing event type (X-GitHub-Event header)"),
    ],
)
def test_missing_or_wrong_fields_say_which(
    scheme: str, document: dict, headers: dict, message: str
) -> None:
    with pytest.raises(EventError, match=message.replace("(", r"\(").replace(")", r"\)")):
        normalize_event(scheme, document, headers, received_at=RECEIVED)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe{}", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'"text"', "must be a JSON object"),
    ],
)
def test_bodies_that_are_not_json_objects(body: bytes, message: str) -> None:
    with pytest.raises(EventError, match=message):
        parse_json_object(body)


def test_korean_json_round_trips() -> None:
    assert parse_json_object('{"note": "결제 실패"}'.encode()) == {"note": "결제 실패"}

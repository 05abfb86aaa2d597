"""The JANDI and Dooray! webhook emulators over HTTP: wire checks, refusals, faults, limits."""

from __future__ import annotations

import httpx
import pytest

from moltbot.sandbox import Sandbox
from moltbot.sandbox.jandi import JANDI_ACCEPT

JANDI_HEADERS = {"Accept": JANDI_ACCEPT, "Content-Type": "application/json"}


class Clock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


def test_jandi_accepts_a_v2_post_and_keeps_it_as_received(sandbox: Sandbox):
    url = sandbox.jandi_webhook_url("ops")
    body = {
        "body": "[배포 완료](https://ci.moltbot.test/1) 결제 서비스",
        "connectColor": "#FAC11B",
        "connectInfo": [{"title": "버전", "description": "1.2.3"}],
    }

    answer = httpx.post(url, json=body, headers=JANDI_HEADERS)

    assert answer.status_code == 200
    [post] = sandbox.state.jandi.posts_to(url)
    assert post.payload == body
    assert post.headers["accept"] == JANDI_ACCEPT
    listed = httpx.get(f"{sandbox.base_url}/jandi/_sandbox/posts").json()
    assert [entry["payload"]["body"] for entry in listed] == [body["body"]]


def test_jandi_team_webhook_email_is_kept(sandbox: Sandbox):
    url = sandbox.jandi_webhook_url("team")
    body = {"email": "oncall@moltbot.test", "body": "긴급 알림"}

    httpx.post(url, json=body, headers=JANDI_HEADERS)

    assert sandbox.state.jandi.posts[0].payload["email"] == "oncall@moltbot.test"


@pytest.mark.parametrize(
    ("headers", "content", "status", "error"),
    [
        ({"Content-Type": "application/json"}, b'{"body": "x"}', 406, "Not Acceptable"),
        (JANDI_HEADERS, b'{"connectColor": "#FAC11B"}', 400, "body is required"),
        (JANDI_HEADERS, b'{"body": "  "}', 400, "body is required"),
        (JANDI_HEADERS, b"[1, 2]", 400, "JSON object"),
        (JANDI_HEADERS, b'{"body": "x", "connectInfo": {}}', 400, "connectInfo"),
    ],
)
def test_jandi_refuses_what_its_guide_rules_out(
    sandbox: Sandbox, headers: dict[str, str], content: bytes, status: int, error: str
):
    url = sandbox.jandi_webhook_url("ops")

    answer = httpx.post(url, content=content, headers=headers)

    assert answer.status_code == status
    assert answer.json()["code"] == status and error in answer.json()["msg"]
    assert sandbox.state.jandi.posts == []
    assert [r.status for r in sandbox.state.jandi.rejected] == [status]


def test_jandi_unknown_webhook_is_404_and_only_post_is_served(sandbox: Sandbox):
    known = sandbox.jandi_webhook_url("ops")
    unknown = known[:-4] + "0000"

    assert httpx.post(unknown, json={"body": "x"}, headers=JANDI_HEADERS).status_code == 404
    assert httpx.get(known, headers=JANDI_HEADERS).status_code == 405
    assert sandbox.state.jandi.posts == []


def test_jandi_rate_limit_answers_429_without_retry_after_until_the_minute_passes(
    sandbox: Sandbox,
):
    clock = Clock()
    sandbox.state.jandi.set_rate_limit(2, clock=clock)
    url, other = sandbox.jandi_webhook_url("ops"), sandbox.jandi_webhook_url("other")

    answers = [httpx.post(url, json={"body": f"{n}"}, headers=JANDI_HEADERS) for n in range(3)]
    elsewhere = httpx.post(other, json={"body": "다른 웹훅"}, headers=JANDI_HEADERS)
    clock.now += 60
    later = httpx.post(url, json={"body": "later"}, headers=JANDI_HEADERS)

    assert [a.status_code for a in answers] == [200, 200, 429]
    assert "retry-after" not in answers[2].headers
    assert elsewhere.status_code == 200  # the limit is per webhook
    assert later.status_code == 200
    assert [p.payload["body"] for p in sandbox.state.jandi.posts_to(url)] == ["0", "1", "later"]


def test_jandi_faults_429_5xx_and_drop(sandbox: Sandbox):
    url = sandbox.jandi_webhook_url("ops")
    state = sandbox.state.jandi
    state.inject_fault(429)
    state.inject_fault(503)
    state.inject_fault(kind="drop")

    limited = httpx.post(url, json={"body": "a"}, headers=JANDI_HEADERS)
    failed = httpx.post(url, json={"body": "b"}, headers=JANDI_HEADERS)
    # A dropped connection reads as a protocol error or a reset, as the timing falls.
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        httpx.post(url, json={"body": "c"}, headers=JANDI_HEADERS)
    ok = httpx.post(url, json={"body": "d"}, headers=JANDI_HEADERS)

    assert (limited.status_code, limited.headers["retry-after"]) == (429, "1")
    assert limited.json() == {"code": 429, "msg": "Too Many Requests"}
    assert failed.status_code == 503
    assert ok.status_code == 200
    assert [p.payload["body"] for p in state.posts] == ["d"]
    assert [r.fault for r in state.core.requests] == ["status", "status", "drop", None]
    assert state.attempts == 4


def test_jandi_faults_over_the_control_route(sandbox: Sandbox):
    url = sandbox.jandi_webhook_url("ops")
    added = httpx.post(
        f"{sandbox.base_url}/jandi/_sandbox/faults", json={"status": 500, "path": "^/connect-api/"}
    )

    answer = httpx.post(url, json={"body": "x"}, headers=JANDI_HEADERS)

    assert added.status_code == 201 and answer.status_code == 500
    assert sandbox.state.jandi.posts == []


def test_reset_forgets_webhooks_posts_and_faults(sandbox: Sandbox):
    url = sandbox.jandi_webhook_url("ops")
    httpx.post(url, json={"body": "x"}, headers=JANDI_HEADERS)
    sandbox.state.jandi.inject_fault(500, count=None)

    sandbox.reset()

    assert sandbox.state.jandi.posts == [] and sandbox.state.jandi.pending_faults == []
    assert httpx.post(url, json={"body": "x"}, headers=JANDI_HEADERS).status_code == 404


def test_dooray_accepts_a_hook_post_and_answers_its_envelope(sandbox: Sandbox):
    url = sandbox.dooray_hook_url("ops")
    body = {
        "botName": "몰트봇",
        "botIconImage": "https://static.moltbot.test/bot.png",
        "text": "결제 실패 급증",
        "attachments": [{"title": "상세", "titleLink": "https://x.test", "text": "12%"}],
    }

    answer = httpx.post(url, json=body)

    assert answer.status_code == 200
    assert answer.json()["header"] == {"resultCode": 0, "resultMessage": "", "isSuccessful": True}
    assert [p.payload for p in sandbox.state.dooray.posts_to(url)] == [body]


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (b'{"botName": "x"}', "text is required"),
        (b'{"text": "x", "attachments": "no"}', "attachments"),
        (b'{"text": "x", "botName": 3}', "botName"),
        (b"not json", "JSON object"),
    ],
)
def test_dooray_refuses_a_malformed_body(sandbox: Sandbox, content: bytes, error: str):
    answer = httpx.post(
        sandbox.dooray_hook_url("ops"),
        content=content,
        headers={"Content-Type": "application/json"},
    )

    assert answer.status_code == 400
    header = answer.json()["header"]
    assert header["isSuccessful"] is False and error in header["resultMessage"]
    assert sandbox.state.dooray.posts == []


def test_dooray_unknown_hook_is_404(sandbox: Sandbox):
    unknown = sandbox.dooray_hook_url("ops")[:-3] + "zzz"

    answer = httpx.post(unknown, json={"text": "x"})

    assert answer.status_code == 404 and answer.json()["header"]["isSuccessful"] is False


def test_dooray_rate_limit_and_faults(sandbox: Sandbox):
    clock = Clock()
    state = sandbox.state.dooray
    state.set_rate_limit(1, clock=clock)
    url = sandbox.dooray_hook_url("ops")
    state.inject_fault(429, retry_after=9)

    faulted = httpx.post(url, json={"text": "a"})
    first = httpx.post(url, json={"text": "b"})
    limited = httpx.post(url, json={"text": "c"})

    assert (faulted.status_code, faulted.headers["retry-after"]) == (429, "9")
    assert first.status_code == 200
    assert limited.status_code == 429 and "retry-after" not in limited.headers
    assert [p.payload["text"] for p in state.posts] == ["b"]

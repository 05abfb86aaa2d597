"""Slack incoming-webhook emulator, driven over a real socket with httpx."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from moltbot.sandbox import Sandbox, SandboxState


@pytest.fixture
def state(sandbox: Sandbox) -> SandboxState:
    """The session sandbox's state (conftest.py resets it around each test)."""
    return sandbox.state


@pytest.fixture(scope="module")
def client(sandbox_server: Sandbox) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox_server.base_url, timeout=5) as c:
        yield c


@pytest.fixture
def url(sandbox: Sandbox, state: SandboxState) -> str:
    return sandbox.slack_webhook_url("alerts")


def test_post_is_accepted_and_recorded(client: httpx.Client, url: str, state: SandboxState):
    response = client.post(url, json={"text": "daily report ready"})

    assert response.status_code == 200
    assert response.text == "ok"
    assert response.headers["content-type"].startswith("text/plain")
    [post] = state.slack.posts
    assert post.path == "/services/T0SANDBOX/B0SANDBOX/" + url.rsplit("/", 1)[1]
    assert post.payload == {"text": "daily report ready"}
    assert post.headers["content-type"] == "application/json"
    assert state.slack.messages_for(url) == [post]
    assert state.slack.rejected == []


def test_a_path_never_registered_is_404_no_service(client: httpx.Client, state: SandboxState):
    response = client.post("/slack/services/T1/B2/whatever", json={"text": "hi"})

    assert (response.status_code, response.text) == (404, "no_service")
    assert state.slack.posts == []


def test_korean_text_round_trips(client: httpx.Client, url: str, state: SandboxState):
    text = "📈 11월 24일 매출 보고: 총 1,250,000원 (전일 대비 +12%)"

    assert client.post(url, json={"text": text}).text == "ok"

    assert state.slack.posts[0].text == text
    # ...and through the HTTP inspection endpoint, which a manual user or the CLI reads.
    assert client.get("/slack/_sandbox/posts").json()[0]["payload"]["text"] == text


@pytest.mark.parametrize(
    "body",
    [
        b"{}",
        b"not json",
        b'{"text": ""}',
        b'["text"]',
        b'{"text": 5}',
        b'{"blocks": []}',
        b'{"attachments": "x"}',
        '{"text": "\xec\x95"}'.encode("latin-1"),  # truncated UTF-8 sequence
    ],
)
def test_invalid_payload_is_rejected(
    client: httpx.Client, url: str, state: SandboxState, body: bytes
):
    response = client.post(url, content=body, headers={"content-type": "application/json"})

    assert (response.status_code, response.text) == (400, "invalid_payload")
    assert response.headers["content-type"].startswith("text/plain")
    assert state.slack.posts == []
    [rejected] = state.slack.rejected
    assert (rejected.status, rejected.error, rejected.body) == (400, "invalid_payload", body)


@pytest.mark.parametrize(
    "blocks",
    ["not a list", [{"text": "no type"}], ["a string"], [{"type": 3}]],
)
def test_malformed_blocks_are_rejected(
    client: httpx.Client, url: str, state: SandboxState, blocks: object
):
    response = client.post(url, json={"text": "fallback", "blocks": blocks})

    assert (response.status_code, response.text) == (400, "invalid_blocks")
    assert state.slack.posts == []


def test_blocks_only_payload_is_accepted(client: httpx.Client, url: str, state: SandboxState):
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*매출* 보고"}}]

    assert client.post(url, json={"blocks": blocks}).status_code == 200
    assert state.slack.posts[0].payload["blocks"] == blocks


def test_attachments_only_payload_is_accepted(client: httpx.Client, url: str, state: SandboxState):
    # The shape apprise (Prefect's core SlackWebhook block) sends: no top-level text.
    payload = {
        "mrkdwn": True,
        "attachments": [{"title": "Flow failed", "text": "daily-report", "color": "#A32727"}],
    }

    assert client.post(url, json=payload).text == "ok"
    assert state.slack.posts[0].payload == payload


def test_form_encoded_payload_is_accepted(client: httpx.Client, url: str, state: SandboxState):
    response = client.post(url, data={"payload": '{"text": "legacy 형식"}'})

    assert response.text == "ok"
    assert state.slack.posts[0].payload == {"text": "legacy 형식"}


def test_rate_limit_fault_sends_retry_after_then_succeeds(
    client: httpx.Client, url: str, state: SandboxState
):
    state.slack.inject_fault(status=429, count=1, retry_after=2)

    first = client.post(url, json={"text": "hello"})
    second = client.post(url, json={"text": "hello"})

    assert (first.status_code, first.text, first.headers["retry-after"]) == (
        429,
        "rate_limited",
        "2",
    )
    assert (second.status_code, second.text) == (200, "ok")
    assert len(state.slack.posts) == 1
    assert state.slack.rejected == []  # refused for what they were; faults are in the log
    logged = [(r.status, r.fault) for r in state.slack.core.requests]
    assert logged == [(429, "status"), (200, None)]
    assert state.slack.attempts == 2


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, "rollup_error"),
        (503, "service_unavailable"),
        (400, "invalid_payload"),
        (403, "action_prohibited"),
        (404, "channel_not_found"),
        (410, "channel_is_archived"),
    ],
)
def test_error_fault_answers_slack_body(
    client: httpx.Client, url: str, state: SandboxState, status: int, body: str
):
    state.slack.inject_fault(status=status)

    response = client.post(url, json={"text": "hello"})

    assert (response.status_code, response.text) == (status, body)
    assert "retry-after" not in response.headers
    assert state.slack.posts == []


def test_fault_count_is_honoured_exactly(client: httpx.Client, url: str, state: SandboxState):
    state.slack.inject_fault(status=500, count=3)

    statuses = [client.post(url, json={"text": str(i)}).status_code for i in range(5)]

    assert statuses == [500, 500, 500, 200, 200]
    assert [p.payload["text"] for p in state.slack.posts] == ["3", "4"]
    assert state.slack.pending_faults == []


def test_faults_apply_in_order(client: httpx.Client, url: str, state: SandboxState):
    state.slack.inject_fault(status=429)
    state.slack.inject_fault(status=503, count=2)

    statuses = [client.post(url, json={"text": "x"}).status_code for _ in range(4)]

    assert statuses == [429, 503, 503, 200]


def test_fault_with_custom_body(client: httpx.Client, url: str, state: SandboxState):
    state.slack.inject_fault(status=400, body="user_not_found")

    response = client.post(url, json={"text": "x"})

    assert (response.status_code, response.text) == (400, "user_not_found")


def test_delay_fault_slows_a_successful_response(
    client: httpx.Client, url: str, state: SandboxState
):
    state.slack.inject_fault(status=200, delay_seconds=0.2)

    started = time.monotonic()
    response = client.post(url, json={"text": "slow"})
    elapsed = time.monotonic() - started

    assert response.text == "ok"
    assert elapsed >= 0.2
    assert len(state.slack.posts) == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"status": 302},
        {"status": 500, "count": 0},
        {"status": 200, "delay_seconds": -1},
        {"status": 500, "delay_seconds": 1},
    ],
)
def test_inject_fault_refuses_nonsense(state: SandboxState, kwargs: dict):
    with pytest.raises(ValueError):
        state.slack.inject_fault(**kwargs)


def test_only_registered_webhooks_are_accepted(
    client: httpx.Client, sandbox: Sandbox, state: SandboxState
):
    registered = state.slack.register_webhook()
    unknown = f"{sandbox.base_url}/slack/services/T0SANDBOX/B0SANDBOX/never-registered"

    assert registered.startswith("/services/T0SANDBOX/B0SANDBOX/")
    assert client.post("/slack" + registered, json={"text": "in"}).text == "ok"
    response = client.post(unknown, json={"text": "out"})

    assert (response.status_code, response.text) == (404, "no_service")
    assert [p.payload["text"] for p in state.slack.messages_for(registered)] == ["in"]
    assert state.slack.messages_for(unknown) == []
    assert [r.error for r in state.slack.rejected] == ["no_service"]


def test_an_unregistered_webhook_is_refused_and_reset_keeps_only_the_fixed_one(
    client: httpx.Client, sandbox: Sandbox, state: SandboxState
):
    url = sandbox.slack_webhook_url("removed")
    state.slack.unregister_webhook(url)
    assert client.post(url, json={"text": "x"}).status_code == 404
    sandbox.slack_webhook_url("kept")

    state.reset()

    assert state.slack.webhooks == {"/services/T0000/B0000/sandbox", "/services/T0000/B0000/ops"}


def test_register_webhook_tokens_are_fresh(state: SandboxState):
    assert state.slack.register_webhook() != state.slack.register_webhook()


def test_http_fault_and_post_endpoints(client: httpx.Client, url: str, state: SandboxState):
    faults = "/slack/_sandbox/faults"
    created = client.post(faults, json={"status": 429, "count": 2, "retry_after": 1})
    assert created.status_code == 201
    assert client.get(faults).json()[0]["remaining"] == 2

    statuses = [client.post(url, json={"text": "x"}).status_code for _ in range(3)]
    assert statuses == [429, 429, 200]
    # Inspecting is never faulted, whatever fault is pending.
    client.post(faults, json={"status": 503, "count": None})
    logged = client.get("/slack/_sandbox/requests").json()
    assert [entry["status"] for entry in logged] == [429, 429, 200]
    assert [p["payload"] for p in client.get("/slack/_sandbox/posts").json()] == [{"text": "x"}]
    assert client.get("/slack/_sandbox/rejected").json() == []

    assert client.delete("/slack/_sandbox/posts").status_code == 200
    assert client.get("/slack/_sandbox/posts").json() == []
    assert state.slack.posts == []


def test_http_fault_endpoint_validates(client: httpx.Client, state: SandboxState):
    assert client.post("/slack/_sandbox/faults", json={"status": 302}).status_code == 422
    assert client.post("/slack/_sandbox/faults", json={"count": 0}).status_code == 422
    assert state.slack.pending_faults == []


def test_root_lists_mounted_services(client: httpx.Client):
    # `/` is the inbox page for a browser, the listing for a client asking for JSON.
    for path in ("/", "/_sandbox"):
        assert client.get(path, headers={"Accept": "application/json"}).json() == {
            "services": [
                {"name": "slack", "prefix": "/slack"},
                {"name": "sheets", "prefix": "/sheets"},
                {"name": "notion", "prefix": "/notion"},
                {"name": "jira", "prefix": "/jira"},
                {"name": "targets", "prefix": "/targets"},
                {"name": "kakaowork", "prefix": "/kakaowork"},
                {"name": "naverworks", "prefix": "/naverworks"},
                {"name": "jandi", "prefix": "/jandi"},
                {"name": "dooray", "prefix": "/dooray"},
                {"name": "twilio", "prefix": "/twilio"},
                {"name": "solapi", "prefix": "/solapi"},
            ]
        }


def test_fixed_sandbox_webhook_is_accepted_and_logged(sandbox: Sandbox, state: SandboxState):
    url = sandbox.sandbox_webhook_url
    assert url.endswith("/slack/services/T0000/B0000/sandbox")
    assert httpx.post(url, json={"text": "안녕하세요"}).text == "ok"
    assert [post.text for post in state.slack.messages_for(url)] == ["안녕하세요"]
    assert [(r.method, r.path, r.status) for r in state.slack.core.requests] == [
        ("POST", "/services/T0000/B0000/sandbox", 200)
    ]


def test_route_faults_drop_the_connection_or_answer_in_slack_words(
    sandbox: Sandbox, state: SandboxState
):
    url = sandbox.sandbox_webhook_url
    state.slack.core.inject_fault(kind="drop")
    # A dropped connection reaches the client as a close (FIN) or, when the request is still
    # being written, a reset (RST): either way no answer came.
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        httpx.post(url, json={"text": "x"})
    state.slack.core.inject_fault(429, retry_after=3)
    limited = httpx.post(url, json={"text": "x"})
    assert (limited.status_code, limited.text, limited.headers["retry-after"]) == (
        429,
        "rate_limited",
        "3",
    )
    assert state.slack.posts == []
    assert [(r.status, r.fault) for r in state.slack.core.requests] == [
        (0, "drop"),
        (429, "status"),
    ]

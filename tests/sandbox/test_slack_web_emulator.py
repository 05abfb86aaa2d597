"""The Slack Web API emulator, driven by slack-sdk's WebClient (the client the bot block uses)."""

from __future__ import annotations

import httpx
import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from moltbot.sandbox import Sandbox
from moltbot.sandbox.slack_web import SANDBOX_BOT_TOKEN, SANDBOX_CHANNEL_ID


def client(sandbox: Sandbox, token: str = SANDBOX_BOT_TOKEN) -> WebClient:
    return WebClient(token=token, base_url=f"{sandbox.base_url}/slack/api/", retry_handlers=[])


def test_auth_test_and_conversations_info_arrive_as_form_posts(sandbox: Sandbox):
    web = client(sandbox)

    identity = web.auth_test()
    info = web.conversations_info(channel=SANDBOX_CHANNEL_ID)

    assert identity["ok"] is True and identity["bot_id"] == "B0MOLTBOT"
    assert info["channel"]["name"] == "moltbot-alerts" and info["channel"]["is_member"] is True


@pytest.mark.parametrize(("token", "error"), [("", "not_authed"), ("xoxb-unknown", "invalid_auth")])
def test_errors_are_http_200_with_ok_false(sandbox: Sandbox, token: str, error: str):
    with pytest.raises(SlackApiError) as raised:
        client(sandbox, token).chat_postMessage(channel=SANDBOX_CHANNEL_ID, text="안녕")

    assert raised.value.response.status_code == 200
    assert raised.value.response.data == {"ok": False, "error": error}
    assert sandbox.state.slack.web.messages == []


def test_unknown_channel_and_unknown_message(sandbox: Sandbox):
    web = client(sandbox)
    with pytest.raises(SlackApiError) as no_channel:
        web.chat_postMessage(channel="C0NOPE", text="x")
    with pytest.raises(SlackApiError) as no_message:
        web.chat_update(channel=SANDBOX_CHANNEL_ID, ts="1.000001", text="x")

    assert no_channel.value.response["error"] == "channel_not_found"
    assert no_message.value.response["error"] == "message_not_found"


def test_thread_reply_update_and_replies(sandbox: Sandbox):
    web = client(sandbox)
    parent = web.chat_postMessage(channel=SANDBOX_CHANNEL_ID, text="장애 발생")
    reply = web.chat_postMessage(channel=SANDBOX_CHANNEL_ID, text="복구됨", thread_ts=parent["ts"])
    updated = web.chat_update(channel=SANDBOX_CHANNEL_ID, ts=parent["ts"], text="✅ 장애 발생")
    thread = web.conversations_replies(channel=SANDBOX_CHANNEL_ID, ts=parent["ts"])

    assert isinstance(parent["ts"], str) and reply["message"]["thread_ts"] == parent["ts"]
    assert updated["text"] == "✅ 장애 발생"
    assert [m["text"] for m in thread["messages"]] == ["✅ 장애 발생", "복구됨"]
    listed = httpx.get(f"{sandbox.base_url}/slack/_sandbox/api/messages").json()
    assert [m["text"] for m in listed] == ["✅ 장애 발생", "복구됨"]


def test_per_channel_rate_limit_answers_429_with_retry_after(sandbox: Sandbox):
    now = [1_760_000_000.0]
    sandbox.state.slack.web.clock = lambda: now[0]
    web = client(sandbox)
    for n in range(3):
        web.chat_postMessage(channel=SANDBOX_CHANNEL_ID, text=f"burst {n}")

    with pytest.raises(SlackApiError) as limited:
        web.chat_postMessage(channel=SANDBOX_CHANNEL_ID, text="one too many")
    now[0] += 1.0
    web.chat_postMessage(channel=SANDBOX_CHANNEL_ID, text="a second later")

    assert limited.value.response.status_code == 429
    assert limited.value.response.headers["Retry-After"] == "1"
    assert limited.value.response["error"] == "ratelimited"
    assert len(sandbox.state.slack.web.messages) == 4


def test_injected_faults_hit_only_the_named_method(sandbox: Sandbox):
    sandbox.state.slack.web.inject_fault(503, method="chat.postMessage")
    web = client(sandbox)

    assert web.auth_test()["ok"] is True
    with pytest.raises(SlackApiError) as failed:
        web.chat_postMessage(channel=SANDBOX_CHANNEL_ID, text="x")

    assert failed.value.response.status_code == 503
    assert sandbox.state.slack.web.messages == []

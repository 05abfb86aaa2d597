"""Urgent alerts carry a signed acknowledgement link: the gateway's pages and `outbox ack`."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from blocks import TwilioSms
from moltbot.cli import app
from moltbot.config.alerting import EscalationConfig
from moltbot.effects import ChannelExecutor, Route, perform
from moltbot.effects.escalation import (
    AckTokenError,
    EscalationWatch,
    sign_ack_token,
    verify_ack_token,
)
from moltbot.effects.executors import message_intent
from moltbot.messages import Message
from moltbot.sandbox.twilio import SANDBOX_ACCOUNT_SID, SANDBOX_AUTH_TOKEN, SANDBOX_FROM_NUMBER
from moltbot.state.audit import AuditTrail
from moltbot.state.escalations import EscalationStatus, EscalationStore
from moltbot.state.inbox import Inbox
from moltbot.state.ledger import Ledger
from moltbot.webhooks.acks import AckDesk
from moltbot.webhooks.app import create_gateway_app
from moltbot.webhooks.config import GatewayConfig

ROUTE = Route(("team-slack", "oncall-sms"))
CONFIG = EscalationConfig(after_minutes=15, public_url="https://hooks.example.com")
SECRET = b"k" * 32
ACK_LINK = re.compile(r"https://hooks\.example\.com/ack/([A-Za-z0-9_\-]+\.\d+\.[A-Za-z0-9_\-]+)")


def alert(severity: str = "critical") -> Message:
    return Message(
        key="service-health:down:결제-api",
        automation="service-health",
        severity=severity,  # type: ignore[arg-type]
        title="결제 API 다운",
        text="결제 API가 3번 연속 응답하지 않습니다.",
        slack_blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": "결제 API 다운"}}],
    )


@pytest.fixture
def escalating(sandbox, make_runtime, ledger, clock, destinations):
    """A runtime whose urgent messages escalate from the Slack emulator to Twilio SMS."""
    sms = TwilioSms(
        account_sid=SANDBOX_ACCOUNT_SID,
        auth_token=SANDBOX_AUTH_TOKEN,
        from_number=SANDBOX_FROM_NUMBER,
        to_numbers=["+821012345678"],
        base_url=f"{sandbox.base_url}/twilio",
    )
    executors = {**destinations, "oncall-sms": ChannelExecutor("oncall-sms", sms)}
    return make_runtime(executors=executors, watch=EscalationWatch(ledger, CONFIG, "ko", clock))


def gateway(ledger: Ledger, clock) -> TestClient:
    desk = AckDesk(ledger, "ko", clock=clock)
    return TestClient(create_gateway_app(GatewayConfig(), Inbox(ledger), {}, acks=desk))


def test_tokens_are_signed_and_expire(clock) -> None:
    expires = clock.now + timedelta(hours=1)
    token = sign_ack_token("abc", expires, SECRET)

    assert verify_ack_token(token, SECRET, clock.now) == "abc"
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    for bad, reason in [
        (forged, "wrong signature"),
        (sign_ack_token("abd", expires, b"x" * 32), "wrong signature"),
        (token.replace("abc", "abd", 1), "wrong signature"),
        ("abc.notanumber.sig", "malformed"),
        ("", "malformed"),
    ]:
        with pytest.raises(AckTokenError, match=reason):
            verify_ack_token(bad, SECRET, clock.now)
    with pytest.raises(AckTokenError, match="expired"):
        verify_ack_token(token, SECRET, expires)


def test_an_urgent_alert_carries_its_link_and_arms_the_first_step(
    sandbox, escalating, ledger, clock
) -> None:
    [outcome] = perform([message_intent(alert(), ROUTE)], escalating)
    [calm] = perform([message_intent(alert("warning").model_copy(update={"key": "w"}), ROUTE)],
                     escalating)  # fmt: skip

    assert outcome.status == "done" and outcome.via == "team-slack"
    posts = sandbox.state.slack.messages_for(sandbox.slack_webhook_url("effects"))
    assert len(posts) == 2
    link = posts[0].payload["blocks"][-1]["text"]["text"]
    assert ACK_LINK.search(link) and "이 알림 확인" in link
    assert not ACK_LINK.search(json.dumps(posts[1].payload))  # a warning carries no link
    assert calm.status == "done"
    escalation = EscalationStore(ledger).get(outcome.key)
    assert escalation is not None and escalation.status == EscalationStatus.OPEN
    assert escalation.step == 0 and escalation.next_at == clock.now + timedelta(minutes=15)
    assert [s["link"] for s in escalation.steps] == ["team-slack"]
    assert EscalationStore(ledger).get(calm.key) is None
    assert sandbox.state.twilio.messages == []


def test_get_never_acknowledges_post_does_once(sandbox, escalating, ledger, clock) -> None:
    [outcome] = perform([message_intent(alert(), ROUTE)], escalating)
    text = sandbox.state.slack.messages_for(sandbox.slack_webhook_url("effects"))[0].payload
    token = ACK_LINK.search(json.dumps(text)).group(1)  # type: ignore[union-attr]
    client = gateway(ledger, clock)

    page = client.get(f"/ack/{token}")
    again = client.get(f"/ack/{token}", headers={"User-Agent": "Slackbot-LinkExpanding 1.0"})

    assert page.status_code == 200 and again.status_code == 200
    assert '<form method="post">' in page.text and "결제 API 다운" in page.text
    assert page.headers["cache-control"] == "no-store"
    assert EscalationStore(ledger).get(outcome.key).status == EscalationStatus.OPEN  # type: ignore[union-attr]

    acked = client.post(f"/ack/{token}")
    twice = client.post(f"/ack/{token}")

    assert acked.status_code == 200 and "확인했습니다" in acked.text
    assert twice.status_code == 200 and "이미 확인된" in twice.text
    escalation = EscalationStore(ledger).get(outcome.key)
    assert escalation is not None and escalation.status == EscalationStatus.ACKNOWLEDGED
    assert escalation.acked_by == "link" and escalation.next_at is None
    assert escalation.payload is None  # the message is not kept once settled
    actions = [row.action for row in AuditTrail(ledger).rows()]
    assert actions.count("acknowledge") == 1


def test_expired_forged_and_unknown_links_are_refused(sandbox, escalating, ledger, clock) -> None:
    [outcome] = perform([message_intent(alert(), ROUTE)], escalating)
    text = json.dumps(
        sandbox.state.slack.messages_for(sandbox.slack_webhook_url("effects"))[0].payload
    )
    token = ACK_LINK.search(text).group(1)  # type: ignore[union-attr]
    token_id, expiry, signature = token.split(".")
    client = gateway(ledger, clock)

    forged = client.post(f"/ack/{token_id}.{int(expiry) + 86400}.{signature}")
    malformed = client.post("/ack/nothing-here")
    clock.advance(24 * 3600)
    expired_get = client.get(f"/ack/{token}")
    expired = client.post(f"/ack/{token}")

    assert forged.status_code == 403 and "유효하지 않은" in forged.text
    assert malformed.status_code == 403
    assert expired_get.status_code == 410 and expired.status_code == 410
    for answer in (forged, malformed, expired):
        assert token_id not in answer.text and signature not in answer.text
    assert EscalationStore(ledger).get(outcome.key).status == EscalationStatus.OPEN  # type: ignore[union-attr]


def test_outbox_ack_from_the_command_line(sandbox, escalating, ledger, monkeypatch) -> None:
    monkeypatch.setenv("MOLTBOT_LEDGER_URL", str(ledger.engine.url))
    [outcome] = perform([message_intent(alert(), ROUTE)], escalating)
    runner = CliRunner()

    first = runner.invoke(app, ["outbox", "ack", f"{outcome.key}:escalation:1", "--json"])
    second = runner.invoke(app, ["outbox", "ack", outcome.key])
    unknown = runner.invoke(app, ["outbox", "ack", "no-such:key"])
    korean = runner.invoke(app, ["--locale", "ko", "outbox", "ack", outcome.key])

    assert first.exit_code == 0, first.output
    document = json.loads(first.stdout)
    assert document["key"] == outcome.key and document["status"] == "acknowledged"
    assert document["acked_by"].startswith("user:")
    assert second.exit_code == 0 and "already acknowledged" in second.stdout
    assert korean.exit_code == 0 and "이미 확인됨" in korean.stdout
    assert unknown.exit_code == 2
    assert "no urgent alert awaiting acknowledgement with key 'no-such:key'" in unknown.stderr
    with Ledger(str(ledger.engine.url)) as reopened:
        escalation = EscalationStore(reopened).get(outcome.key)
    assert escalation is not None and escalation.status == EscalationStatus.ACKNOWLEDGED

"""The on-call flow end to end: real Prefect API, sandbox Slack and Twilio, ledger, gateway."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from blocks import SlackIncomingWebhook, TwilioSms
from flows.on_call.flow import on_call
from moltbot.blockdocs import save_block_document
from moltbot.effects import Route, perform
from moltbot.effects.channels import channel_executors
from moltbot.effects.executors import load_payload, message_intent
from moltbot.effects.quiet import HeldMessage, plan_digests
from moltbot.effects.runtime import runtime_from_settings
from moltbot.messages import Message
from moltbot.sandbox.twilio import SANDBOX_ACCOUNT_SID, SANDBOX_AUTH_TOKEN, SANDBOX_FROM_NUMBER
from moltbot.state.audit import AuditTrail
from moltbot.state.escalations import EscalationStatus, EscalationStore
from moltbot.state.inbox import Inbox
from moltbot.state.ledger import EffectStatus, Ledger
from moltbot.webhooks.acks import AckDesk
from moltbot.webhooks.app import create_gateway_app
from moltbot.webhooks.config import GatewayConfig

pytestmark = pytest.mark.slow

ONCALL = "+821099990000"
AT_23 = datetime(2026, 12, 3, 14, 0, tzinfo=UTC)  # 23:00 in Seoul
AT_08 = datetime(2026, 12, 3, 23, 0, tzinfo=UTC)  # 08:00 the next morning
CONFIG = """
[quiet_hours]
start = "22:00"
end = "08:00"

[escalation]
after_minutes = 15
public_url = "https://hooks.example.com"
"""
ACK_LINK = re.compile(r"https://hooks\.example\.com/ack/(\S+\.\d+\.[A-Za-z0-9_\-]+)")


@pytest.fixture
def channels(prefect_api: str, sandbox) -> str:
    """`oncall-slack` (the Slack emulator) and `oncall-sms` (the Twilio emulator), saved."""
    url = sandbox.slack_webhook_url("oncall")
    save_block_document(SlackIncomingWebhook(url=url), "oncall-slack")
    save_block_document(
        TwilioSms(
            account_sid=SANDBOX_ACCOUNT_SID,
            auth_token=SANDBOX_AUTH_TOKEN,
            from_number=SANDBOX_FROM_NUMBER,
            to_numbers=[ONCALL],
            base_url=f"{sandbox.base_url}/twilio",
        ),
        "oncall-sms",
    )
    Path("moltbot.toml").write_text(CONFIG, encoding="utf-8")
    return url


def alert(item: str, severity: str) -> Message:
    return Message(
        key=f"inventory-alert:{item}",
        automation="inventory-alert",
        severity=severity,  # type: ignore[arg-type]
        title=f"재고 알림: {item}",
        text=f"{item}의 재고를 확인하세요.",
    )


def send_at(now: datetime, messages: list[Message], route: Route) -> list[str]:
    """Deliver as an automation does (the runtime from settings), with the clock at `now`."""
    with Ledger.from_settings() as ledger:
        runtime = runtime_from_settings(ledger, channel_executors(list(route.links)))
        runtime.clock = lambda: now
        outcomes = perform([message_intent(m, route) for m in messages], runtime)
    return [outcome.status for outcome in outcomes]


def slack_texts(sandbox, url: str) -> list[str]:
    return [post.payload["text"] for post in sandbox.state.slack.messages_for(url)]


def test_five_low_alerts_at_23_become_one_digest_at_08_and_an_urgent_one_goes_at_once(
    channels: str, sandbox
) -> None:
    route = Route(("oncall-slack",))
    low = [alert(f"SKU-{n}", "warning" if n % 2 else "info") for n in range(5)]

    statuses = send_at(AT_23, [*low, alert("SKU-9", "critical")], route)
    early = on_call(now=AT_08 - timedelta(minutes=1))

    assert statuses == ["queued"] * 5 + ["done"]
    [urgent] = slack_texts(sandbox, channels)
    assert "SKU-9" in urgent
    assert early["digests"] == [] and early["released"] == 0

    morning = on_call(now=AT_08 + timedelta(seconds=30))
    again = on_call(now=AT_08 + timedelta(minutes=1))

    texts = slack_texts(sandbox, channels)
    assert len(texts) == 2
    digest = texts[1]
    assert all(f"재고 알림: SKU-{n}" in digest for n in range(5)) and "SKU-9" not in digest
    assert morning["released"] == 5
    assert [(d["messages"], d["status"]) for d in morning["digests"]] == [(5, "done")]
    assert again["digests"] == [] and again["released"] == 0
    with Ledger.from_settings() as ledger:
        rows = ledger.effects(automation="inventory-alert")
        assert ledger.effects(status=EffectStatus.QUEUED) == []
    digest_key = morning["deliveries"][0]["key"]
    assert {row.remote_id for row in rows if "SKU-9" not in row.key} == {digest_key}
    assert all(row.status == EffectStatus.DONE and row.payload is None for row in rows)


def test_no_acknowledgement_in_15_minutes_escalates_to_sms_once(channels: str, sandbox) -> None:
    route = Route(("oncall-slack", "oncall-sms"))
    start = datetime(2026, 12, 3, 5, 0, tzinfo=UTC)

    assert send_at(start, [alert("SKU-1", "critical")], route) == ["done"]
    waiting = on_call(now=start + timedelta(minutes=14))
    assert waiting["escalations"] == [] and sandbox.state.twilio.messages_to(ONCALL) == []

    escalated = on_call(now=start + timedelta(minutes=16))
    later = on_call(now=start + timedelta(minutes=40))

    [sms] = sandbox.state.twilio.messages_to(ONCALL)
    [first_link] = ACK_LINK.findall(slack_texts(sandbox, channels)[0])
    assert "[에스컬레이션]" in sms.body or "[Escalated]" in sms.body
    assert first_link in sms.body  # the SMS carries the same acknowledgement link
    assert [(e["step"], e["via"], e["status"]) for e in escalated["escalations"]] == [
        (1, "oncall-sms", "done")
    ]
    assert later["escalations"] == []
    with Ledger.from_settings() as ledger:
        [escalation] = [
            e for e in [EscalationStore(ledger).get("inventory-alert:SKU-1:oncall-slack")] if e
        ]
        actions = [row.action for row in AuditTrail(ledger).rows()]
    assert escalation.status == EscalationStatus.ENDED  # the route ended at the SMS
    assert [step["link"] for step in escalation.steps] == ["oncall-slack", "oncall-sms"]
    assert actions.count("escalate") == 1


def test_an_acknowledgement_by_the_links_post_stops_the_escalation(channels, sandbox) -> None:
    route = Route(("oncall-slack", "oncall-sms"))
    start = datetime(2026, 12, 3, 5, 0, tzinfo=UTC)
    send_at(start, [alert("SKU-2", "critical")], route)
    [token] = ACK_LINK.findall(slack_texts(sandbox, channels)[0])

    with Ledger.from_settings() as ledger:
        desk = AckDesk(ledger, "en", clock=lambda: start + timedelta(minutes=5))
        client = TestClient(create_gateway_app(GatewayConfig(), Inbox(ledger), {}, acks=desk))
        preview = client.get(f"/ack/{token}")
        after_preview = on_call(now=start + timedelta(minutes=16))
        assert preview.status_code == 200
        assert [e["via"] for e in after_preview["escalations"]] == ["oncall-sms"]

    sandbox.state.twilio.reset()
    send_at(start, [alert("SKU-3", "critical")], route)
    [token] = ACK_LINK.findall(slack_texts(sandbox, channels)[-1])
    with Ledger.from_settings() as ledger:
        desk = AckDesk(ledger, "en", clock=lambda: start + timedelta(minutes=5))
        client = TestClient(create_gateway_app(GatewayConfig(), Inbox(ledger), {}, acks=desk))
        assert client.post(f"/ack/{token}").status_code == 200

    acknowledged = on_call(now=start + timedelta(minutes=16))

    assert acknowledged["escalations"] == []
    assert sandbox.state.twilio.messages_to(ONCALL) == []


def test_a_crash_after_the_digest_went_releases_without_sending_it_again(
    channels: str, sandbox
) -> None:
    route = Route(("oncall-slack",))
    send_at(AT_23, [alert(f"SKU-{n}", "info") for n in range(3)], route)
    # The run that sent the digest died before recording its members: only the digest is done.
    with Ledger.from_settings() as ledger:
        held = [
            HeldMessage(e.key, load_payload("message", e.payload), route, e.due_at, e.created_at)
            for e in ledger.queued_due(AT_08)
        ]
        [digest] = plan_digests(held, locale="en", timezone="Asia/Seoul")
        runtime = runtime_from_settings(
            ledger, channel_executors(["oncall-slack"]), quiet_and_escalation=False
        )
        [sent] = perform([message_intent(digest.message, digest.route)], runtime)
    assert sent.status == "done"

    after = on_call(now=AT_08 + timedelta(minutes=1))

    assert [(d["messages"], d["status"]) for d in after["digests"]] == [(3, "already_done")]
    assert after["released"] == 3
    assert len(slack_texts(sandbox, channels)) == 1  # the digest, once
    with Ledger.from_settings() as ledger:
        assert ledger.effects(status=EffectStatus.QUEUED) == []

"""The JANDI and Dooray! webhook channels against their sandbox emulators, alone and along a
route that falls back from JANDI to Dooray!."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from blocks import DoorayIncomingHook, JandiIncomingWebhook
from blocks.jandi import JANDI_ACCEPT, MAX_CONNECT_INFO
from moltbot.blockcheck import check_block
from moltbot.cli import app
from moltbot.effects import ChannelExecutor, EffectsRuntime, Route, perform
from moltbot.effects.executors import message_intent
from moltbot.effects.preview import channel_preview
from moltbot.errors import DeliveryError
from moltbot.messages import Message
from moltbot.retrying import RetryPolicy
from moltbot.sandbox import Sandbox
from moltbot.sandbox.jandi import token_for
from moltbot.state.ledger import Ledger

ROUTE = Route(("team-jandi", "team-dooray"))


class Clock:
    """Seconds that move only when a test (or an injected sleep) moves them."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def alert(item: str = "2026-12-02", severity: str = "critical", items: int = 2) -> Message:
    lines = [f"• *결제-{n}*: 실패율 {10 + n}% &gt; 기준 5%" for n in range(items)]
    return Message(
        key=f"jandi-dooray-test:{item}",
        automation="payment-failures",
        severity=severity,
        title="결제 실패 급증 알림",
        text="이메일 전용 본문: 고객 홍길동",
        slack_blocks=[
            {"type": "header", "text": {"type": "plain_text", "text": "결제 실패 급증 알림"}},
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": "결제 서비스 2곳이 기준을 넘었습니다\n"
                    "<https://ops.moltbot.test/runs/42|실행 기록 보기>",
                },
            },
            {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}},
        ],
    )


def jandi(sandbox: Sandbox, **fields: object) -> JandiIncomingWebhook:
    return JandiIncomingWebhook(url=sandbox.jandi_webhook_url("team"), **fields)


def dooray(sandbox: Sandbox, **fields: object) -> DoorayIncomingHook:
    return DoorayIncomingHook(url=sandbox.dooray_hook_url("team"), **fields)


@pytest.fixture
def waits() -> list[float]:
    return []


@pytest.fixture
def make_runtime(sandbox: Sandbox, tmp_path: Path, waits: list[float]):
    """Runtimes over a real ledger: team-jandi, then team-dooray; sleeps are recorded (never
    slept), and `on_sleep` lets a test move an emulator's clock."""

    def build(
        jandi_block: JandiIncomingWebhook | None = None, on_sleep=lambda seconds: None
    ) -> EffectsRuntime:
        def sleep(seconds: float) -> None:
            waits.append(seconds)
            on_sleep(seconds)

        return EffectsRuntime(
            ledger=ledger,
            executors={
                "team-jandi": ChannelExecutor("team-jandi", jandi_block or jandi(sandbox)),
                "team-dooray": ChannelExecutor("team-dooray", dooray(sandbox)),
            },
            retry=RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02),
            hold_wait_seconds=0,
            sleep=sleep,
        )

    with Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite3'}") as ledger:
        yield build


# --------------------------------------------------------------------------- wire format


def test_jandi_post_is_body_and_connect_info_with_korean_intact(sandbox: Sandbox):
    jandi(sandbox).send(alert())

    [post] = sandbox.state.jandi.posts
    assert post.payload == {
        "body": "결제 실패 급증 알림\n결제 서비스 2곳이 기준을 넘었습니다\n"
        "[실행 기록 보기](https://ops.moltbot.test/runs/42)",
        "connectColor": "#EB5757",
        "connectInfo": [
            {"title": "결제-0", "description": "실패율 10% > 기준 5%"},
            {"title": "결제-1", "description": "실패율 11% > 기준 5%"},
        ],
    }
    assert post.headers["accept"] == JANDI_ACCEPT
    assert post.headers["content-type"] == "application/json"
    assert "홍길동" not in str(post.payload)  # chat gets the chat text, never the e-mail text


def test_jandi_caps_connect_info_and_counts_the_rest(sandbox: Sandbox):
    jandi(sandbox).send(alert(severity="info", items=MAX_CONNECT_INFO + 3))

    [post] = sandbox.state.jandi.posts
    assert len(post.payload["connectInfo"]) == MAX_CONNECT_INFO
    assert post.payload["body"].endswith("\n…and 3 more")
    assert post.payload["connectColor"] == "#FAC11B"


def test_team_webhook_post_names_the_recipient(sandbox: Sandbox):
    jandi(sandbox, recipient_email="oncall@moltbot.test").send(alert())

    [post] = sandbox.state.jandi.posts
    assert post.payload["email"] == "oncall@moltbot.test"
    assert post.payload["body"].startswith("결제 실패 급증 알림\n")


def test_plain_message_goes_as_it_is(sandbox: Sandbox):
    message = Message(key="k", automation="daily", title="일일 보고서", text="매출 *1,234*원 <b>")

    jandi(sandbox).send(message)
    dooray(sandbox).send(message)

    assert sandbox.state.jandi.posts[0].payload == {
        "body": "일일 보고서\n매출 *1,234*원 <b>",
        "connectColor": "#FAC11B",
    }
    assert sandbox.state.dooray.posts[0].payload == {
        "botName": "moltbot",
        "text": "일일 보고서\n매출 *1,234*원 <b>",
    }


def test_dooray_post_is_text_and_one_attachment_with_korean_intact(sandbox: Sandbox):
    icon = "https://static.moltbot.test/bot.png"
    dooray(sandbox, bot_name="몰트봇", bot_icon_image=icon).send(alert())

    [post] = sandbox.state.dooray.posts
    assert post.payload == {
        "botName": "몰트봇",
        "botIconImage": icon,
        "text": "결제 실패 급증 알림\n결제 서비스 2곳이 기준을 넘었습니다\n"
        "실행 기록 보기 (https://ops.moltbot.test/runs/42)",
        "attachments": [
            {
                "title": "결제 실패 급증 알림",
                "titleLink": "https://ops.moltbot.test/runs/42",
                "text": "결제-0: 실패율 10% > 기준 5%\n결제-1: 실패율 11% > 기준 5%",
                "color": "#EB5757",
            }
        ],
    }
    assert "홍길동" not in str(post.payload)


# --------------------------------------------------------------------------- auth failure


@pytest.mark.parametrize(
    ("make_block", "kind"),
    [
        (lambda url: JandiIncomingWebhook(url=url), "JANDI webhook"),
        (lambda url: DoorayIncomingHook(url=url), "Dooray! hook"),
    ],
)
def test_a_removed_webhook_is_one_line_naming_the_block_without_the_url(
    sandbox: Sandbox, prefect_api: str, make_block, kind: str
):
    mount = "jandi/connect-api/webhook/1/" if "JANDI" in kind else "dooray/services/1/2/"
    url = f"{sandbox.base_url}/{mount}secret-token-4711"
    name = f"removed-{uuid.uuid4().hex[:8]}"
    block = make_block(url)
    block.save(name)

    with pytest.raises(DeliveryError) as caught:
        type(block).load(name).send(alert())

    text = str(caught.value)
    assert "\n" not in text
    assert text.startswith(f"{kind} '{name}': ") and " 404 " in text and "url" in text
    assert "secret-token-4711" not in text and sandbox.base_url not in text
    assert caught.value.transient is False


def test_a_removed_jandi_webhook_fails_over_to_dooray(sandbox: Sandbox, make_runtime):
    runtime = make_runtime()
    sandbox.state.jandi.unregister(sandbox.jandi_webhook_url("team"))

    [outcome] = perform([message_intent(alert(), ROUTE)], runtime)

    assert outcome.status == "done" and outcome.via == "team-dooray"
    assert [t.link for t in outcome.tried] == ["team-jandi"]
    assert "404" in outcome.tried[0].error
    assert sandbox.state.jandi.posts == []
    [refusal] = sandbox.state.jandi.rejected
    assert refusal.status == 404
    assert len(sandbox.state.dooray.posts) == 1


# --------------------------------------------------------------------------- 429, 5xx, drop


def test_429_with_retry_after_waits_as_told_then_delivers_once(
    sandbox: Sandbox, make_runtime, waits: list[float]
):
    sandbox.state.jandi.inject_fault(429, retry_after=7)

    [outcome] = perform([message_intent(alert(), ROUTE)], make_runtime())

    assert outcome.status == "done" and outcome.via == "team-jandi"
    assert waits == [7.0]
    assert len(sandbox.state.jandi.posts) == 1
    assert sandbox.state.dooray.posts == []


def test_429_without_retry_after_backs_off_then_delivers_once(
    sandbox: Sandbox, make_runtime, waits: list[float]
):
    # The emulator's (assumed) limit, one post a minute here, names no wait; each of our
    # backoff sleeps moves its clock on by a minute.
    clock = Clock()
    sandbox.state.jandi.set_rate_limit(1, clock=clock)
    runtime = make_runtime(on_sleep=lambda seconds: clock.advance(60.0))

    outcomes = perform([message_intent(alert(day), ROUTE) for day in ("d1", "d2")], runtime)

    assert [(o.status, o.via) for o in outcomes] == [("done", "team-jandi")] * 2
    assert len(waits) == 1 and waits[0] < 1  # our backoff, not a server-named wait
    assert len(sandbox.state.jandi.posts) == 2
    assert [r.status for r in sandbox.state.jandi.rejected] == [429]
    assert sandbox.state.dooray.posts == []


def test_429_forever_fails_over_to_dooray(sandbox: Sandbox, make_runtime, waits: list[float]):
    sandbox.state.jandi.inject_fault(429, count=None, retry_after=5)

    [outcome] = perform([message_intent(alert(), ROUTE)], make_runtime())

    assert outcome.status == "done" and outcome.via == "team-dooray"
    assert "429" in outcome.tried[0].error
    assert waits == [5.0, 5.0]
    assert sandbox.state.jandi.posts == []
    assert len(sandbox.state.dooray.posts) == 1


def test_5xx_is_retried_and_delivered_once(sandbox: Sandbox, make_runtime, waits: list[float]):
    sandbox.state.jandi.inject_fault(503)

    [outcome] = perform([message_intent(alert(), ROUTE)], make_runtime())

    assert outcome.status == "done" and outcome.via == "team-jandi"
    assert len(waits) == 1
    assert len(sandbox.state.jandi.posts) == 1
    assert sandbox.state.dooray.posts == []


def test_5xx_forever_fails_over_to_dooray(sandbox: Sandbox, make_runtime):
    sandbox.state.jandi.inject_fault(500, count=None)

    [outcome] = perform([message_intent(alert(), ROUTE)], make_runtime())

    assert outcome.status == "done" and outcome.via == "team-dooray"
    assert "500" in outcome.tried[0].error
    assert sandbox.state.jandi.attempts == 3
    assert len(sandbox.state.dooray.posts) == 1


def test_dooray_5xx_and_429_are_retried_too(sandbox: Sandbox, make_runtime, waits: list[float]):
    sandbox.state.jandi.inject_fault(500, count=None)
    sandbox.state.dooray.inject_fault(502)
    sandbox.state.dooray.inject_fault(429, retry_after=3)

    [outcome] = perform([message_intent(alert(), ROUTE)], make_runtime())

    assert outcome.status == "done" and outcome.via == "team-dooray"
    assert 3.0 in waits
    assert len(sandbox.state.dooray.posts) == 1
    assert sandbox.state.dooray.attempts == 3


def test_dropped_connection_is_retried_and_delivered_once(sandbox: Sandbox, make_runtime):
    sandbox.state.jandi.inject_fault(kind="drop")

    [outcome] = perform([message_intent(alert(), ROUTE)], make_runtime())

    assert outcome.status == "done" and outcome.via == "team-jandi"
    assert [r.fault for r in sandbox.state.jandi.core.requests] == ["drop", None]
    assert len(sandbox.state.jandi.posts) == 1
    assert sandbox.state.dooray.posts == []


def test_an_answer_lost_after_the_post_is_not_resent_on_an_at_most_once_route(
    sandbox: Sandbox, make_runtime
):
    sandbox.state.jandi.inject_fault(kind="drop", after_apply=True)
    route = Route(ROUTE.links, policy="at_most_once")

    [outcome] = perform([message_intent(alert(), route)], make_runtime())

    assert outcome.status == "in_doubt"
    assert len(sandbox.state.jandi.posts) == 1  # it arrived once, and only once
    assert sandbox.state.dooray.posts == []


def test_a_dooray_refusal_quotes_its_result_message_and_is_permanent(sandbox: Sandbox):
    sandbox.state.dooray.core.inject_fault(400, path="^/services/", message="invalid hook")

    with pytest.raises(DeliveryError) as caught:
        dooray(sandbox).send(alert())

    assert caught.value.transient is False
    assert "Dooray! answered 400 invalid hook" in str(caught.value)
    assert sandbox.state.dooray.posts == []


# --------------------------------------------------------------------------- preview, CLI


def test_dry_run_preview_shows_the_payload_and_calls_nothing(sandbox: Sandbox):
    intent = message_intent(alert(), ROUTE)

    jandi_preview = channel_preview(
        "team-jandi", jandi(sandbox, recipient_email="a@b.test"), intent
    )
    dooray_preview = channel_preview("team-dooray", dooray(sandbox), intent)

    assert jandi_preview is not None and dooray_preview is not None
    assert jandi_preview.lines[:2] == ["to: ***@b.test", "결제 실패 급증 알림"]
    assert "  ▸ 결제-0: 실패율 10% > 기준 5%" in jandi_preview.lines
    assert dooray_preview.lines[:2] == ["from: moltbot", "결제 실패 급증 알림"]
    assert "    결제-1: 실패율 11% > 기준 5%" in dooray_preview.lines
    assert sandbox.state.jandi.attempts == sandbox.state.dooray.attempts == 0


def test_blocks_list_and_blocks_test_send(sandbox: Sandbox, prefect_api: str):
    suffix = uuid.uuid4().hex[:8]
    jandi(sandbox).save(f"jandi-{suffix}")
    dooray(sandbox).save(f"dooray-{suffix}")
    JandiIncomingWebhook(url=f"{sandbox.base_url}/jandi/connect-api/webhook/1/gone").save(
        f"jandi-gone-{suffix}"
    )

    result = CliRunner().invoke(app, ["blocks", "list", "--json"])
    listed = {entry["name"]: entry for entry in json.loads(result.stdout)}
    untouched = check_block(f"jandi-{suffix}")
    sent = [check_block(f"{kind}-{suffix}", send=True) for kind in ("jandi", "dooray")]
    gone = check_block(f"jandi-gone-{suffix}", send=True)

    assert listed[f"jandi-{suffix}"]["type"] == "moltbot-jandi-incoming-webhook"
    assert listed[f"dooray-{suffix}"]["type"] == "moltbot-dooray-incoming-hook"
    assert listed[f"jandi-{suffix}"]["secret_set_from"] == "stamp"
    assert token_for("team") not in result.stdout and "services/" not in result.stdout
    assert untouched.ok is None and "--send" in untouched.detail
    assert untouched.target == f"{sandbox.base_url}/jandi/…"
    assert [check.ok for check in sent] == [True, True]
    assert "JANDI answered with success" in sent[0].detail
    assert gone.ok is False and "does not exist any more" in gone.detail
    assert "gone" not in gone.detail.replace(f"jandi-gone-{suffix}", "")
    [jandi_post] = sandbox.state.jandi.posts
    [dooray_post] = sandbox.state.dooray.posts
    assert jandi_post.payload["body"].startswith("moltbot test message")
    assert dooray_post.payload["text"].startswith("moltbot test message")

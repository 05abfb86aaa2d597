"""The KakaoWork bot channel against the sandbox's KakaoWork emulator, alone and along a route."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from blocks import KakaoWorkBot
from blocks.kakaowork import forget_conversations
from moltbot.blockcheck import check_block
from moltbot.blockdocs import saved_blocks
from moltbot.effects import EffectsRuntime, Route, perform
from moltbot.effects.executors import message_intent
from moltbot.effects.preview import channel_preview
from moltbot.errors import DeliveryError
from moltbot.messages import Message
from moltbot.sandbox import Sandbox
from moltbot.sandbox.kakaowork import SANDBOX_KAKAOWORK_APP_KEY, SANDBOX_KAKAOWORK_CONVERSATION
from moltbot.state.ledger import Ledger
from tests.blocks.runtimes import channel_then_email

OPS = "ops@moltbot.test"
ROUTE = Route(("team-kakaowork", "ops-email"))


class Clock:
    """Seconds that move only when a test (or an injected sleep) moves them."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(autouse=True)
def fresh_process_memory() -> Iterator[None]:
    """Each test starts with no remembered conversations or deliveries."""
    forget_conversations()
    yield
    forget_conversations()


def kakao_bot(sandbox: Sandbox, **fields: object) -> KakaoWorkBot:
    values: dict[str, object] = {
        "app_key": SANDBOX_KAKAOWORK_APP_KEY,
        "base_url": f"{sandbox.base_url}/kakaowork",
        "emails": [OPS],
    }
    return KakaoWorkBot(**(values | fields))


def alert(item: str = "2026-12-02", severity: str = "critical") -> Message:
    return Message(
        key=f"kakaowork-test:{item}",
        automation="payment-failures",
        severity=severity,
        title="결제 실패 급증 알림",
        text="이메일 전용 본문",
        slack_blocks=[
            {"type": "header", "text": {"type": "plain_text", "text": "결제 실패 급증 알림"}},
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": "*실패율* 12.5% &gt; 기준 5%\n"
                    "<https://ops.moltbot.test/runs/42|실행 기록 보기>",
                },
            },
        ],
    )


@pytest.fixture
def waits() -> list[float]:
    return []


@pytest.fixture
def make_runtime(sandbox: Sandbox, tmp_path: Path, waits: list[float]):
    """Runtimes over a real ledger: team-kakaowork (the emulator), then ops-email (the SMTP
    sink); sleeps are recorded, and `on_sleep` lets a test move an emulator's clock."""

    def build(bot: KakaoWorkBot, on_sleep=lambda seconds: None) -> EffectsRuntime:
        return channel_then_email(ledger, sandbox, "team-kakaowork", bot, waits, on_sleep)

    with Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite3'}") as ledger:
        yield build


def test_message_goes_as_block_kit_to_the_person_and_the_room_korean_intact(sandbox: Sandbox):
    bot = kakao_bot(sandbox, conversation_id=SANDBOX_KAKAOWORK_CONVERSATION)

    ids = bot.send(alert())
    bot.send(alert("2026-12-03"))

    state = sandbox.state.kakaowork
    direct = state.direct_conversation_of(OPS)
    assert [m.conversation_id for m in state.messages] == [
        SANDBOX_KAKAOWORK_CONVERSATION,
        direct,
    ] * 2
    assert ids == ",".join(m.id for m in state.messages[:2])
    first = state.messages[0]
    assert first.text.startswith("결제 실패 급증 알림\n실패율 12.5% > 기준 5%")
    assert first.blocks[0] == {"type": "header", "text": "결제 실패 급증 알림", "style": "red"}
    assert "실패율 12.5% > 기준 5%\n실행 기록 보기" in first.block_texts()
    assert "이메일 전용 본문" not in str(first.blocks)  # chat gets the chat text only
    [button] = [b for b in first.blocks if b["type"] == "button"]
    assert button["text"] == "실행 기록 보기"
    assert button["action"] == {
        "type": "open_system_browser",
        "value": "https://ops.moltbot.test/runs/42",
    }
    assert {"type": "divider"} in first.blocks
    # The person's room is looked up once per process, not per message.
    assert state.core.count("GET", r"users\.find_by_email") == 1
    assert state.core.count("POST", r"conversations\.open") == 1
    assert state.core.count("POST", r"messages\.send") == 4


def test_a_long_title_keeps_the_header_within_20_characters_and_opens_the_body(sandbox: Sandbox):
    message = Message(
        key="kakaowork-test:long",
        automation="daily-report",
        title="2026년 12월 2일 일일 매출 보고서 (전 지점 합계)",
        text="매출 1,234,567원",
    )

    kakao_bot(sandbox).send(message)

    [sent] = sandbox.state.kakaowork.messages
    header = sent.blocks[0]["text"]
    assert len(header) <= 20 and header.endswith("…")
    assert sent.block_texts()[1:] == [message.title, "매출 1,234,567원"]


def test_a_refused_app_key_is_one_line_naming_the_block_without_the_key(
    sandbox: Sandbox, prefect_api: str
):
    name = f"kakaowork-{uuid.uuid4().hex[:8]}"
    kakao_bot(sandbox, app_key="wrong-kakaowork-key-4711").save(name)
    bot = KakaoWorkBot.load(name)

    with pytest.raises(DeliveryError) as caught:
        bot.send(alert())

    text = str(caught.value)
    assert "\n" not in text
    assert f"KakaoWork bot '{name}'" in text and "invalid_authentication" in text
    assert "app_key" in text and "wrong-kakaowork-key-4711" not in text
    assert caught.value.transient is False
    assert sandbox.state.kakaowork.messages == []


def test_refused_app_key_fails_over_to_email(sandbox: Sandbox, make_runtime):
    sandbox.state.kakaowork.revoke_app_key()

    [outcome] = perform([message_intent(alert(), ROUTE)], make_runtime(kakao_bot(sandbox)))

    assert outcome.status == "done" and outcome.via == "ops-email"
    assert [t.link for t in outcome.tried] == ["team-kakaowork"]
    assert "app_key" in outcome.tried[0].error
    [mail] = sandbox.smtp.messages
    assert mail.message["Subject"] == "결제 실패 급증 알림"


def test_429_with_retry_after_waits_as_told_then_delivers_once(
    sandbox: Sandbox, make_runtime, waits: list[float]
):
    sandbox.state.kakaowork.inject_fault(429, retry_after=7)

    [outcome] = perform([message_intent(alert(), ROUTE)], make_runtime(kakao_bot(sandbox)))

    assert outcome.status == "done" and outcome.via == "team-kakaowork"
    assert waits == [7.0]
    assert len(sandbox.state.kakaowork.messages) == 1
    assert sandbox.smtp.messages == []


def test_429_without_retry_after_backs_off_then_delivers_once(
    sandbox: Sandbox, make_runtime, waits: list[float]
):
    # The emulator's (assumed) limit: one request, then one more a second; it names no wait.
    clock = Clock()
    sandbox.state.kakaowork.set_rate_limit(1.0, 1, clock=clock)
    bot = kakao_bot(sandbox, emails=[], conversation_id=SANDBOX_KAKAOWORK_CONVERSATION)
    runtime = make_runtime(bot, on_sleep=lambda seconds: clock.advance(1.0))

    outcomes = perform([message_intent(alert(day), ROUTE) for day in ("d1", "d2")], runtime)

    assert [(o.status, o.via) for o in outcomes] == [("done", "team-kakaowork")] * 2
    assert len(waits) == 1 and waits[0] < 1  # our backoff, not a server-named wait
    assert len(sandbox.state.kakaowork.messages) == 2
    assert sandbox.state.kakaowork.core.count("POST", r"messages\.send") == 3


def test_5xx_is_retried_and_delivered_once(sandbox: Sandbox, make_runtime, waits: list[float]):
    sandbox.state.kakaowork.inject_fault(503)

    [outcome] = perform([message_intent(alert(), ROUTE)], make_runtime(kakao_bot(sandbox)))

    assert outcome.status == "done" and outcome.via == "team-kakaowork"
    assert len(waits) == 1
    assert len(sandbox.state.kakaowork.messages) == 1


def test_5xx_forever_fails_over_to_email(sandbox: Sandbox, make_runtime):
    sandbox.state.kakaowork.inject_fault(500, count=None)

    [outcome] = perform([message_intent(alert(), ROUTE)], make_runtime(kakao_bot(sandbox)))

    assert outcome.status == "done" and outcome.via == "ops-email"
    assert "500" in outcome.tried[0].error
    assert sandbox.state.kakaowork.messages == []
    assert len(sandbox.smtp.messages) == 1


def test_dropped_connection_is_retried_and_delivered_once(sandbox: Sandbox, make_runtime):
    sandbox.state.kakaowork.inject_fault(kind="drop")

    [outcome] = perform([message_intent(alert(), ROUTE)], make_runtime(kakao_bot(sandbox)))

    assert outcome.status == "done" and outcome.via == "team-kakaowork"
    [dropped] = [r for r in sandbox.state.kakaowork.core.requests if r.fault == "drop"]
    assert dropped.path == "/v1/messages.send"
    assert len(sandbox.state.kakaowork.messages) == 1


def test_a_retry_after_one_recipient_failed_does_not_post_twice_to_the_other(sandbox: Sandbox):
    state = sandbox.state.kakaowork
    bot = kakao_bot(sandbox, conversation_id=SANDBOX_KAKAOWORK_CONVERSATION)
    # The room takes the message; looking up the person then answers 503.
    state.core.inject_fault(503, path=r"^/v1/users\.find_by_email$", count=1)

    with pytest.raises(DeliveryError):
        bot.send(alert())
    bot.send(alert())

    assert [m.conversation_id for m in state.messages] == [
        SANDBOX_KAKAOWORK_CONVERSATION,
        state.direct_conversation_of(OPS),
    ]


def test_unknown_email_is_permanent_and_names_the_field(sandbox: Sandbox):
    with pytest.raises(DeliveryError) as caught:
        kakao_bot(sandbox, emails=["nobody@moltbot.test"]).send(alert())

    assert caught.value.transient is False
    assert "user_not_found" in str(caught.value) and "emails" in str(caught.value)


def test_a_block_needs_a_recipient():
    with pytest.raises(ValueError, match="recipient"):
        KakaoWorkBot(app_key="k")


def test_dry_run_preview_shows_the_blocks(sandbox: Sandbox):
    bot = kakao_bot(sandbox)
    intent = message_intent(alert(), Route(("team-kakaowork",)))

    preview = channel_preview("team-kakaowork", bot, intent)

    assert preview is not None
    assert preview.lines[0] == "to: ***@moltbot.test"  # masked like every preview line
    assert "결제 실패 급증 알림" in preview.lines
    assert "[실행 기록 보기] https://ops.moltbot.test/runs/42" in preview.lines
    assert sandbox.state.kakaowork.core.requests == []  # a preview calls nothing


def test_blocks_list_and_blocks_test(sandbox: Sandbox, prefect_api: str):
    name = f"kakaowork-{uuid.uuid4().hex[:8]}"
    kakao_bot(sandbox).save(name)
    wrong = f"kakaowork-wrong-{uuid.uuid4().hex[:8]}"
    kakao_bot(sandbox, app_key="wrong-kakaowork-key-4711").save(wrong)

    listed = {entry["name"]: entry for entry in saved_blocks()}
    check = check_block(name)
    refused = check_block(wrong)

    assert listed[name]["type"] == "moltbot-kakaowork-bot"
    assert listed[name]["target"] == f"{sandbox.base_url}/kakaowork"
    assert check.ok is True and OPS in check.detail and "nothing was sent" in check.detail
    assert refused.ok is False and "app_key" in refused.detail
    assert "wrong-kakaowork-key-4711" not in refused.detail
    assert sandbox.state.kakaowork.messages == []

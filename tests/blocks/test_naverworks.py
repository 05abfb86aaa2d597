"""The NAVER WORKS bot channel against the sandbox's NAVER WORKS emulator, alone and along a
route: JWT token exchange, token caching with an injected clock, and delivery faults."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from blocks import NaverWorksBot
from blocks.naverworks import TOKEN_RENEW_MARGIN_SECONDS, AccessTokenCache
from moltbot.blockcheck import check_block
from moltbot.effects import EffectsRuntime, Route, perform
from moltbot.effects.executors import message_intent
from moltbot.effects.preview import channel_preview
from moltbot.errors import DeliveryError
from moltbot.messages import Message
from moltbot.sandbox import Sandbox
from moltbot.sandbox.naverworks import (
    SANDBOX_CHANNEL_ID,
    SANDBOX_USER_ID,
    TOKEN_LIFETIME_SECONDS,
    generate_private_key_pem,
    sandbox_naverworks_fields,
)
from moltbot.state.ledger import Ledger
from tests.blocks.runtimes import channel_then_email

ROUTE = Route(("team-works", "ops-email"))


class Clock:
    """Epoch seconds that move only when the test moves them (starting now, so the emulator's
    and the block's idea of a token's age agree)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(sandbox: Sandbox) -> Clock:
    """One clock for the block's token cache and the emulator's expiry and rate limit."""
    shared = Clock()
    sandbox.state.naverworks.set_clock(shared)
    yield shared
    sandbox.state.naverworks.set_clock(time.time)


def works_bot(sandbox: Sandbox, clock: Clock, **fields: object) -> NaverWorksBot:
    bot = NaverWorksBot(**(sandbox_naverworks_fields(sandbox.base_url) | fields))
    bot.use_token_cache(AccessTokenCache(clock))
    return bot


def alert(item: str = "2026-12-02", link: bool = True) -> Message:
    lines = "*오류 건수* 37건 (기준 10건)"
    if link:
        lines += "\n<https://ops.moltbot.test/runs/7|실행 기록 보기>"
    return Message(
        key=f"works-test:{item}",
        automation="error-spike",
        severity="critical",
        title="오류 급증 알림",
        text="이메일 전용 본문",
        slack_blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": lines}}],
    )


@pytest.fixture
def waits() -> list[float]:
    return []


@pytest.fixture
def make_runtime(sandbox: Sandbox, tmp_path: Path, waits: list[float]):
    """Runtimes over a real ledger: team-works (the emulator), then ops-email (SMTP sink)."""

    def build(bot: NaverWorksBot, on_sleep=lambda seconds: None) -> EffectsRuntime:
        return channel_then_email(ledger, sandbox, "team-works", bot, waits, on_sleep)

    with Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite3'}") as ledger:
        yield build


def test_a_link_message_reaches_the_channel_korean_intact(sandbox: Sandbox, clock: Clock):
    assert works_bot(sandbox, clock).send(alert()) is None

    [sent] = sandbox.state.naverworks.messages
    assert sent.channel_id == SANDBOX_CHANNEL_ID and sent.user_id is None
    assert sent.content == {
        "type": "link",
        "contentText": "오류 급증 알림\n오류 건수 37건 (기준 10건)\n실행 기록 보기",
        "linkText": "실행 기록 보기",
        "link": "https://ops.moltbot.test/runs/7",
    }
    [token_request] = sandbox.state.naverworks.token_requests
    assert token_request.error is None


def test_a_plain_message_to_a_user_is_text(sandbox: Sandbox, clock: Clock):
    bot = works_bot(sandbox, clock, channel_id=None, user_id=SANDBOX_USER_ID)

    bot.send(alert(link=False))

    [sent] = sandbox.state.naverworks.messages
    assert sent.user_id == SANDBOX_USER_ID
    assert sent.content == {"type": "text", "text": "오류 급증 알림\n오류 건수 37건 (기준 10건)"}


def test_two_links_make_a_button_template(sandbox: Sandbox, clock: Clock):
    message = alert().model_copy(
        update={"slack_blocks": None, "text": "<https://a.test/1|첫째> <https://a.test/2|둘째>"}
    )

    works_bot(sandbox, clock).send(message)

    [sent] = sandbox.state.naverworks.messages
    assert sent.content["type"] == "button_template"
    assert sent.content["actions"] == [
        {"type": "uri", "label": "첫째", "uri": "https://a.test/1"},
        {"type": "uri", "label": "둘째", "uri": "https://a.test/2"},
    ]


def test_the_token_is_cached_until_shortly_before_it_expires(sandbox: Sandbox, clock: Clock):
    state = sandbox.state.naverworks
    bot = works_bot(sandbox, clock)

    bot.send(alert("a"))
    clock.advance(TOKEN_LIFETIME_SECONDS - TOKEN_RENEW_MARGIN_SECONDS - 1)
    bot.send(alert("b"))
    assert state.tokens_issued == 1
    clock.advance(2)  # now inside the renewal margin
    bot.send(alert("c"))

    assert state.tokens_issued == 2
    assert len(state.messages) == 3


def test_a_401_on_a_cached_token_renews_it_once(sandbox: Sandbox, clock: Clock):
    state = sandbox.state.naverworks
    bot = works_bot(sandbox, clock)
    bot.send(alert("a"))
    state.revoke_tokens()

    bot.send(alert("b"))

    assert state.tokens_issued == 2
    assert len(state.messages) == 2
    assert state.core.count("POST", r"/messages$") == 3


def test_refused_credentials_are_one_line_naming_the_block_without_secrets(
    sandbox: Sandbox, clock: Clock, prefect_api: str
):
    name = f"works-{uuid.uuid4().hex[:8]}"
    works_bot(sandbox, clock, client_secret="wrong-works-secret-4711").save(name)
    bot = NaverWorksBot.load(name)

    with pytest.raises(DeliveryError) as caught:
        bot.send(alert())

    text = str(caught.value)
    assert "\n" not in text
    assert f"NAVER WORKS bot '{name}'" in text and "invalid_client" in text
    assert "client_secret" in text and "wrong-works-secret-4711" not in text
    assert "PRIVATE KEY" not in text
    assert caught.value.transient is False
    assert sandbox.state.naverworks.messages == []


def test_a_key_the_server_does_not_know_is_refused(sandbox: Sandbox, clock: Clock):
    bot = works_bot(sandbox, clock, private_key=generate_private_key_pem())

    with pytest.raises(DeliveryError, match="invalid_grant") as caught:
        bot.send(alert())

    assert caught.value.transient is False
    assert sandbox.state.naverworks.tokens_issued == 0


def test_a_broken_private_key_is_named_without_its_text(sandbox: Sandbox, clock: Clock):
    bot = works_bot(sandbox, clock, private_key="-----BEGIN PRIVATE KEY-----\nnot-a-key\n")

    with pytest.raises(DeliveryError, match="private_key") as caught:
        bot.send(alert())

    assert "not-a-key" not in str(caught.value)


def test_refused_credentials_fail_over_to_email(sandbox: Sandbox, clock: Clock, make_runtime):
    bot = works_bot(sandbox, clock, client_secret="wrong-works-secret-4711")

    [outcome] = perform([message_intent(alert(), ROUTE)], make_runtime(bot))

    assert outcome.status == "done" and outcome.via == "ops-email"
    assert "invalid_client" in outcome.tried[0].error
    assert len(sandbox.smtp.messages) == 1


def test_429_with_retry_after_waits_as_told_then_delivers_once(
    sandbox: Sandbox, clock: Clock, make_runtime, waits: list[float]
):
    sandbox.state.naverworks.inject_fault(429, retry_after=9)

    [outcome] = perform([message_intent(alert(), ROUTE)], make_runtime(works_bot(sandbox, clock)))

    assert outcome.status == "done" and outcome.via == "team-works"
    assert waits == [9.0]
    assert len(sandbox.state.naverworks.messages) == 1


def test_429_without_retry_after_waits_for_the_rate_limit_reset(
    sandbox: Sandbox, clock: Clock, make_runtime, waits: list[float]
):
    # The free plan's 60 a minute, down to 1 so the second message meets it.
    sandbox.state.naverworks.set_rate_limit(1)
    runtime = make_runtime(works_bot(sandbox, clock), on_sleep=clock.advance)

    outcomes = perform([message_intent(alert(day), ROUTE) for day in ("d1", "d2")], runtime)

    assert [(o.status, o.via) for o in outcomes] == [("done", "team-works")] * 2
    assert waits == [60.0]  # NAVER WORKS's rateLimit-reset, no Retry-After
    [limited] = [r for r in sandbox.state.naverworks.core.requests if r.status == 429]
    assert limited.path.endswith("/messages")
    assert len(sandbox.state.naverworks.messages) == 2


def test_5xx_is_retried_and_delivered_once(
    sandbox: Sandbox, clock: Clock, make_runtime, waits: list[float]
):
    sandbox.state.naverworks.inject_fault(502)

    [outcome] = perform([message_intent(alert(), ROUTE)], make_runtime(works_bot(sandbox, clock)))

    assert outcome.status == "done" and outcome.via == "team-works"
    assert len(waits) == 1
    assert len(sandbox.state.naverworks.messages) == 1


def test_token_endpoint_down_fails_over_to_email(sandbox: Sandbox, clock: Clock, make_runtime):
    sandbox.state.naverworks.inject_fault(503, count=None, token_endpoint=True)

    [outcome] = perform([message_intent(alert(), ROUTE)], make_runtime(works_bot(sandbox, clock)))

    assert outcome.status == "done" and outcome.via == "ops-email"
    assert "token endpoint answered 503" in outcome.tried[0].error
    assert sandbox.state.naverworks.messages == []


def test_dropped_connection_is_retried_and_delivered_once(
    sandbox: Sandbox, clock: Clock, make_runtime
):
    sandbox.state.naverworks.inject_fault(kind="drop")

    [outcome] = perform([message_intent(alert(), ROUTE)], make_runtime(works_bot(sandbox, clock)))

    assert outcome.status == "done" and outcome.via == "team-works"
    assert [r.fault for r in sandbox.state.naverworks.core.requests].count("drop") == 1
    assert len(sandbox.state.naverworks.messages) == 1


def test_a_block_names_exactly_one_recipient(sandbox: Sandbox):
    fields = sandbox_naverworks_fields(sandbox.base_url)
    with pytest.raises(ValueError, match="exactly one"):
        NaverWorksBot(**(fields | {"user_id": SANDBOX_USER_ID}))


def test_dry_run_preview_calls_nothing(sandbox: Sandbox, clock: Clock):
    bot = works_bot(sandbox, clock)

    preview = channel_preview("team-works", bot, message_intent(alert(), ROUTE))

    assert preview is not None
    assert preview.lines[:2] == [f"to: channel {SANDBOX_CHANNEL_ID}", "오류 급증 알림"]
    assert preview.lines[-1] == "[실행 기록 보기] https://ops.moltbot.test/runs/7"
    assert sandbox.state.naverworks.core.requests == []


def test_blocks_test_gets_a_token_and_sends_nothing(
    sandbox: Sandbox, clock: Clock, prefect_api: str
):
    name = f"works-{uuid.uuid4().hex[:8]}"
    works_bot(sandbox, clock).save(name)
    wrong = f"works-wrong-{uuid.uuid4().hex[:8]}"
    works_bot(sandbox, clock, client_secret="wrong-works-secret-4711").save(wrong)

    check = check_block(name)
    refused = check_block(wrong)

    assert check.ok is True and "issued a token" in check.detail
    assert check.target == f"{sandbox.base_url}/naverworks/v1.0"
    assert refused.ok is False and "invalid_client" in refused.detail
    assert "wrong-works-secret-4711" not in refused.detail
    assert sandbox.state.naverworks.messages == []

"""The Slack bot channel against the sandbox's Web API emulator, through the effects layer."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from blocks import SlackBot
from moltbot.blockcheck import check_block
from moltbot.blockdocs import saved_blocks
from moltbot.effects import EffectsRuntime, Route, perform
from moltbot.effects.executors import dump_payload, load_payload, message_intent
from moltbot.effects.preview import channel_preview
from moltbot.errors import DeliveryError
from moltbot.messages import Message
from moltbot.sandbox import Sandbox
from moltbot.sandbox.slack_web import SANDBOX_BOT_TOKEN, SANDBOX_CHANNEL_ID
from moltbot.state.ledger import Ledger
from tests.blocks.runtimes import channel_then_email

ROUTE = Route(("team-bot", "ops-email"))
ALERT_TEXT = "*결제 API* 응답 없음 (HTTP 503)"


class Clock:
    """Emulator seconds that move only when a test (or an injected sleep) moves them."""

    def __init__(self) -> None:
        self.now = 1_760_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(sandbox: Sandbox) -> Clock:
    """The Slack emulator's clock (message ts and the per-channel limit), moved by hand."""
    clock = Clock()
    sandbox.state.slack.web.clock = clock
    return clock


def slack_bot(sandbox: Sandbox, **fields: object) -> SlackBot:
    values: dict[str, object] = {
        "bot_token": SANDBOX_BOT_TOKEN,
        "channel": SANDBOX_CHANNEL_ID,
        "base_url": f"{sandbox.base_url}/slack/api/",
    }
    return SlackBot(**(values | fields))


def alert(item: str = "down-1", **fields: object) -> Message:
    values: dict[str, object] = {
        "key": f"service-health:{item}",
        "automation": "service-health",
        "severity": "critical",
        "title": "🔴 결제 API 장애",
        "text": "이메일 전용 본문 (채팅에는 가지 않음)",
        "slack_blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "🔴 결제 API 장애"}},
            {"type": "section", "text": {"type": "mrkdwn", "text": ALERT_TEXT}},
        ],
    }
    return Message(**(values | fields))


def recovery(original: Message, **fields: object) -> Message:
    values: dict[str, object] = {
        "key": "service-health:recovered-1",
        "automation": "service-health",
        "title": "✅ 결제 API 복구",
        "text": "결제 API 복구 (12분 동안 중단)",
        "follow_up_of": original.key,
        "resolves": True,
    }
    return Message(**(values | fields))


@pytest.fixture
def waits() -> list[float]:
    return []


@pytest.fixture
def make_runtime(sandbox: Sandbox, tmp_path: Path, waits: list[float]):
    """Runtimes over a real ledger: team-bot (the Web API emulator), then ops-email (the SMTP
    sink); sleeps are recorded, and `on_sleep` lets a test move the emulator's clock."""

    def build(bot: SlackBot, on_sleep=lambda seconds: None) -> EffectsRuntime:
        return channel_then_email(ledger, sandbox, "team-bot", bot, waits, on_sleep)

    with Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite3'}") as ledger:
        yield build


def test_post_carries_the_chat_text_and_blocks_korean_intact(sandbox: Sandbox, clock: Clock):
    ts = slack_bot(sandbox).send(alert())

    [posted] = sandbox.state.slack.web.messages_in(SANDBOX_CHANNEL_ID)
    assert ts == posted.ts and posted.thread_ts is None
    assert posted.text == f"🔴 결제 API 장애\n{ALERT_TEXT}"
    assert posted.blocks == alert().slack_blocks
    assert "이메일 전용" not in str(posted.text)


def test_follow_up_replies_in_the_thread_and_marks_the_original_resolved(
    sandbox: Sandbox, clock: Clock, make_runtime
):
    runtime = make_runtime(slack_bot(sandbox))
    original = alert()
    [sent] = perform([message_intent(original, ROUTE)], runtime)
    clock.advance(600)

    [followed] = perform([message_intent(recovery(original), ROUTE)], runtime)

    first, reply = sandbox.state.slack.web.messages_in(SANDBOX_CHANNEL_ID)
    assert (sent.status, followed.status) == ("done", "done")
    assert reply.thread_ts == sent.remote_id == first.ts
    assert followed.remote_id == reply.ts and reply.text == "결제 API 복구 (12분 동안 중단)"
    assert first.edits == 1
    assert first.text == f"✅ Resolved: 🔴 결제 API 장애\n{ALERT_TEXT}"
    assert first.blocks[0] == {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": "✅ Resolved:"}],
    }
    assert first.blocks[1:] == original.slack_blocks
    assert runtime.ledger.get(f"{original.key}:team-bot").remote_id == first.ts


def test_a_second_follow_up_does_not_mark_twice_and_a_reminder_marks_nothing(
    sandbox: Sandbox, clock: Clock, make_runtime
):
    runtime = make_runtime(slack_bot(sandbox))
    original = alert()
    perform([message_intent(original, ROUTE)], runtime)
    follow_ups = [
        recovery(original, key="service-health:reminder-1", resolves=False),
        recovery(original),
        recovery(original, key="service-health:recovered-again"),
    ]
    for message in follow_ups:
        clock.advance(5)
        perform([message_intent(message, ROUTE)], runtime)

    first, *replies = sandbox.state.slack.web.messages_in(SANDBOX_CHANNEL_ID)
    assert [reply.thread_ts for reply in replies] == [first.ts] * 3
    assert first.edits == 1 and first.text.count("✅ Resolved") == 1


def test_follow_up_of_an_original_sent_elsewhere_is_a_normal_message(
    sandbox: Sandbox, clock: Clock, make_runtime
):
    runtime = make_runtime(slack_bot(sandbox))
    original = alert()
    # The original went through ops-email (Slack was down), so there is no thread to reply to.
    sandbox.state.slack.web.inject_fault(500, method="chat.postMessage", count=3)
    [sent] = perform([message_intent(original, ROUTE)], runtime)
    clock.advance(60)

    [followed] = perform([message_intent(recovery(original), ROUTE)], runtime)

    [posted] = sandbox.state.slack.web.messages_in(SANDBOX_CHANNEL_ID)
    assert sent.via == "ops-email" and followed.via == "team-bot"
    assert posted.thread_ts is None and posted.edits == 0


def test_bad_token_is_one_line_naming_the_block_never_the_token(sandbox: Sandbox, prefect_api: str):
    name = f"slack-bot-{uuid.uuid4().hex[:8]}"
    wrong = "xoxb-1111-2222-notatokenslackknows"
    slack_bot(sandbox, bot_token=wrong).save(name)

    with pytest.raises(DeliveryError) as raised:
        SlackBot.load(name).send(alert())

    error = raised.value
    assert str(error) == (
        f"Slack bot '{name}': Slack refused the bot token (invalid_auth); save a valid xoxb- token"
    )
    assert error.transient is False and wrong not in str(error) and "\n" not in str(error)
    assert sandbox.state.slack.web.messages == []


@pytest.mark.parametrize(
    ("setup", "code"),
    [
        (lambda web: web.revoke_token(SANDBOX_BOT_TOKEN), "token_revoked"),
        (lambda web: web.add_channel("C0NOTINVITED", "private", bot_is_member=False), None),
    ],
)
def test_revoked_token_and_channel_without_the_bot_are_permanent(
    sandbox: Sandbox, make_runtime, waits: list[float], setup, code: str | None
):
    setup(sandbox.state.slack.web)
    bot = slack_bot(sandbox, channel="C0NOTINVITED") if code is None else slack_bot(sandbox)

    [outcome] = perform([message_intent(alert(), ROUTE)], make_runtime(bot))

    # Not retried (nothing waited), fallen over to e-mail at once.
    assert outcome.status == "done" and outcome.via == "ops-email" and waits == []
    assert f"({code or 'not_in_channel'})" in outcome.tried[0].error
    assert len(sandbox.smtp.messages) == 1


def test_429_with_retry_after_waits_as_told_then_delivers_once(
    sandbox: Sandbox, clock: Clock, make_runtime, waits: list[float]
):
    sandbox.state.slack.web.inject_fault(429, method="chat.postMessage", retry_after=7)

    [outcome] = perform([message_intent(alert(), ROUTE)], make_runtime(slack_bot(sandbox)))

    assert outcome.status == "done" and outcome.via == "team-bot"
    assert waits == [7.0]
    assert len(sandbox.state.slack.web.messages) == 1
    assert sandbox.state.slack.core.count("POST", r"^/api/chat\.postMessage$") == 2


def test_channel_rate_limit_429_with_and_without_retry_after(
    sandbox: Sandbox, clock: Clock, make_runtime, waits: list[float]
):
    # Slack's per-channel limit in the emulator: a burst of 3, then one a second.
    runtime = make_runtime(slack_bot(sandbox), on_sleep=lambda seconds: clock.advance(1.0))
    messages = [alert(f"burst-{n}") for n in range(5)]

    named = perform([message_intent(m, ROUTE) for m in messages[:4]], runtime)
    sandbox.state.slack.web.names_wait = False  # a proxy that drops the header
    unnamed = perform([message_intent(messages[4], ROUTE)], runtime)

    assert [o.via for o in named + unnamed] == ["team-bot"] * 5
    assert waits[0] == 1.0  # Slack's Retry-After: 1
    assert len(waits) == 2 and waits[1] < 1  # then our own backoff, not a named wait
    assert len(sandbox.state.slack.web.messages) == 5


def test_5xx_is_retried_then_fails_over_to_email(sandbox: Sandbox, clock: Clock, make_runtime):
    sandbox.state.slack.web.inject_fault(503, method="chat.postMessage", count=None)

    [outcome] = perform([message_intent(alert(), ROUTE)], make_runtime(slack_bot(sandbox)))

    assert outcome.status == "done" and outcome.via == "ops-email"
    assert "503" in outcome.tried[0].error
    assert sandbox.state.slack.core.count("POST", r"^/api/chat\.postMessage$") == 3
    assert sandbox.state.slack.web.messages == [] and len(sandbox.smtp.messages) == 1


def test_dropped_connection_before_posting_is_retried_and_delivered_once(
    sandbox: Sandbox, clock: Clock, make_runtime
):
    sandbox.state.slack.web.inject_fault(kind="drop", method="chat.postMessage")

    [outcome] = perform([message_intent(alert(), ROUTE)], make_runtime(slack_bot(sandbox)))

    assert outcome.status == "done" and outcome.via == "team-bot"
    assert len(sandbox.state.slack.web.messages) == 1


def test_lost_answer_is_not_resent_by_the_client_and_at_most_once_holds_it(
    sandbox: Sandbox, clock: Clock, make_runtime
):
    # The post is made, then its answer lost: slack-sdk's default handler would post it again.
    sandbox.state.slack.web.inject_fault(kind="drop", method="chat.postMessage", after_apply=True)
    route = Route(ROUTE.links, policy="at_most_once")

    [outcome] = perform([message_intent(alert(), route)], make_runtime(slack_bot(sandbox)))

    assert outcome.status == "in_doubt" and "gave no answer" in outcome.error
    assert len(sandbox.state.slack.web.messages) == 1
    assert sandbox.state.slack.core.count("POST", r"^/api/chat\.postMessage$") == 1
    assert sandbox.smtp.messages == []


def test_dry_run_previews_the_post_and_sends_nothing(sandbox: Sandbox):
    intent = message_intent(alert(), ROUTE)

    shown = channel_preview("team-bot", slack_bot(sandbox), intent)

    assert shown is not None and shown.kind == "slack"
    assert shown.lines == ["🔴 결제 API 장애", ALERT_TEXT]
    assert sandbox.state.slack.core.requests == []


def test_follow_up_fields_round_trip_through_the_ledger_payload():
    message = recovery(alert())

    stored = load_payload("message", dump_payload("message", message))

    assert stored == message and stored.follow_up_of == "service-health:down-1"
    old_row = alert().model_dump_json(exclude={"follow_up_of", "resolves"})
    assert load_payload("message", old_row).follow_up_of is None


def test_blocks_list_and_blocks_test(sandbox: Sandbox, prefect_api: str):
    name = f"slack-bot-{uuid.uuid4().hex[:8]}"
    slack_bot(sandbox).save(name)
    elsewhere = f"slack-bot-{uuid.uuid4().hex[:8]}"
    slack_bot(sandbox, channel="C0NOSUCHONE").save(elsewhere)
    revoked = f"slack-bot-{uuid.uuid4().hex[:8]}"
    slack_bot(sandbox, bot_token="xoxb-9999-revoked-token").save(revoked)
    sandbox.state.slack.web.register_token("xoxb-9999-revoked-token")
    sandbox.state.slack.web.revoke_token("xoxb-9999-revoked-token")

    listed = {entry["name"]: entry for entry in saved_blocks()}
    check, missing, refused = check_block(name), check_block(elsewhere), check_block(revoked)

    assert listed[name]["type"] == "moltbot-slack-bot"
    assert check.ok is True and "#moltbot-alerts found" in check.detail
    assert missing.ok is False and "channel_not_found" in missing.detail
    assert refused.ok is False and "token_revoked" in refused.detail
    assert "xoxb-9999" not in refused.detail
    assert sandbox.state.slack.core.count("POST", r"^/api/auth\.test$") == 3
    assert sandbox.state.slack.web.messages == []

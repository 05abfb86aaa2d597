"""Delivery guarantees with the real ledger and the Slack emulator: once, retried, never twice."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from blocks import SlackIncomingWebhook
from moltbot.delivery import RetryPolicy, deliver, effect_key
from moltbot.errors import DeliveryError
from moltbot.ledger import EffectStatus, Ledger
from moltbot.messages import Message

FAST = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.02)


@pytest.fixture
def ledger(tmp_path: Path):
    with Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite3'}") as opened:
        yield opened


@pytest.fixture
def slack(sandbox) -> SlackIncomingWebhook:
    return SlackIncomingWebhook(url=sandbox.slack_webhook_url("delivery"))


def message(key: str = "test:2026-11-23") -> Message:
    return Message(key=key, automation="test", title="보고서", text="매출 ₩1,000")


def test_sends_once_and_records_done(sandbox, slack, ledger) -> None:
    first = deliver(message(), "slack", slack, ledger, policy=FAST)
    second = deliver(message(), "slack", slack, ledger, policy=FAST)

    assert (first.status, second.status) == ("sent", "skipped")
    assert len(sandbox.state.slack.posts) == 1
    effect = ledger.get(effect_key(message(), "slack"))
    assert effect is not None
    assert (effect.status, effect.attempts, effect.target) == (EffectStatus.DONE, 1, "slack")


def test_force_sends_again(sandbox, slack, ledger) -> None:
    deliver(message(), "slack", slack, ledger, policy=FAST)
    again = deliver(message(), "slack", slack, ledger, policy=FAST, force=True)

    assert again.status == "sent"
    assert len(sandbox.state.slack.posts) == 2


def test_429_with_retry_after_waits_as_told_then_sends_exactly_once(sandbox, slack, ledger) -> None:
    sandbox.state.slack.inject_fault(429, count=2, retry_after=7)
    waits: list[float] = []

    outcome = deliver(message(), "slack", slack, ledger, policy=FAST, sleep=waits.append)

    assert outcome.status == "sent"
    assert outcome.attempts == 3
    assert waits == [7.0, 7.0]
    assert len(sandbox.state.slack.posts) == 1


def test_429_really_waits_for_retry_after(sandbox, slack, ledger) -> None:
    sandbox.state.slack.inject_fault(429, count=1, retry_after=1)
    started = time.monotonic()

    outcome = deliver(message(), "slack", slack, ledger, policy=FAST)

    assert outcome.status == "sent"
    assert time.monotonic() - started >= 1.0
    assert len(sandbox.state.slack.posts) == 1


def test_5xx_retried_with_backoff_then_gives_up_and_records_failure(sandbox, slack, ledger) -> None:
    sandbox.state.slack.inject_fault(500, count=10)
    waits: list[float] = []

    outcome = deliver(message(), "slack", slack, ledger, policy=FAST, sleep=waits.append)

    assert outcome.status == "failed"
    assert outcome.attempts == 4
    assert len(waits) == 3 and all(0 < wait <= 0.03 for wait in waits)
    assert outcome.error == "Slack answered 500 rollup_error"
    assert ledger.get(outcome.key).status == EffectStatus.FAILED


def test_400_fails_at_once_with_slacks_own_message(sandbox, slack, ledger) -> None:
    sandbox.state.slack.inject_fault(400, count=5, body="invalid_payload")
    waits: list[float] = []

    outcome = deliver(message(), "slack", slack, ledger, policy=FAST, sleep=waits.append)

    assert (outcome.status, outcome.attempts, waits) == ("failed", 1, [])
    assert outcome.error == "Slack answered 400 invalid_payload"
    assert sandbox.state.slack.attempts == 1


def test_failed_delivery_is_retried_by_the_next_run(sandbox, slack, ledger) -> None:
    sandbox.state.slack.inject_fault(404, body="channel_not_found")
    assert deliver(message(), "slack", slack, ledger, policy=FAST).status == "failed"

    outcome = deliver(message(), "slack", slack, ledger, policy=FAST)

    assert outcome.status == "sent"
    assert len(sandbox.state.slack.posts) == 1


def test_a_claim_held_by_a_live_run_is_not_sent_again(sandbox, slack, ledger) -> None:
    ledger.claim(effect_key(message(), "slack"), automation="test", kind="message", target="slack")

    outcome = deliver(message(), "slack", slack, ledger, policy=FAST)

    assert outcome.status == "in_progress"
    assert sandbox.state.slack.posts == []


def test_retry_after_beyond_the_cap_is_not_waited_for() -> None:
    policy = RetryPolicy(attempts=4, retry_after_cap=60)
    error = DeliveryError("Slack answered 429 rate_limited", transient=True, retry_after=3600)

    assert policy.delay(1, error) is None


def test_unexpected_error_is_recorded_masked_and_raised(ledger) -> None:
    class Broken:
        def send(self, message: Message) -> str | None:
            raise RuntimeError("boom for someone@example.com")

    with pytest.raises(RuntimeError):
        deliver(message(), "broken", Broken(), ledger, policy=FAST)

    effect = ledger.get(effect_key(message(), "broken"))
    assert effect.status == EffectStatus.FAILED
    assert "someone@" not in effect.error

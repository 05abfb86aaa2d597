"""One message on one channel through the effects layer: once, retried as Slack says, recorded."""

from __future__ import annotations

import pytest

from moltbot.effects import ChannelExecutor, Intent, Route, perform
from moltbot.effects.executors import message_intent
from moltbot.errors import DeliveryError
from moltbot.messages import Message
from moltbot.retrying import RetryPolicy
from moltbot.state.ledger import EffectStatus

SLACK = Route(("team-slack",))


def intent(route: Route = SLACK) -> Intent:
    message = Message(key="test:2026-11-23", automation="test", title="보고서", text="매출 ₩1,000")
    return message_intent(message, route)


def test_sends_once_and_records_done(sandbox, make_runtime, ledger) -> None:
    first = perform([intent()], make_runtime())
    second = perform([intent()], make_runtime())

    assert [o.status for o in first + second] == ["done", "already_done"]
    assert second[0].via == "team-slack"
    assert len(sandbox.state.slack.posts) == 1
    effect = ledger.get("test:2026-11-23:team-slack")
    assert (effect.status, effect.attempts, effect.via) == (EffectStatus.DONE, 1, "team-slack")


def test_force_sends_again(sandbox, make_runtime) -> None:
    perform([intent()], make_runtime())
    [again] = perform([intent()], make_runtime(), force=True)

    assert again.status == "done"
    assert len(sandbox.state.slack.posts) == 2


def test_429_with_retry_after_waits_as_told_then_sends_exactly_once(
    sandbox, make_runtime, waits
) -> None:
    sandbox.state.slack.inject_fault(429, count=2, retry_after=7)

    [outcome] = perform([intent()], make_runtime())

    assert (outcome.status, outcome.attempts) == ("done", 3)
    assert waits == [7.0, 7.0]
    assert len(sandbox.state.slack.posts) == 1


def test_5xx_is_retried_with_backoff_then_the_message_is_dead(
    sandbox, make_runtime, waits, ledger
) -> None:
    sandbox.state.slack.inject_fault(500, count=10)

    [outcome] = perform([intent()], make_runtime())

    assert outcome.status == "dead"
    assert outcome.attempts == 3
    assert len(waits) == 2 and all(0 < wait <= 0.03 for wait in waits)
    assert outcome.tried[0].error == "Slack answered 500 rollup_error"
    assert ledger.get(outcome.key).status == EffectStatus.DEAD


def test_a_5xx_under_at_most_once_is_in_doubt_not_resent(sandbox, make_runtime, waits) -> None:
    sandbox.state.slack.inject_fault(500, count=10)

    [outcome] = perform([intent(Route(("team-slack",), "at_most_once"))], make_runtime())

    assert outcome.status == "in_doubt"
    assert sandbox.state.slack.attempts == 1 and waits == []


def test_400_fails_at_once_with_slacks_own_message(sandbox, make_runtime, waits) -> None:
    sandbox.state.slack.inject_fault(400, count=5, body="invalid_payload")

    [outcome] = perform([intent()], make_runtime())

    assert (outcome.status, outcome.attempts, waits) == ("dead", 1, [])
    assert outcome.tried[0].error == "Slack answered 400 invalid_payload"
    assert sandbox.state.slack.attempts == 1


def test_retry_after_beyond_the_cap_is_not_waited_for() -> None:
    policy = RetryPolicy(attempts=4, retry_after_cap=60)
    error = DeliveryError("Slack answered 429 rate_limited", transient=True, retry_after=3600)

    assert policy.delay(1, error) is None


def test_unexpected_error_is_recorded_masked_and_raised(make_runtime, ledger) -> None:
    class Broken:
        def send(self, message: Message) -> str | None:
            raise RuntimeError("boom for someone@example.com")

    runtime = make_runtime(executors={"broken": ChannelExecutor("broken", Broken())})
    with pytest.raises(RuntimeError):
        perform([intent(Route(("broken",)))], runtime)

    effect = ledger.get("test:2026-11-23:broken")
    assert effect.status == EffectStatus.FAILED
    assert "someone@" not in effect.error


def test_a_route_naming_an_unknown_destination_is_refused_before_any_claim(
    make_runtime, ledger
) -> None:
    from moltbot.errors import InputError

    with pytest.raises(InputError, match="no destination named 'nowhere'"):
        perform([intent(Route(("team-slack", "nowhere")))], make_runtime())
    assert ledger.effects() == []


def test_a_run_report_round_trips_its_json_and_counts_outcomes() -> None:
    from moltbot.effects.report import Delivery, RunReport, finish_run
    from moltbot.errors import DeliveryFailed

    done = Delivery(channel="a", key="k:a", kind="message", target="a", status="done")
    dead = done.model_copy(update={"channel": "b", "key": "k:b", "status": "dead", "error": "x"})
    report = RunReport(deliveries=[done, dead])

    assert report.as_result()["outcomes"] == {"done": 1, "dead": 1}
    assert RunReport.model_validate(report.as_result()) == report
    with pytest.raises(DeliveryFailed, match=r"1 failure\(s\): b: dead \(x\)") as raised:
        finish_run(report)
    assert raised.value.result["deliveries"][1]["status"] == "dead"
    assert finish_run(RunReport(deliveries=[done]))["outcomes"] == {"done": 1}

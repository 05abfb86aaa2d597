"""Routes with fallback, circuit breakers, dead letters and replay, against the sandbox."""

from __future__ import annotations

from pathlib import Path

from moltbot.effects import Intent, Route, perform
from moltbot.effects.executors import message_intent
from moltbot.effects.outbox import list_entries, replay
from moltbot.messages import Message
from moltbot.state.ledger import EffectStatus

CHAIN = Route(("team-slack", "ops-email"))


def intent(item: str = "2026-12-02", route: Route = CHAIN) -> Intent:
    message = Message(
        key=f"test:{item}", automation="test", title="일일 보고서", text=f"매출 보고 {item}"
    )
    return message_intent(message, route)


def ops_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.md")) if folder.exists() else []


def test_slack_429_forever_falls_back_to_one_email(sandbox, make_runtime, waits, ops_folder):
    sandbox.state.slack.inject_fault(429, count=1000, retry_after=5)

    [outcome] = perform([intent()], make_runtime())

    assert outcome.status == "done"
    assert outcome.via == "ops-email"
    assert [t.link for t in outcome.tried] == ["team-slack"]
    assert "429" in outcome.tried[0].error
    assert len(sandbox.smtp.messages) == 1
    assert sandbox.smtp.messages[0].message["Subject"] == "일일 보고서"
    assert sandbox.state.slack.posts == []
    # Slack's own Retry-After was honoured between its attempts (injected sleep, no real wait).
    assert waits == [5.0, 5.0]
    assert ops_files(ops_folder) == []


def test_every_channel_down_is_dead_announced_once_then_replayed_once(
    sandbox, make_runtime, ledger, destinations, ops_folder
):
    sandbox.state.slack.inject_fault(503, count=1000)
    sandbox.smtp.inject_fault(451, count=1000)
    runtime = make_runtime()

    [outcome] = perform([intent()], runtime)
    [again] = perform([intent()], runtime)

    assert outcome.status == "dead"
    assert [t.link for t in outcome.tried] == ["team-slack", "ops-email"]
    assert again.status == "dead"  # a re-run does not resend a dead letter: replay does
    [announcement] = ops_files(ops_folder)
    text = announcement.read_text()
    assert "test:2026-12-02:team-slack" in text and "moltbot outbox replay" in text
    assert "매출" not in text  # the payload never reaches ops, only key, route and errors
    [entry] = list_entries(ledger, status="dead")
    assert entry.key == "test:2026-12-02:team-slack" and entry.replayable

    sandbox.state.slack.clear_faults()
    sandbox.smtp.clear()
    first = replay(
        ledger,
        [entry.key],
        executors_for=lambda kind, links: destinations,
        runtime=lambda executors: make_runtime(executors=executors),
    )
    second = replay(
        ledger,
        [entry.key],
        executors_for=lambda kind, links: destinations,
        runtime=lambda executors: make_runtime(executors=executors),
    )

    assert [o.status for o in first] == ["done"] and first[0].via == "team-slack"
    assert [o.status for o in second] == ["already_done"]
    assert len(sandbox.state.slack.messages_for(sandbox.slack_webhook_url("effects"))) == 1
    assert sandbox.smtp.messages == []
    assert len(ops_files(ops_folder)) == 1
    effect = ledger.get(entry.key)
    assert effect.status == EffectStatus.DONE and effect.payload is None


def test_circuit_opens_after_n_failures_skips_then_closes_after_cooldown(
    sandbox, make_runtime, clock, ledger
):
    runtime = make_runtime()
    sandbox.state.slack.inject_fault(400, count=3, body="invalid_payload")

    outcomes = perform([intent(f"day-{n}") for n in range(3)], runtime)
    slack_attempts = sandbox.state.slack.attempts
    [skipped] = perform([intent("day-3")], runtime)
    [later_run] = perform([intent("day-4")], make_runtime())  # another run sees the same circuit

    assert [o.via for o in outcomes] == ["ops-email"] * 3
    assert skipped.via == "ops-email" and "circuit open" in skipped.tried[0].error
    assert later_run.via == "ops-email" and "circuit open" in later_run.tried[0].error
    assert sandbox.state.slack.attempts == slack_attempts == 3

    clock.advance(61)
    [closed] = perform([intent("day-5")], runtime)

    assert closed.via == "team-slack" and closed.tried == []
    assert runtime.breaker.state("team-slack").failures == 0
    assert len(sandbox.smtp.messages) == 5


def test_circuit_half_open_failure_opens_it_again(sandbox, make_runtime, clock):
    runtime = make_runtime()
    sandbox.state.slack.inject_fault(400, count=4, body="invalid_payload")
    perform([intent(f"day-{n}") for n in range(3)], runtime)
    clock.advance(61)

    [probe] = perform([intent("day-3")], runtime)
    [after] = perform([intent("day-4")], runtime)

    assert probe.via == "ops-email" and "400" in probe.tried[0].error
    assert "circuit open" in after.tried[0].error
    assert sandbox.state.slack.attempts == 4


def test_single_channel_routes_fan_out_independently(sandbox, make_runtime):
    slack, email = Route(("team-slack",)), Route(("ops-email",))
    sandbox.smtp.inject_fault(550, count=1)

    outcomes = perform([intent(route=slack), intent(route=email)], make_runtime())

    assert [o.status for o in outcomes] == ["done", "dead"]
    assert len(sandbox.state.slack.posts) == 1

"""Interrupted effects: a process SIGKILLed between a Slack post and its record, held claims."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from moltbot.effects import Intent, Route, perform
from moltbot.effects.outbox import list_entries, replay, resolve
from moltbot.messages import Message
from moltbot.state.ledger import EffectStatus

# Sends one message through the effects layer with the real Slack block, and dies (SIGKILL)
# right after Slack accepted the post, before the ledger records it.
KILLED_SENDER = """
import os, signal, sys
from blocks import SlackIncomingWebhook
from moltbot.effects import ChannelExecutor, EffectsRuntime, Intent, Route, perform
from moltbot.state.ledger import Ledger
from moltbot.messages import Message

url, ledger_url, policy = sys.argv[1:4]

class DiesAfterSending(SlackIncomingWebhook):
    def send(self, message):
        super().send(message)
        os.kill(os.getpid(), signal.SIGKILL)

route = Route(("team-slack",), policy)
message = Message(key="alert:disk-full", automation="test", title="디스크 부족", text="disk full")
intent = Intent(key="alert:disk-full:team-slack", automation="test", kind="message",
                target="team-slack", payload=message, route=route)
ledger = Ledger(ledger_url)
perform([intent], EffectsRuntime(ledger=ledger,
        executors={"team-slack": ChannelExecutor("team-slack", DiesAfterSending(url=url))}))
"""


def killed_after_post(sandbox, ledger_url: str, policy: str) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            KILLED_SENDER,
            sandbox.slack_webhook_url("effects"),
            ledger_url,
            policy,
        ],
        capture_output=True,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()[-2000:]


def same_intent(policy: str) -> Intent:
    message = Message(
        key="alert:disk-full", automation="test", title="디스크 부족", text="disk full"
    )
    return Intent(
        key="alert:disk-full:team-slack",
        automation="test",
        kind="message",
        target="team-slack",
        payload=message,
        route=Route(("team-slack",), policy),  # type: ignore[arg-type]
    )


def slack_posts(sandbox) -> int:
    return len(sandbox.state.slack.messages_for(sandbox.slack_webhook_url("effects")))


@pytest.fixture
def ledger_url(ledger) -> str:
    return str(ledger.engine.url)


def test_at_most_once_holds_it_in_doubt_and_resends_nothing(
    sandbox, ledger, ledger_url, make_runtime, ops_folder, destinations
):
    killed_after_post(sandbox, ledger_url, "at_most_once")
    assert slack_posts(sandbox) == 1
    assert ledger.get("alert:disk-full:team-slack").status == EffectStatus.PENDING

    # The next run at once: the holder process is gone, so its claim is taken over without
    # waiting for the lease, and the route's policy decides.
    [first] = perform([same_intent("at_most_once")], make_runtime())
    [second] = perform([same_intent("at_most_once")], make_runtime())

    assert (first.status, second.status) == ("in_doubt", "in_doubt")
    assert slack_posts(sandbox) == 1
    [entry] = list_entries(ledger, status="in_doubt")
    assert entry.key == "alert:disk-full:team-slack"
    [announcement] = list(ops_folder.glob("*.md"))
    assert "in doubt" in announcement.read_text()

    # A person checked Slack: it arrived.
    resolved = resolve(ledger, entry.key, sent=True)
    [after] = perform([same_intent("at_most_once")], make_runtime())
    assert resolved.status == "done" and after.status == "already_done"
    assert slack_posts(sandbox) == 1


def test_resolve_resend_sends_it_once_more(sandbox, ledger, ledger_url, make_runtime, destinations):
    killed_after_post(sandbox, ledger_url, "at_most_once")
    perform([same_intent("at_most_once")], make_runtime())

    resolve(ledger, "alert:disk-full:team-slack", sent=False)
    outcomes = replay(
        ledger,
        ["alert:disk-full:team-slack"],
        executors_for=lambda kind, links: destinations,
        runtime=lambda executors: make_runtime(executors=executors),
    )

    assert [o.status for o in outcomes] == ["done"]
    assert slack_posts(sandbox) == 2


def test_at_least_once_resends_once_and_no_further(sandbox, ledger, ledger_url, make_runtime):
    killed_after_post(sandbox, ledger_url, "at_least_once")

    [first] = perform([same_intent("at_least_once")], make_runtime())
    [second] = perform([same_intent("at_least_once")], make_runtime())

    assert (first.status, second.status) == ("done", "already_done")
    assert first.attempts == 2
    assert slack_posts(sandbox) == 2  # the one before the kill, and exactly one resend


def test_claim_of_a_live_holder_is_waited_for_then_reported_held(
    sandbox, ledger, make_runtime, waits, clock
):
    # A live holder: this very process, under another run's claim.
    ledger.claim(
        "alert:disk-full:team-slack",
        automation="test",
        kind="message",
        target="team-slack",
        flow_run_id="run-a",
        holder="elsewhere/1/1",
    )

    def tick(seconds: float) -> None:
        waits.append(seconds)
        clock.advance(seconds)

    runtime = make_runtime(hold_wait_seconds=10, hold_poll_seconds=2, sleep=tick)
    [outcome] = perform([same_intent("at_least_once")], runtime)

    assert outcome.status == "held" and outcome.held_by == "run-a"
    assert sum(waits) >= 10
    assert slack_posts(sandbox) == 0


def test_claim_of_a_dead_process_is_taken_over_at_once(sandbox, ledger, make_runtime):
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    from moltbot.effects.holders import current_holder

    host = current_holder().split("/")[0]
    ledger.claim(
        "alert:disk-full:team-slack",
        automation="test",
        kind="message",
        target="team-slack",
        holder=f"{host}/{gone.stdout.strip()}/1",
    )

    [outcome] = perform([same_intent("at_least_once")], make_runtime())

    assert outcome.status == "done"
    assert slack_posts(sandbox) == 1


def test_outbox_entries_are_json_ready_and_keep_no_payload(sandbox, ledger, make_runtime):
    perform([same_intent("at_least_once")], make_runtime())
    [entry] = list_entries(ledger)
    document = json.dumps(entry.as_dict(), ensure_ascii=False)
    assert "disk full" not in document and entry.status == "done"
    assert ledger.get(entry.key).payload is None  # dropped once delivered

"""`moltbot outbox` through the real command runner: empty state, listing, show, bad input."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from blocks import SlackIncomingWebhook
from moltbot.audit import cli_actor
from moltbot.blockdocs import save_block_document
from moltbot.cli import app
from moltbot.effects import Intent, Route, perform
from moltbot.messages import Message
from moltbot.state.ledger import Ledger

runner = CliRunner()


def test_an_empty_ledger_lists_nothing_in_both_forms(moltbot_home) -> None:
    as_json = runner.invoke(app, ["outbox", "list", "--json"])
    table = runner.invoke(app, ["--locale", "ko", "outbox", "list"])

    assert as_json.exit_code == 0 and json.loads(as_json.stdout) == []
    assert table.exit_code == 0 and "원장에 기록된 작업이 아직 없습니다" in table.stdout


def test_list_show_and_replay_of_a_dead_letter(sandbox, make_runtime, ledger, monkeypatch) -> None:
    monkeypatch.setenv("MOLTBOT_LEDGER_URL", str(ledger.engine.url))
    sandbox.state.slack.inject_fault(403, count=10, body="invalid_token")
    message = Message(key="test:1", automation="test", title="t", text="고객 010-1234-5678")
    intent = Intent(key="test:1:team-slack", automation="test", kind="message",
                    target="team-slack", payload=message, route=Route(("team-slack",)))  # fmt: skip
    [outcome] = perform([intent], make_runtime())
    assert outcome.status == "dead"

    dead = runner.invoke(app, ["outbox", "list", "--status", "dead", "--json"])
    shown = runner.invoke(app, ["outbox", "show", "test:1:team-slack"])
    wrong = runner.invoke(app, ["outbox", "list", "--status", "lost"])
    missing = runner.invoke(app, ["outbox", "show", "nope"])
    neither = runner.invoke(app, ["outbox", "replay"])

    assert [e["key"] for e in json.loads(dead.stdout)] == ["test:1:team-slack"]
    detail = json.loads(shown.stdout)
    assert detail["tried"][0]["link"] == "team-slack" and "403" in detail["tried"][0]["error"]
    assert "010-1234-5678" not in shown.stdout + dead.stdout  # the payload is never shown
    assert (wrong.exit_code, missing.exit_code, neither.exit_code) == (2, 2, 2)
    assert "choose from" in wrong.stderr and "no effect with key 'nope'" in missing.stderr


def test_resolve_refuses_an_effect_that_is_not_in_doubt(make_runtime, ledger, monkeypatch):
    monkeypatch.setenv("MOLTBOT_LEDGER_URL", str(ledger.engine.url))
    ledger.claim("k", automation="test", kind="message", target="x")
    ledger.complete("k")

    both = runner.invoke(app, ["outbox", "resolve", "k", "--sent", "--resend"])
    done = runner.invoke(app, ["outbox", "resolve", "k", "--sent"])

    assert both.exit_code == 2 and "choose one" in both.stderr
    assert done.exit_code == 2 and "not in_doubt" in done.stderr


def test_a_replay_is_recorded_in_the_audit_trail_with_its_actor(
    prefect_api, sandbox, make_runtime, ledger: Ledger, monkeypatch
) -> None:
    monkeypatch.setenv("MOLTBOT_LEDGER_URL", str(ledger.engine.url))
    sandbox.state.slack.inject_fault(403, count=4, body="invalid_token")
    message = Message(key="test:1", automation="test", title="t", text="hello")
    intent = Intent(key="test:1:team-slack", automation="test", kind="message",
                    target="team-slack", payload=message, route=Route(("team-slack",)))  # fmt: skip
    [outcome] = perform([intent], make_runtime())
    assert outcome.status == "dead"
    sandbox.state.slack.clear_faults()  # the token was fixed
    # The CLI loads the route's destinations by block name.
    save_block_document(
        SlackIncomingWebhook(url=sandbox.slack_webhook_url("effects")), "team-slack"
    )

    replayed = runner.invoke(app, ["outbox", "replay", "test:1:team-slack"])

    assert replayed.exit_code == 0, replayed.output
    audit = runner.invoke(app, ["audit", "--json"])
    [row] = json.loads(audit.stdout)["entries"]
    assert (row["action"], row["target"], row["outcome"]) == (
        "replay",
        "effect test:1:team-slack",
        "done",
    )
    assert row["actor"] == cli_actor() and row["automation"] == "test"

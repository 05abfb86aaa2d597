"""The health flow against the session's Prefect server: one ops message per change of the
doctor's result, none for the same result, the statuses kept in the ledger."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from blocks import SlackIncomingWebhook
from flows.health.flow import health
from flows.health.plan import plan_changes
from moltbot.blockdocs import save_block_document
from moltbot.doctor import Check
from moltbot.policy import current_version
from moltbot.state.ledger import Ledger
from moltbot.state.service_health import ServiceHealth, ServiceHealthStore

pytestmark = pytest.mark.slow

KEY_CHECK = "prefect.encryption_key"


@pytest.fixture
def ops_slack(sandbox_blocks: list[str], sandbox) -> str:
    """A Slack webhook on the sandbox for the ops channel."""
    url = sandbox.slack_webhook_url("ops-health")
    save_block_document(SlackIncomingWebhook(url=url), "health-ops")
    return url


def texts(sandbox, url: str) -> list[str]:
    """The header and section text of every post to `url`."""
    return [
        "\n".join(
            block["text"]["text"]
            for block in post.payload["blocks"]
            if block["type"] in ("header", "section")
        )
        for post in sandbox.state.slack.messages_for(url)
    ]


def stored() -> dict[str, str]:
    with Ledger.from_settings() as ledger:
        rows = ServiceHealthStore(ledger, "health").read()
    return {name: row.state for name, row in rows.items()}


def test_ops_hear_once_per_change_and_not_again_for_the_same_result(
    ops_slack: str, sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PREFECT_SERVER_ENCRYPTION_KEY", raising=False)

    first = health(channels=["health-ops"])
    again = health(channels=["health-ops"])

    # The test server runs without an encryption key in this environment: a warning.
    assert KEY_CHECK in {change["name"] for change in first["changes"]}
    assert [d["status"] for d in first["deliveries"]] == ["done"]
    [text] = texts(sandbox, ops_slack)
    assert "prefect.encryption_key" in text and "warning" in text
    assert again["changes"] == [] and again["deliveries"] == []
    assert len(texts(sandbox, ops_slack)) == 1
    assert stored()[KEY_CHECK] == "DEGRADED"

    monkeypatch.setenv("PREFECT_SERVER_ENCRYPTION_KEY", "a-fernet-key-set-for-the-test")
    fixed = health(channels=["health-ops"])

    assert [(c["name"], c["before"], c["after"]) for c in fixed["changes"]] == [
        (KEY_CHECK, "warn", "ok")
    ]
    assert len(texts(sandbox, ops_slack)) == 2
    assert "warning → ok" in texts(sandbox, ops_slack)[1]
    assert stored()[KEY_CHECK] == "UP"
    with Ledger.from_settings() as ledger:
        effects = ledger.effects(automation="health")
    keys = [effect.key for effect in effects]
    assert len(keys) == 2 and len(set(keys)) == 2
    # "Why did this go out": the rule each message stood for, and the policy that declared it.
    assert {effect.rule_id for effect in effects} == {"health.changed"}
    assert {effect.policy_version for effect in effects} == {current_version()}


NOW = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)


def _check(name: str, status: str) -> Check:
    return Check(name=name, status=status, detail=f"{name} is {status}")


def test_a_check_back_to_a_status_it_had_before_is_a_new_change_with_a_new_key() -> None:
    warned = {"a": ServiceHealth("a", "DEGRADED", NOW - timedelta(hours=1))}
    warned_later = {"a": ServiceHealth("a", "DEGRADED", NOW + timedelta(hours=1))}

    first = plan_changes([_check("a", "ok")], warned, now=NOW)
    later = plan_changes([_check("a", "ok")], warned_later, now=NOW + timedelta(hours=2))

    assert [(c.before, c.after) for c in first.changes] == [("warn", "ok")]
    assert first.key_digest() != later.key_digest()
    assert first.key_digest() == plan_changes([_check("a", "ok")], warned, now=NOW).key_digest()


def test_a_first_run_reports_only_what_is_not_ok_and_a_vanished_check_recovers() -> None:
    fresh = plan_changes([_check("a", "ok"), _check("b", "fail")], {}, now=NOW)
    vanished = plan_changes([], {"c": ServiceHealth("c", "DOWN", NOW)}, now=NOW)

    assert [(c.name, c.before, c.after) for c in fresh.changes] == [("b", "ok", "fail")]
    assert [(w.service, w.state, w.failures) for w in fresh.writes] == [("b", "DOWN", 1)]
    assert [(c.name, c.after) for c in vanished.changes] == [("c", "ok")]
    assert [(w.service, w.state) for w in vanished.writes] == [("c", "UP")]


def test_run_shows_the_counts_and_the_changes() -> None:
    from rich.console import Console

    from moltbot.resultview import result_view

    result = {"counts": {"ok": 3, "warn": 1, "fail": 0}, "changes": [{}], "deliveries": []}
    console = Console(record=True, width=120)
    for part in result_view("health", result, currency="KRW", locale="en"):
        console.print(part)

    assert "health: 0 failed, 1 warning(s), 3 ok · 1 changed" in console.export_text()


def test_the_message_goes_to_the_ops_channels_unless_routes_health_says_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from flows.health.flow import resolve_routes

    monkeypatch.setenv("MOLTBOT_OPS_CHANNELS", '["ops-slack", "outbox"]')
    assert [route.links for route in resolve_routes(None)] == [("ops-slack", "outbox")]
    assert [route.links for route in resolve_routes(["a", ["b", "c"]])] == [("a",), ("b", "c")]

    Path("moltbot.toml").write_text('[routes.health]\nchanged = ["ops-jandi"]\n', encoding="utf-8")
    assert [route.links for route in resolve_routes(None)] == [("ops-jandi",)]

"""Tests of the gateway config (`[webhooks]`): defaults, targets, placeholders, clear errors."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import pytest

from moltbot.config.project import ProjectConfig
from moltbot.errors import InputError
from moltbot.webhooks.config import DeploymentTarget, EventTarget, GatewayConfig

EVENT = {
    "id": "evt_1",
    "type": "payment.failed",
    "occurred_at": "2026-11-24T06:12:45+00:00",
    "payload": {"customer": "김민수"},
}


def test_defaults_route_payment_failed_to_payment_failures_and_an_alert() -> None:
    config = GatewayConfig.from_table(None)

    assert {name: source.block for name, source in config.sources.items()} == {
        "stripe": "webhook-stripe",
        "github": "webhook-github",
    }
    ticket, alert = config.targets_for("payment.failed")
    assert isinstance(ticket, DeploymentTarget)
    assert ticket.deployment == "payment-failures/default"
    # The inbox id, not the event: the payload stays out of the run's parameters (the UI).
    assert ticket.render_parameters(EVENT, "stripe", "inbox-1") == {"inbox_ids": ["inbox-1"]}
    assert isinstance(alert, EventTarget)
    assert alert.event_name("payment.failed", "stripe") == "moltbot.alert.payment.failed"
    [other] = config.targets_for("customer.created")
    assert isinstance(other, EventTarget)
    assert other.event_name("customer.created", "stripe") == "moltbot.webhook.customer.created"


def test_a_toml_table_with_single_targets_placeholders_and_ignore() -> None:
    table = tomllib.loads(
        """
        default = "ignore"

        [sources.shop]
        block = "webhook-shop"
        scheme = "stripe"
        tolerance_seconds = 60

        [routes]
        "error.spike" = { deployment = "ticket-creation/default", parameters = { events = ["{{ event }}"], mapping = "events", note = "고객 {x}" } }
        "order.paid" = [
          { deployment = "daily-report/default", parameters = { day = "{{ event.occurred_at }}", from = "{{source}}" } },
          { event = "shop.{source}.{type}" },
        ]
        """  # noqa: E501
    )

    config = GatewayConfig.from_table(table)

    assert list(config.sources) == ["shop"]
    assert config.sources["shop"].tolerance_seconds == 60
    assert config.targets_for("customer.created") == []
    [spike] = config.targets_for("error.spike")
    assert spike.render_parameters(EVENT, "shop") == {
        "events": [EVENT],
        "mapping": "events",
        "note": "고객 {x}",
    }
    report, event = config.targets_for("order.paid")
    assert report.render_parameters(EVENT, "shop") == {
        "day": "2026-11-24T06:12:45+00:00",
        "from": "shop",
    }
    assert event.event_name("order.paid", "shop") == "shop.shop.order.paid"


def test_a_deployment_target_passes_only_the_inbox_id_by_default() -> None:
    # Run parameters are shown to everyone with the Prefect UI: no payload unless asked for.
    target = DeploymentTarget(deployment="a/b")

    assert target.render_parameters(EVENT, "stripe", "inbox-7") == {"inbox_ids": ["inbox-7"]}


def test_a_route_that_asks_for_the_event_gets_it() -> None:
    target = DeploymentTarget(deployment="a/b", parameters={"event": "{{ event }}"})

    assert target.render_parameters(EVENT, "stripe") == {"event": EVENT}


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"colour": "red"}, "colour: unknown key"),
        (
            {"sources": {"s": {"blok": "b"}}},
            "sources.s.block: missing; sources.s.blok: unknown key",
        ),
        ({"sources": {"s": {"block": "b", "scheme": "gitlab"}}}, "sources.s.scheme"),
        ({"sources": {"Stripe Live": {"block": "b"}}}, "source name 'Stripe Live'"),
        ({"routes": {"a.b": [{"deployment": "x/y", "extra": 1}]}}, 'routes."a.b"[0].extra'),
        ({"routes": {"a": [{"deploymnt": "x/y"}]}}, "routes.a[0]: a target is a table with"),
        ({"routes": {"a": {"deployment": "xy"}}}, "'xy' is not \"<flow name>/<deployment name>\""),
        ({"routes": {"a": {"deployment": "x/y", "parameters": {"e": "{{ evnt }}"}}}}, "{{ evnt }}"),
        (
            {"routes": {"a": {"deployment": "x/y", "parameters": {"e": "id {{ event.id }}"}}}},
            "id {{",
        ),
        ({"routes": {"a": [{"deployment": "x/y"}, {"deployment": "x/y"}]}}, "deployment x/y twice"),
        ({"default": {"event": "x.{flavour}"}}, "may only use {type} and {source}"),
        ({"default": "drop"}, "default: a target is a table"),
    ],
)
def test_bad_tables_are_one_line_input_errors_naming_the_key(table: dict, message: str) -> None:
    with pytest.raises(InputError) as raised:
        GatewayConfig.from_table(table)

    text = str(raised.value)
    assert text.startswith("[webhooks] config: ")
    assert message in text
    assert "\n" not in text


@pytest.mark.parametrize(
    "event_type", ["payment.failed", "payment_intent.payment_failed", "charge.failed"]
)
def test_the_default_payment_routes_fit_the_payment_failures_flow_signature(
    event_type: str,
) -> None:
    from flows.payment_failures.flow import payment_failures

    [target, *_alert] = GatewayConfig.from_table(None).targets_for(event_type)
    parameters = target.render_parameters(EVENT, "stripe", "inbox-1")

    assert payment_failures.name == target.deployment.split("/")[0]
    assert payment_failures.validate_parameters(parameters)["inbox_ids"] == ["inbox-1"]


def test_the_shipped_moltbot_toml_gives_a_valid_gateway_config(tmp_path: Path) -> None:
    shipped = Path(__file__).parents[2] / "moltbot.toml"
    shutil.copy(shipped, tmp_path / "moltbot.toml")

    config = GatewayConfig.from_project()

    assert "payment.failed" in config.routes


def test_a_bad_webhooks_table_in_moltbot_toml_names_its_line(tmp_path: Path) -> None:
    (tmp_path / "moltbot.toml").write_text(
        """# project config
[ticket_creation.mappings.x]
source = "events"

[webhooks]
default = "ignore"

[webhooks.routes]
"payment.failed" = { deployment = "ticket-creation/default", parameter = {} }
""",
        encoding="utf-8",
    )

    with pytest.raises(InputError) as raised:
        GatewayConfig.from_project(ProjectConfig.load(tmp_path / "moltbot.toml"))

    assert str(raised.value) == (
        'moltbot.toml line 9: [webhooks] config: routes."payment.failed"[0].parameter: unknown key'
    )

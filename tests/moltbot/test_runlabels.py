"""Run names, tags and artifact descriptions: pure rules, then real runs on the test Prefect API."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from flows.daily_report.flow import report_date_label
from flows.ticket_creation.flow import batch_label
from flows.ticket_creation.flow import run_label as ticket_label
from moltbot.runlabels import (
    artifact_description,
    local_minute,
    missing_tags,
    name_timezone,
    run_name,
    run_tags,
)

# 12:00 UTC is 21:00 in Seoul, already the next day's early morning nowhere relevant.
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


# --------------------------------------------------------------------------- tags


@pytest.mark.parametrize(
    ("dry_run", "origin", "expected"),
    [
        (False, None, ["daily-report"]),
        (False, "cli", ["daily-report", "cli"]),
        (True, "demo", ["daily-report", "demo", "dry-run"]),
        (True, "schedule", ["daily-report", "schedule", "dry-run"]),
        (False, "webhook", ["daily-report", "webhook"]),
    ],
)
def test_run_tags_name_the_automation_the_origin_and_a_dry_run(dry_run, origin, expected):
    assert run_tags("daily-report", dry_run=dry_run, origin=origin) == expected


def test_an_unknown_origin_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown run origin 'cron'"):
        run_tags("daily-report", origin="cron")  # type: ignore[arg-type]


def test_missing_tags_adds_only_what_the_run_lacks():
    assert missing_tags(["moltbot"], "form-digest", dry_run=False, auto_scheduled=True) == [
        "form-digest",
        "schedule",
    ]
    assert (
        missing_tags(
            ["form-digest", "cli", "dry-run"], "form-digest", dry_run=True, auto_scheduled=False
        )
        == []
    )


# --------------------------------------------------------------------------- names


def test_local_minute_is_in_the_given_timezone():
    assert local_minute(NOW, "Asia/Seoul") == "2026-12-03 21:00"
    assert local_minute(datetime(2026, 12, 3, 12, 0), "UTC") == "2026-12-03 12:00"


def test_run_name_says_the_local_check_time_and_marks_a_dry_run(monkeypatch):
    monkeypatch.setenv("MOLTBOT_TIMEZONE", "Asia/Seoul")
    assert run_name("inventory-alert", {}, now=NOW) == "inventory-alert 2026-12-03 21:00"
    assert (
        run_name("form-digest", {"dry_run": True, "timezone": "Europe/Paris"}, now=NOW)
        == "form-digest 2026-12-03 13:00 (dry run)"
    )


def test_a_bad_timezone_parameter_falls_back_to_the_setting(monkeypatch):
    monkeypatch.setenv("MOLTBOT_TIMEZONE", "Asia/Seoul")
    assert name_timezone({"timezone": "Mars/Olympus"}) == "Asia/Seoul"
    assert name_timezone({"timezone": None}) == "Asia/Seoul"


def test_a_failing_label_falls_back_to_the_check_time(monkeypatch):
    monkeypatch.setenv("MOLTBOT_TIMEZONE", "Asia/Seoul")

    def broken(parameters: Any, timezone: str, now: datetime) -> str:
        raise ValueError("no")

    assert run_name("daily-report", {}, now=NOW, label=broken) == "daily-report 2026-12-03 21:00"


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [
        ({"report_date": date(2026, 11, 30)}, "daily-report 2026-11-30"),
        ({"report_date": "2026-11-30", "dry_run": True}, "daily-report 2026-11-30 (dry run)"),
        # Yesterday in Seoul (it is already 3 Dec there at 12:00 UTC)...
        ({"report_date": None}, "daily-report 2026-12-02"),
        # ...and in Los Angeles, where it is still 3 Dec at 04:00.
        ({"timezone": "America/Los_Angeles"}, "daily-report 2026-12-02"),
        ({"timezone": "Pacific/Kiritimati"}, "daily-report 2026-12-03"),
    ],
)
def test_daily_report_runs_are_named_by_their_report_date(parameters, expected, monkeypatch):
    monkeypatch.setenv("MOLTBOT_TIMEZONE", "Asia/Seoul")
    assert run_name("daily-report", parameters, now=NOW, label=report_date_label) == expected


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [
        ({"events": [{}, {}, {}]}, "ticket-creation 2026-12-03 21:00 (3 events)"),
        ({"events": [{}]}, "ticket-creation 2026-12-03 21:00 (1 event)"),
        ({"inbox_ids": ["a", "b"]}, "ticket-creation 2026-12-03 21:00 (2 webhook events)"),
        ({"events_file": "e.jsonl"}, "ticket-creation 2026-12-03 21:00 (events file)"),
        (
            {"worksheet": "Form Responses 1", "dry_run": True},
            "ticket-creation 2026-12-03 21:00 (form answers) (dry run)",
        ),
        ({}, "ticket-creation 2026-12-03 21:00"),
    ],
)
def test_ticket_creation_runs_say_their_batch(parameters, expected, monkeypatch):
    monkeypatch.setenv("MOLTBOT_TIMEZONE", "Asia/Seoul")
    assert run_name("ticket-creation", parameters, now=NOW, label=ticket_label) == expected


def test_batch_label_of_events_passed_as_none_is_empty():
    assert batch_label({"events": None, "inbox_ids": None}) == ""


# --------------------------------------------------------------------------- descriptions


def test_artifact_descriptions_start_with_the_automation_and_when():
    assert (
        artifact_description("daily-report", "2026-12-02", "top products", dry_run=False)
        == "daily-report 2026-12-02 · top products"
    )
    assert (
        artifact_description("inventory-alert", "2026-12-03 21:00", "", "1 out", dry_run=True)
        == "DRY RUN — inventory-alert 2026-12-03 21:00 · 1 out"
    )


# --------------------------------------------------------------------------- real runs


def read_run(run_id: Any) -> Any:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id)


def test_a_flow_run_gets_its_name_and_missing_tags(prefect_api: str, monkeypatch) -> None:
    import prefect
    from prefect import flow
    from prefect.runtime import flow_run

    from moltbot.runlabels import flow_run_namer, label_current_run

    monkeypatch.setenv("MOLTBOT_TIMEZONE", "Asia/Seoul")

    @flow(name="runlabels-probe", flow_run_name=flow_run_namer("runlabels-probe"))
    def probe(dry_run: bool = False) -> tuple[str, list[str]]:
        return str(flow_run.get_id()), label_current_run("runlabels-probe", dry_run=dry_run)

    with prefect.tags(*run_tags("runlabels-probe", origin="cli")):
        run_id, added = probe(dry_run=True)

    run = read_run(run_id)
    assert run.name.startswith("runlabels-probe 20") and run.name.endswith(" (dry run)")
    assert added == ["dry-run"]  # the automation's tag came with the CLI's tags
    assert set(run.tags) == {"runlabels-probe", "cli", "dry-run"}


def test_label_current_run_outside_a_run_does_nothing() -> None:
    from moltbot.runlabels import label_current_run

    assert label_current_run("daily-report", dry_run=True) == []


@pytest.fixture
def inbox(tmp_path: Path) -> Iterator[Any]:
    from moltbot.state.inbox import Inbox
    from moltbot.state.ledger import Ledger

    with Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite3'}") as ledger:
        yield Inbox(ledger)


def test_the_gateway_tags_its_runs_with_the_automation_and_webhook(
    prefect_api: str, inbox: Any
) -> None:
    from prefect import flow
    from prefect.client.orchestration import get_client

    from moltbot.webhooks.config import GatewayConfig
    from moltbot.webhooks.dispatcher import RUN_TAGS, Dispatcher

    @flow(name="runlabels-webhook-sink")
    def sink(events: list[dict[str, Any]], dry_run: bool = False) -> int:
        return len(events)

    name = f"d-{uuid.uuid4().hex[:10]}"
    sink.to_deployment(name=name).apply()
    route = {
        "deployment": f"runlabels-webhook-sink/{name}",
        "parameters": {"events": ["{{ event }}"], "dry_run": True},
    }
    config = GatewayConfig.from_table({"routes": {"payment.failed": [route]}})
    event = {
        "id": "evt_1",
        "type": "payment.failed",
        "occurred_at": "2026-11-24T06:00:00+00:00",
        "payload": {},
    }
    [entry, *_] = inbox.accept("stripe", event, received_at=NOW)

    Dispatcher(inbox, config).dispatch_pending()

    flow_run_id = inbox.get(entry.id).flow_run_id
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(uuid.UUID(flow_run_id))
    assert {*RUN_TAGS, "runlabels-webhook-sink", "webhook", "dry-run"} <= set(run.tags)

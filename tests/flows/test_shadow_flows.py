"""Shadow mode end to end: real runs record inputs; a template and a mapping change; `moltbot
shadow` finds exactly what changes, and sends, claims and records nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from blocks import SlackIncomingWebhook
from flows.inventory_alert.flow import inventory_alert
from flows.ticket_creation.flow import ticket_creation
from moltbot.cli import app
from moltbot.sandbox import Sandbox
from moltbot.state.ledger import Ledger
from moltbot.state.recorded_inputs import RecordedInputs

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[2]
NAMES = ("inventory-alert", "ticket-creation")
STOCK = """sku,name,on_hand,reorder_point,lead_time_days,daily_demand,location
A-1,우유,3,5,2,1,서울
B-2,두부,0,4,2,1,부산
C-3,계란,50,10,2,1,서울
"""
MAPPING = """
[ticket_creation.mappings.alerts]
source = "events"
event_types = ["alert.fired"]
project = "OPS"
issue_type = "Incident"
summary = "{{ payload.title }}"
description = "보고자: {{ payload.reporter }}"

[ticket_creation.mappings.alerts.priority]
from = "{{ payload.severity }}"
map = { critical = "Highest", warning = "Medium" }
"""


def event(n: int, severity: str) -> dict[str, Any]:
    return {
        "id": f"alert-{n}",
        "type": "alert.fired",
        "occurred_at": "2026-11-24T09:00:00+09:00",
        "payload": {"title": f"결제 API 오류 {n}", "severity": severity, "reporter": "ops"},
    }


def ledger_rows() -> list[tuple]:
    with Ledger.from_settings() as ledger:
        return sorted(
            (e.key, e.status.value, e.attempts, e.updated_at, e.flow_run_id)
            for e in ledger.effects()
        )


def shadow(*args: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(app, ["shadow", *args, "--json"])
    return result.exit_code, json.loads(result.stdout)


def changes(document: dict[str, Any], run: int = 0) -> list[tuple[str, str, str]]:
    """The changes of the document's `run`-th replayed run (oldest first)."""
    return [(e["change"], e["kind"], e["target"]) for e in document["runs"][run]["effects"]]


def test_a_template_and_a_mapping_change_show_exactly_the_changed_message_and_ticket(
    sandbox: Sandbox,
    sandbox_blocks: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    SlackIncomingWebhook(url=sandbox.slack_webhook_url("ops")).save("slack-ops", overwrite=True)
    (tmp_path / "stock.csv").write_text(STOCK, encoding="utf-8")
    config = tmp_path / "moltbot.toml"
    config.write_text(MAPPING, encoding="utf-8")
    # The second check has no news and is kept (the item states it compared with changed);
    # the third has the same input as the second and is not kept again.
    for _ in range(3):
        inventory_alert(
            source=str(tmp_path / "stock.csv"),
            channels_by_severity={"out": ["slack-ops"], "low": ["slack-ops"]},
        )
    ticket_creation(events=[event(1, "warning"), event(2, "critical")], jira_block="sandbox-jira")
    posts, issues = len(sandbox.state.slack.posts), sandbox.state.jira.issues()
    assert posts == 2 and len(issues) == 2
    before = ledger_rows()

    # Unchanged code: every effect is the same, and CI passes.
    unchanged = shadow("inventory-alert")
    assert unchanged[0] == 0, unchanged
    assert sorted(changes(unchanged[1])) == [
        ("same", "message", "low"),
        ("same", "message", "out"),
    ]
    assert len(unchanged[1]["runs"]) == 2 and changes(unchanged[1], run=1) == []
    assert changes(shadow("ticket-creation")[1]) == [("same", "ticket", "jira:OPS")] * 2

    # One word of the low alert's title, through an override folder of templates...
    overrides = tmp_path / "templates" / "inventory-alert" / "en"
    overrides.mkdir(parents=True)
    shipped = ROOT / "flows" / "inventory_alert" / "templates" / "en" / "title.txt.j2"
    title = shipped.read_text(encoding="utf-8")
    (overrides / "title.txt.j2").write_text(title.replace("Low stock", "Running low"), "utf-8")
    monkeypatch.setenv("MOLTBOT_TEMPLATES_DIR", str(tmp_path / "templates"))
    # ... and the critical priority of the ticket mapping.
    config.write_text(MAPPING.replace('critical = "Highest"', 'critical = "High"'), "utf-8")

    code, stock = shadow("inventory-alert")
    assert code == 1
    assert sorted(changes(stock)) == [("changed", "message", "low"), ("same", "message", "out")]
    assert changes(stock, run=1) == []  # the check with no news still sends nothing
    [low] = [e for e in stock["runs"][0]["effects"] if e["change"] == "changed"]
    assert "-Low stock: 1 item" in low["diff"] and "+Running low: 1 item" in low["diff"]

    page = tmp_path / "shadow.html"
    result = CliRunner().invoke(app, ["shadow", "ticket-creation", "--html", str(page)])
    assert result.exit_code == 1, result.output
    assert "changed ticket -> jira:OPS" in result.stdout
    assert '-priority: "Highest"\n+priority: "High"' in result.stdout
    code, tickets = shadow("ticket-creation")
    assert code == 1
    by_change = {e["change"]: e for e in tickets["runs"][0]["effects"]}
    assert sorted(changes(tickets)) == [
        ("changed", "ticket", "jira:OPS"),
        ("same", "ticket", "jira:OPS"),
    ]
    assert by_change["changed"]["diff"].count("\n-") == 1  # only the priority line
    assert "+priority: &#34;High&#34;" in page.read_text(encoding="utf-8")  # escaped

    # Nothing was sent, claimed or recorded as done; the recorded inputs stayed as they were.
    assert len(sandbox.state.slack.posts) == posts
    assert [i.key for i in sandbox.state.jira.issues()] == [i.key for i in issues]
    assert ledger_rows() == before
    with Ledger.from_settings() as ledger:
        recorded = RecordedInputs(ledger)
        since = datetime(2000, 1, 1, tzinfo=UTC)
        assert [len(recorded.runs(name, since)) for name in NAMES] == [2, 1]


def test_a_dry_run_records_no_input(sandbox: Sandbox, sandbox_blocks: list[str], tmp_path: Path):
    (tmp_path / "moltbot.toml").write_text(MAPPING, encoding="utf-8")
    ticket_creation(events=[event(1, "warning")], jira_block="sandbox-jira", dry_run=True)

    result = CliRunner().invoke(app, ["shadow", "ticket-creation"])

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("no recorded runs of ticket-creation since")
    assert sandbox.state.jira.issues() == []


def test_a_run_whose_inbox_entries_were_pruned_is_reported_in_one_line(
    sandbox: Sandbox, sandbox_blocks: list[str], tmp_path: Path
) -> None:
    from moltbot.retention import FinishedInboxEntries
    from moltbot.state.inbox import Inbox

    (tmp_path / "moltbot.toml").write_text(MAPPING, encoding="utf-8")
    with Ledger.from_settings() as ledger:
        inbox = Inbox(ledger)
        entry, _ = inbox.accept("test", event(3, "warning"), received_at=datetime.now(UTC))
    ticket_creation(inbox_ids=[entry.id], jira_block="sandbox-jira")
    assert changes(shadow("ticket-creation")[1]) == [("same", "ticket", "jira:OPS")]
    with Ledger.from_settings() as ledger:
        # The inbox's own retention removes the settled entry the snapshot names.
        Inbox(ledger).mark_ignored(entry.id)
        assert FinishedInboxEntries(ledger).prune(datetime.now(UTC) + timedelta(days=1)) == 1

    result = CliRunner().invoke(app, ["--locale", "ko", "shadow", "ticket-creation"])

    assert result.exit_code == 1, result.output
    assert "재생하지 못함: 입력이 정리되어 남아 있지 않습니다" in result.stdout
    assert "Traceback" not in result.output


def test_a_form_digest_window_replays_and_a_title_change_shows(
    sandbox: Sandbox, sandbox_blocks: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from demo.sample_forms import (
        NPS_COLUMN,
        PERSONAL_COLUMNS,
        REQUIRED_COLUMNS,
        SAMPLE_FORM_NAME,
        SAMPLE_FORM_WORKSHEET,
        sample_form_sheet,
    )
    from flows.form_digest.flow import form_digest
    from moltbot.config.settings import get_settings

    sheet = {SAMPLE_FORM_WORKSHEET: sample_form_sheet(1)}
    spreadsheet_id = sandbox.state.sheets.create_spreadsheet(SAMPLE_FORM_NAME, sheet)
    form_digest(
        sheets_block="sandbox-sheets", spreadsheet_id=spreadsheet_id,
        worksheet=SAMPLE_FORM_WORKSHEET, form_name=SAMPLE_FORM_NAME, channels=["outbox"],
        required_columns=list(REQUIRED_COLUMNS), nps_column=NPS_COLUMN,
        skip_columns=list(PERSONAL_COLUMNS),
    )  # fmt: skip
    files = sorted(get_settings().outbox_dir.iterdir())
    before = ledger_rows()
    assert changes(shadow("form-digest")[1]) == [("same", "message", "info")]

    overrides = tmp_path / "templates" / "form-digest" / "en"
    overrides.mkdir(parents=True)
    (overrides / "title.txt.j2").write_text("{{ form }} summary {{ start_date }}", "utf-8")
    monkeypatch.setenv("MOLTBOT_TEMPLATES_DIR", str(tmp_path / "templates"))
    code, document = shadow("form-digest")

    assert code == 1 and changes(document) == [("changed", "message", "info")]
    assert f"+{SAMPLE_FORM_NAME} summary" in document["runs"][0]["effects"][0]["diff"]
    assert sorted(get_settings().outbox_dir.iterdir()) == files and ledger_rows() == before

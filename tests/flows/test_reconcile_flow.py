"""The reconcile flow end to end: real automations run first, omissions planted, exactly those
found (real Prefect API, Sheets and Jira emulators, Slack emulator, ledger)."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from blocks import SlackIncomingWebhook
from demo.sample_forms import SAMPLE_FORM_NAME, SAMPLE_FORM_WORKSHEET, sample_form_sheet
from deployments.specs import DEPLOYMENT_NAME
from flows.form_digest.flow import form_digest
from flows.inventory_alert.flow import inventory_alert
from flows.reconcile.flow import reconcile
from flows.ticket_creation.flow import ticket_creation
from moltbot.blockdocs import save_block_document
from moltbot.errors import InputError
from moltbot.state.inbox import Inbox, InboxStatus
from moltbot.state.ledger import EffectStatus, Ledger, effects_table
from moltbot.webhooks.config import GatewayConfig
from moltbot.webhooks.dispatcher import Dispatcher
from tests.ledger_checks import assert_only_the_failed_run_is_audited

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[2]
EXAMPLE_EVENTS = ROOT / "flows" / "ticket_creation" / "examples" / "events.jsonl"
TICKETS = f"ticket-creation/{DEPLOYMENT_NAME}"
ROOM = "reconcile"
# Webhooks of type payment.failed go to ticket-creation only (the shipped mappings are kept).
WEBHOOK_ROUTES = f'\n[webhooks.routes]\n"payment.failed" = {{ deployment = "{TICKETS}" }}\n'


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The shipped moltbot.toml (its ticket mappings) with the test's webhook route."""
    path = Path(shutil.copy(ROOT / "moltbot.toml", tmp_path / "moltbot.toml"))
    path.write_text(path.read_text(encoding="utf-8") + WEBHOOK_ROUTES, encoding="utf-8")
    return path


@pytest.fixture
def alert_channel(sandbox, sandbox_blocks) -> str:
    save_block_document(
        SlackIncomingWebhook(url=sandbox.slack_webhook_url(ROOM)), "reconcile-slack"
    )
    return "reconcile-slack"


def posts(sandbox) -> list[dict[str, Any]]:
    url = sandbox.slack_webhook_url(ROOM)
    return [post.payload for post in sandbox.state.slack.messages_for(url)]


def effects(prefix: str) -> list:
    with Ledger.from_settings() as ledger:
        return ledger.effects(key_prefix=prefix)


def delete_effects(keys: list[str]) -> None:
    with Ledger.from_settings() as ledger, ledger.engine.begin() as conn:
        conn.execute(effects_table.delete().where(effects_table.c.key.in_(keys)))


def example_events() -> list[dict[str, Any]]:
    return [json.loads(line) for line in EXAMPLE_EVENTS.read_text().splitlines()]


def run_the_automations(sandbox, tmp_path: Path) -> dict[str, Any]:
    """Form-digest twice on the Sheets emulator, inventory-alert on a CSV, ticket-creation for a
    webhook inbox entry: everything they should do, done."""
    sheet = sandbox.state.sheets.create_spreadsheet(
        SAMPLE_FORM_NAME, {SAMPLE_FORM_WORKSHEET: sample_form_sheet(1)}
    )
    digest = {
        "sheets_block": "sandbox-sheets",
        "spreadsheet_id": sheet,
        "worksheet": SAMPLE_FORM_WORKSHEET,
        "channels": ["outbox"],
    }
    first = form_digest(**digest)
    sandbox.state.sheets.set_values(sheet, SAMPLE_FORM_WORKSHEET, sample_form_sheet(2))
    second = form_digest(**digest)
    assert [(r["window"]["first_row"], r["window"]["last_row"]) for r in (first, second)] == [
        (2, 25),
        (26, 31),
    ]

    stock = tmp_path / "stock.csv"
    stock.write_text(
        "sku,name,on_hand,reorder_point\nA1,Earbuds,3,10\nB2,Green Tea,0,5\nC3,Tumbler,50,10\n",
        encoding="utf-8",
    )
    alerts = inventory_alert(
        source=str(stock), channels_by_severity={"out": ["outbox"], "low": ["outbox"]}
    )
    assert sorted(t["sku"] for t in alerts["transitions"]) == ["A1", "B2"]

    events = example_events()
    with Ledger.from_settings() as ledger:
        inbox = Inbox(ledger)
        handled, _ = inbox.accept("stripe", events[0], received_at=datetime.now(UTC))
    state = ticket_creation(inbox_ids=[handled.id], jira_block="sandbox-jira", return_state=True)
    assert state.is_completed()
    run_id = str(state.state_details.flow_run_id)
    with Ledger.from_settings() as ledger:
        inbox = Inbox(ledger)
        claimed = inbox.claim(handled, now=datetime.now(UTC), lease=timedelta(minutes=1))
        results = [{"target": f"deployment {TICKETS}", "id": run_id}]
        inbox.mark_dispatched(claimed.id, flow_run_id=run_id, results=results)
    return {"sheet": sheet, "handled": handled.id, "events": events}


def plant_omissions(events: list[dict[str, Any]]) -> dict[str, str]:
    """A deleted digest row, a dead stock alert, an entry dispatched to a run that never
    started (the real dispatcher, no worker), an entry never dispatched."""
    [first_window] = [e for e in effects("form-digest:") if ":2-25:" in e.key]
    delete_effects([first_window.key])
    [out_alert] = effects("inventory-alert:out:")
    with Ledger.from_settings() as ledger:
        ledger.fail(out_alert.key, "planted: every destination failed", dead=True)

    ticket_creation.to_deployment(name=DEPLOYMENT_NAME).apply()
    with Ledger.from_settings() as ledger:
        inbox = Inbox(ledger)
        unstarted, _ = inbox.accept("stripe", events[1], received_at=datetime.now(UTC))
        counts = Dispatcher(inbox, GatewayConfig.from_project()).dispatch_pending()
        assert counts.dispatched == 1
        assert inbox.get(unstarted.id).status == InboxStatus.DISPATCHED
        never = {**events[1], "id": "pay-20261124-0003"}
        pending, _ = inbox.accept("stripe", never, received_at=datetime.now(UTC))
    return {
        "digest": first_window.key,
        "alert": out_alert.key,
        "unstarted": unstarted.id,
        "pending": pending.id,
    }


def test_planted_omissions_are_found_exactly_alerted_once_and_only_new_ones_later(
    sandbox, sandbox_blocks, project, alert_channel, tmp_path
):
    before = run_the_automations(sandbox, tmp_path)
    clean = reconcile(channels=[alert_channel], pending_grace_minutes=0)
    assert clean["omissions_total"] == 0 and clean["new_omissions"] == 0
    assert {name: rate["omissions"] for name, rate in clean["omission_rate"].items()} == {
        "form-digest": 0,
        "inventory-alert": 0,
        "ticket-creation": 0,
    }
    assert posts(sandbox) == []

    planted = plant_omissions(before["events"])
    result = reconcile(channels=[alert_channel], pending_grace_minutes=0)

    found = {(o["automation"], o["item"], o["reason"]): o for o in result["omissions"]}
    assert sorted(found) == sorted(
        [
            ("form-digest", "2–25", "missing_digest"),
            ("inventory-alert", "B2", "dead"),
            ("ticket-creation", planted["unstarted"], "run_not_started"),
            ("ticket-creation", planted["pending"], "inbox_pending"),
        ]
    )
    assert result["omissions_total"] == 4 and result["new_omissions"] == 4
    assert found[("inventory-alert", "B2", "dead")]["key"] == planted["alert"]
    assert found[("form-digest", "2–25", "missing_digest")]["key"] == (
        f"form-digest:{before['sheet']}/{SAMPLE_FORM_WORKSHEET}:2-25:"
    )
    assert found[("ticket-creation", planted["unstarted"], "run_not_started")]["detail"] == (
        "Scheduled"
    )
    assert result["omission_rate"] == {
        "form-digest": {"expected": 2, "omissions": 1, "rate": 0.5},
        "inventory-alert": {"expected": 2, "omissions": 1, "rate": 0.5},
        "ticket-creation": {"expected": 3, "omissions": 2, "rate": 0.6667},
    }
    [post] = posts(sandbox)
    assert post["blocks"][0]["text"]["text"] == "Reconcile: 4 new omissions"
    text = " ".join(block["text"]["text"] for block in post["blocks"][1:])
    assert "sheet rows 2–25: no ledger row for the rows' digest" in text
    assert f"inbox entry {planted['pending']}: inbox entry pending past its deadline" in text
    assert [d["status"] for d in result["deliveries"]] == ["done"]

    again = reconcile(channels=[alert_channel], pending_grace_minutes=0)
    assert again["omissions_total"] == 4 and again["new_omissions"] == 0
    assert again["deliveries"] == [] and len(posts(sandbox)) == 1

    [low_alert] = effects("inventory-alert:low:")
    delete_effects([low_alert.key])
    later = reconcile(channels=[alert_channel], pending_grace_minutes=0)
    assert later["new_omissions"] == 1 and later["omissions_total"] == 5
    assert posts(sandbox)[-1]["blocks"][0]["text"]["text"] == "Reconcile: 1 new omission"
    assert later["omission_rate"]["inventory-alert"] == {"expected": 2, "omissions": 2, "rate": 1.0}


def test_dry_run_previews_the_alert_and_saves_nothing(sandbox, sandbox_blocks, alert_channel):
    with Ledger.from_settings() as ledger:
        ledger.claim("daily-report:2026-11-23:outbox", automation="daily-report",
                     flow_run_id=None, kind="message", target="outbox")  # fmt: skip
        ledger.fail("daily-report:2026-11-23:outbox", "smtp down", dead=True)

    preview = reconcile(channels=[alert_channel], dry_run=True)

    assert preview["new_omissions"] == 1 and preview["states_saved"] == 0
    assert [d["status"] for d in preview["deliveries"]] == ["dry_run"]
    assert posts(sandbox) == []
    result = reconcile(channels=[alert_channel])
    assert result["new_omissions"] == 1 and len(posts(sandbox)) == 1
    assert effects("reconcile:")[0].status == EffectStatus.DONE


def test_korean_alert(sandbox, sandbox_blocks, alert_channel, monkeypatch):
    monkeypatch.setenv("MOLTBOT_LOCALE", "ko")
    with Ledger.from_settings() as ledger:
        inbox = Inbox(ledger)
        entry, _ = inbox.accept("stripe", example_events()[0], received_at=datetime.now(UTC))
        inbox.mark_failed(entry.id, error="deployment not found")

    result = reconcile(channels=[alert_channel])

    [omission] = result["omissions"]
    assert omission["reason_text"] == "수신함 항목 실패: 실행이 만들어지지 않음"
    [post] = posts(sandbox)
    assert post["blocks"][0]["text"]["text"] == "대조 점검: 새 누락 1건"
    assert f"수신함 항목 {entry.id}" in post["blocks"][1]["text"]["text"]


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"since_hours": 0}, "since_hours must be more than 0, got 0"),
        ({"pending_grace_minutes": -1}, "pending_grace_minutes must be 0 or more, got -1"),
        ({"automations": ["nope"]}, "automations: unknown automation 'nope'"),
    ],
)
def test_bad_parameters_fail_before_anything_is_read(
    prefect_api, moltbot_home, parameters, message
):
    with pytest.raises(InputError, match=message):
        reconcile(**parameters)
    assert_only_the_failed_run_is_audited(moltbot_home)

"""`moltbot prune`: finished effects, settled inbox entries and outbox files age out; what a run or
a person still needs stays, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from moltbot.cli import app
from moltbot.config.settings import get_settings
from moltbot.errors import InputError
from moltbot.retention import (
    FinishedEffects,
    FinishedInboxEntries,
    OldPaymentEvents,
    OutboxFiles,
    SettledEscalations,
    cutoff_for,
    logical_item,
    prune_stores,
    retention_stores,
)
from moltbot.state.audit import AuditTrail
from moltbot.state.escalations import EscalationStore
from moltbot.state.inbox import Inbox, InboxStatus, inbox_table
from moltbot.state.item_state import STATE_COLUMNS, ItemStateStore
from moltbot.state.ledger import EffectStatus, Ledger, effects_table
from moltbot.state.watermarks import WatermarkStore

runner = CliRunner()
NOW = datetime.now(UTC)
CUTOFF = NOW - timedelta(days=90)
OLD = NOW - timedelta(days=120)
RECENT = NOW - timedelta(days=10)


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state' / 'ledger.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres_database_url")
    with Ledger(url) as opened:
        yield opened


def effect(
    ledger: Ledger,
    key: str,
    status: EffectStatus,
    *,
    at: datetime,
    automation: str = "daily-report",
    route: list[str] | None = None,
) -> None:
    """A ledger row claimed and finished through the ledger's own calls, then dated `at`."""
    route = route or [key.rsplit(":", 1)[1]]
    ledger.claim(key, automation=automation, kind="message", target=route[0],
                 details={"route": json.dumps(route), "payload": "{}"})  # fmt: skip
    if status == EffectStatus.DONE:
        ledger.complete(key, via=route[0])
    elif status != EffectStatus.PENDING:
        ledger.fail(key, "smtp 421", dead=status == EffectStatus.DEAD,
                    in_doubt=status == EffectStatus.IN_DOUBT)  # fmt: skip
    with ledger.engine.begin() as conn:
        conn.execute(update(effects_table).where(effects_table.c.key == key).values(updated_at=at))


def keys(ledger: Ledger) -> set[str]:
    return {row.key for row in ledger.effects()}


def test_only_old_done_effects_go_and_what_awaits_a_run_or_a_person_stays(ledger: Ledger) -> None:
    effect(ledger, "daily-report:2026-07-01:team-slack", EffectStatus.DONE, at=OLD)
    effect(ledger, "daily-report:2026-11-20:team-slack", EffectStatus.DONE, at=RECENT)
    for number, status in enumerate([EffectStatus.PENDING, EffectStatus.FAILED,
                                     EffectStatus.DEAD, EffectStatus.IN_DOUBT]):  # fmt: skip
        effect(ledger, f"form-digest:s:{number}:team-slack", status, at=OLD,
               automation="form-digest")  # fmt: skip
    store = FinishedEffects(ledger)
    before = keys(ledger)

    assert (store.count(CUTOFF), store.kept(CUTOFF)) == (1, 4)
    assert keys(ledger) == before  # counting removes nothing

    assert store.prune(CUTOFF) == 1
    assert keys(ledger) == before - {"daily-report:2026-07-01:team-slack"}
    assert store.count(CUTOFF) == 0


def test_a_done_destination_stays_while_another_destination_of_its_item_is_unsettled(
    ledger: Ledger,
) -> None:
    # One alert went to Slack; its e-mail is dead. A re-run rebuilds the same key and must find
    # Slack done, or it posts the alert to Slack a second time.
    item = "inventory-alert:out:db8b2c36"
    effect(ledger, f"{item}:team-slack", EffectStatus.DONE, at=OLD, automation="inventory-alert")
    effect(ledger, f"{item}:ops-email", EffectStatus.DEAD, at=OLD, automation="inventory-alert")
    # A route whose first link holds a colon of its own.
    sheet_item = "daily-report:2026-06-30"
    effect(ledger, f"{sheet_item}:sheets:kpi-sheet", EffectStatus.DONE, at=OLD,
           route=["sheets:kpi-sheet"])  # fmt: skip
    effect(ledger, f"{sheet_item}:team-slack", EffectStatus.FAILED, at=OLD)

    assert FinishedEffects(ledger).prune(CUTOFF) == 0

    again = ledger.claim(f"{item}:team-slack", automation="inventory-alert", kind="message",
                         target="team-slack")  # fmt: skip
    assert not again.acquired
    assert again.effect.status == EffectStatus.DONE
    assert ledger.get(f"{sheet_item}:sheets:kpi-sheet") is not None


def test_done_effects_stay_while_their_automation_holds_an_uncommitted_window(
    ledger: Ledger,
) -> None:
    key = "form-digest:sheet/응답:2-25:6493f15d:team-slack"
    effect(ledger, key, EffectStatus.DONE, at=OLD, automation="form-digest")
    marks = WatermarkStore(ledger, "form-digest")
    marks.hold("sheet/응답", {"row": 25})

    assert FinishedEffects(ledger).count(CUTOFF) == 0

    marks.advance("sheet/응답", {"row": 25}, expected=None)
    assert FinishedEffects(ledger).prune(CUTOFF) == 1
    assert ledger.get(key) is None


def test_done_effects_stay_until_their_automation_writes_item_states_after_them(
    ledger: Ledger,
) -> None:
    key = "inventory-alert:low:c7d8d734:team-slack"
    effect(ledger, key, EffectStatus.DONE, at=OLD, automation="inventory-alert")
    store = ItemStateStore(ledger, "inventory-alert")
    row = pd.DataFrame([("MB-006", "low", OLD, OLD, OLD)], columns=list(STATE_COLUMNS))
    # The run that sent it started before it was done and saved its states then: a crash
    # between sending and saving would look the same, so the row stays.
    store.write(row, now=OLD - timedelta(minutes=1))

    assert FinishedEffects(ledger).count(CUTOFF) == 0

    store.write(row, now=OLD + timedelta(days=1))  # a later run saved states: it moved past
    assert FinishedEffects(ledger).prune(CUTOFF) == 1


def test_logical_item_drops_the_destination() -> None:
    assert logical_item("daily-report:2026-12-03:team-slack", '["team-slack"]') == (
        "daily-report:2026-12-03"
    )
    assert logical_item("daily-report:2026-12-03:sheets:kpi", '["sheets:kpi", "x"]') == (
        "daily-report:2026-12-03"
    )
    assert logical_item("form-digest:s/t:2-25:ab12:notion", None) == "form-digest:s/t:2-25:ab12"


def test_settled_inbox_entries_go_and_pending_or_failed_ones_stay(ledger: Ledger) -> None:
    inbox = Inbox(ledger)
    ids = {}
    for name in ("dispatched", "ignored", "pending", "failed", "recent"):
        entry, _ = inbox.accept("stripe", {"id": f"evt_{name}", "type": "payment.failed",
                                           "occurred_at": None, "payload": {}},
                                received_at=OLD, ignored=name == "ignored")  # fmt: skip
        ids[name] = entry.id
    inbox.mark_dispatched(ids["dispatched"], flow_run_id="run-1", results=[])
    inbox.mark_dispatched(ids["recent"], flow_run_id="run-2", results=[])
    inbox.mark_failed(ids["failed"], error="deployment not found")
    with ledger.engine.begin() as conn:
        conn.execute(update(inbox_table).values(updated_at=OLD))
        conn.execute(
            update(inbox_table).where(inbox_table.c.id == ids["recent"]).values(updated_at=RECENT)
        )
    store = FinishedInboxEntries(ledger)

    assert (store.count(CUTOFF), store.kept(CUTOFF)) == (2, 2)
    assert store.prune(CUTOFF) == 2
    left = {entry.event_id: entry.status for entry in inbox.entries()}
    assert left == {
        "evt_pending": InboxStatus.PENDING,
        "evt_failed": InboxStatus.FAILED,
        "evt_recent": InboxStatus.DISPATCHED,
    }


def test_outbox_files_go_by_modification_time_and_nothing_else_is_touched(tmp_path: Path) -> None:
    folder = tmp_path / "outbox"
    (folder / "keep-me").mkdir(parents=True)
    old_file, new_file = folder / "daily-report-2026-07-01.md", folder / "보고서-2026-11-20.md"
    for path, moment in ((old_file, OLD), (new_file, RECENT), (folder / "keep-me", OLD)):
        path.touch()
        os.utime(path, (moment.timestamp(), moment.timestamp()))
    outside = tmp_path / "elsewhere.md"
    outside.write_text("not the outbox's")
    os.utime(outside, (OLD.timestamp(), OLD.timestamp()))
    (folder / "link.md").symlink_to(outside)
    store = OutboxFiles(folder)

    assert store.count(CUTOFF) == 1  # the symlink's own time is now, and it is not followed
    assert store.prune(CUTOFF) == 1
    assert sorted(path.name for path in folder.iterdir()) == ["keep-me", "link.md", new_file.name]
    assert outside.exists()
    assert OutboxFiles(tmp_path / "never-written").count(CUTOFF) == 0


def test_a_dry_run_counts_what_the_real_run_removes(ledger: Ledger, tmp_path: Path) -> None:
    effect(ledger, "daily-report:2026-07-01:team-slack", EffectStatus.DONE, at=OLD)
    effect(ledger, "daily-report:2026-07-01:ops-email", EffectStatus.DONE, at=OLD)
    effect(ledger, "daily-report:2026-07-02:team-slack", EffectStatus.DEAD, at=OLD)
    folder = tmp_path / "outbox"
    folder.mkdir()
    (folder / "old.md").touch()
    os.utime(folder / "old.md", (OLD.timestamp(), OLD.timestamp()))
    stores = [FinishedEffects(ledger), FinishedInboxEntries(ledger), OutboxFiles(folder)]

    dry = prune_stores(stores, CUTOFF, dry_run=True)
    assert len(ledger.effects()) == 3 and (folder / "old.md").exists()
    real = prune_stores(stores, CUTOFF, dry_run=False)

    expected = [("effects", 2, 1), ("webhook_inbox", 0, 0), ("outbox_files", 1, 0)]
    assert [(r.store, r.count, r.kept) for r in dry] == expected
    assert [(r.store, r.count, r.kept) for r in real] == expected
    assert [effect.key for effect in ledger.effects()] == ["daily-report:2026-07-02:team-slack"]
    assert not (folder / "old.md").exists()


@pytest.mark.parametrize("text", ["90x", "0d", "-3d", "d", "90", "1.5d", ""])
def test_an_age_that_is_not_one_is_refused(text: str) -> None:
    with pytest.raises(InputError, match="--older-than must be a positive whole number"):
        cutoff_for(text, now=NOW)


def test_ages_in_every_unit_and_one_beyond_the_calendar() -> None:
    at = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    assert cutoff_for("90d", now=at) == at - timedelta(days=90)
    assert cutoff_for("12h", now=at) == at - timedelta(hours=12)
    assert cutoff_for("2w", now=at) == at - timedelta(weeks=2)
    assert cutoff_for("30m", now=at) == at - timedelta(minutes=30)
    with pytest.raises(InputError, match="before the year 1"):
        cutoff_for("999999999w", now=at)


def home_ledger_with_old_state(moltbot_home: Path) -> Ledger:
    """The configured ledger and outbox folder, with old and recent state in them."""
    settings = get_settings()
    ledger = Ledger.from_settings(settings)
    effect(ledger, "daily-report:2026-07-01:team-slack", EffectStatus.DONE, at=OLD)
    effect(ledger, "daily-report:2026-07-02:team-slack", EffectStatus.IN_DOUBT, at=OLD)
    effect(ledger, "daily-report:2026-11-20:team-slack", EffectStatus.DONE, at=RECENT)
    settings.outbox_dir.mkdir(parents=True)
    for name, moment in (("daily-report-2026-07-01.md", OLD), ("new.md", RECENT)):
        (settings.outbox_dir / name).write_text("# report")
        os.utime(settings.outbox_dir / name, (moment.timestamp(), moment.timestamp()))
    return ledger


def test_cli_dry_run_then_prune_in_json(moltbot_home: Path) -> None:
    with home_ledger_with_old_state(moltbot_home) as ledger:
        trail = AuditTrail(ledger)
        now = datetime.now(UTC)
        trail.record("run", "old run", actor="user:alice", at=now - timedelta(days=100))
        trail.record("run", "new run", actor="user:alice", at=now - timedelta(days=1))
        dry = runner.invoke(app, ["prune", "--older-than", "90d", "--dry-run", "--json"])
        left_after_dry_run = keys(ledger)
        real = runner.invoke(app, ["prune", "--older-than", "90d", "--json"])
        left = keys(ledger)
        audited = [(row.action, row.target) for row in trail.rows()]
        verified = trail.verify()

    assert dry.exit_code == 0, dry.output
    document = json.loads(dry.stdout)
    assert document["dry_run"] is True and document["older_than"] == "90d"
    assert document["stores"] == [
        {"store": "effects", "count": 1, "kept": 1},
        {"store": "webhook_inbox", "count": 0, "kept": 0},
        {"store": "outbox_files", "count": 1, "kept": 0},
        {"store": "audit", "count": 1, "kept": 0},
        {"store": "payment_events", "count": 0, "kept": 0},
        {"store": "escalations", "count": 0, "kept": 0},
        {"store": "shadow_inputs", "count": 0, "kept": 0},
    ]
    assert len(left_after_dry_run) == 3
    assert real.exit_code == 0, real.output
    assert json.loads(real.stdout)["stores"] == document["stores"]
    assert left == {"daily-report:2026-07-02:team-slack", "daily-report:2026-11-20:team-slack"}
    assert sorted(path.name for path in get_settings().outbox_dir.iterdir()) == ["new.md"]
    # The old audit entry went, the chain still verifies, and the prune is itself recorded.
    assert [action for action, _ in audited] == ["run", "prune"] and audited[0][1] == "new run"
    assert verified.ok and verified.checked == 2


def test_cli_table_in_english_and_korean(moltbot_home: Path) -> None:
    home_ledger_with_old_state(moltbot_home).close()

    english = runner.invoke(app, ["prune", "--older-than", "90d", "--dry-run"])
    korean = runner.invoke(app, ["--locale", "ko", "prune", "--older-than", "12w", "--dry-run"])

    assert english.exit_code == 0, english.output
    assert "ledger: finished effects" in english.stdout
    assert "would remove" in english.stdout
    assert "Dry run: nothing was removed." in english.stdout
    assert korean.exit_code == 0, korean.output
    assert "원장: 끝난 작업" in korean.stdout
    assert "삭제 예정" in korean.stdout
    assert "(12w 초과)" in korean.stdout
    with Ledger.from_settings() as ledger:
        assert len(keys(ledger)) == 3


@pytest.mark.parametrize(
    ("arguments", "reason"),
    [
        (["prune", "--older-than", "90x"], "--older-than must be a positive whole number"),
        (["prune", "--dry-run"], "give the age: --older-than 90d"),
    ],
)
def test_cli_bad_age_is_one_line_and_exit_2(arguments: list[str], reason: str) -> None:
    result = runner.invoke(app, arguments)

    assert result.exit_code == 2
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert reason in line


def test_the_default_stores_are_the_ledger_inbox_outbox_folder_audit_payments_escalations(
    moltbot_home: Path,
) -> None:
    settings = get_settings()
    with Ledger.from_settings(settings) as ledger:
        stores = retention_stores(ledger, settings)

    assert [store.name for store in stores] == [
        "effects",
        "webhook_inbox",
        "outbox_files",
        "audit",
        "payment_events",
        "escalations",
        "shadow_inputs",
    ]
    assert isinstance(stores[2], OutboxFiles) and stores[2].folder == settings.outbox_dir


def test_payment_events_go_by_when_they_happened_but_the_last_days_stay(ledger: Ledger) -> None:
    from moltbot.state.payments import PaymentRecord, PaymentStore

    now = datetime(2026, 12, 4, 9, tzinfo=UTC)
    ages = {"old": 120, "month": 30, "yesterday": 1}
    PaymentStore(ledger).record(
        [
            PaymentRecord(
                source="stripe", event_id=name, provider="stripe", attempt=name,
                outcome="failed", customer_key="c0ffee", customer_label="***@example.com #c0ffee",
                amount_minor=1000, currency="KRW", reason="card_declined",
                occurred_at=now - timedelta(days=days),
            )
            for name, days in ages.items()
        ],
        now=now,
    )  # fmt: skip
    store = OldPaymentEvents(ledger, now=now)

    # 90 days: only the 120-day-old event; 1 hour: everything but the last three days.
    assert (store.count(now - timedelta(days=90)), store.kept(now - timedelta(days=90))) == (1, 0)
    assert (store.count(now - timedelta(hours=1)), store.kept(now - timedelta(hours=1))) == (2, 1)
    assert store.prune(now - timedelta(hours=1)) == 2
    left = PaymentStore(ledger).between(now - timedelta(days=365), now)
    assert [record.event_id for record in left] == ["yesterday"]


def test_settled_escalations_go_and_open_ones_stay_however_old(ledger: Ledger) -> None:
    store = EscalationStore(ledger)
    old = datetime.now(UTC) - timedelta(days=100)
    for key in ("acked", "ended", "open"):
        store.open(key, automation="service-health", route=("slack", "sms"), payload="{}",
                   expires_at=old + timedelta(days=1), now=old)  # fmt: skip
    store.acknowledge("acked", by="link", now=old)
    store.record_step("ended", from_step=-1, step=None, link=None, outcome="dead",
                      next_at=None, now=old)  # fmt: skip
    escalations = SettledEscalations(ledger)
    cutoff = datetime.now(UTC) - timedelta(days=90)

    assert escalations.count(cutoff) == 2
    assert escalations.prune(cutoff) == 2
    assert store.get("open") is not None
    assert store.get("acked") is None and store.get("ended") is None

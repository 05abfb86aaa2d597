"""Shadow mode without Prefect: comparing effects, the recorded inputs, their retention, the
inventory snapshot's round trip, template overrides and the CLI's empty state and bad input."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from flows.inventory_alert import shadow as inventory_shadow
from flows.inventory_alert.flow import Evaluation, plan_run
from flows.inventory_alert.states import compute_states, normalize_inventory, state_counts
from moltbot.cli import app
from moltbot.registry import get_automation
from moltbot.retention import ShadowInputs
from moltbot.shadow import (
    RunShadow,
    ShadowEffect,
    ShadowReport,
    compare,
    effect,
    render_html,
    sent_effects,
    shadow,
)
from moltbot.state.item_state import empty_states
from moltbot.state.ledger import Ledger
from moltbot.state.recorded_inputs import RecordedInputs, input_digest
from moltbot.templating import render_template

NOW = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)
SEOUL = "Asia/Seoul"


@pytest.fixture
def ledger(moltbot_home: Path):
    with Ledger.from_settings() as opened:
        yield opened


def fx(key: str, text: str, kind: str = "message") -> ShadowEffect:
    return ShadowEffect(key, kind, "out", text)


# --------------------------------------------------------------------------- comparing


def test_effects_are_matched_by_key_and_classified() -> None:
    sent = [fx("a", "same text"), fx("b", "old\nline"), fx("c", "gone")]
    now = [fx("b", "new\nline"), fx("a", "same text"), fx("d", "new one")]

    diffs = compare(sent, now)

    assert [(d.key, d.change) for d in diffs] == [
        ("a", "same"),
        ("b", "changed"),
        ("c", "removed"),
        ("d", "added"),
    ]
    assert diffs[1].diff.splitlines()[-3:] == ["-old", "+new", " line"]
    assert [d.diff for d in diffs if d.change != "changed"] == ["", "", ""]


def test_what_was_sent_is_what_the_ledger_says_the_run_did() -> None:
    recorded = [
        fx("inventory-alert:low:1", "x").as_dict(),  # done on one route (its channel added)
        fx("inventory-alert:out:2", "y").as_dict(),  # claimed but failed: not sent
        fx("ticket-creation:event:e1:jira:OPS", "z", "ticket").as_dict(),
    ]
    done = {"inventory-alert:low:1:slack-ops", "ticket-creation:event:e1:jira:OPS"}

    assert [e.key for e in sent_effects(recorded, done)] == [
        "inventory-alert:low:1",
        "ticket-creation:event:e1:jira:OPS",
    ]


def test_texts_are_masked_before_they_are_kept_or_shown() -> None:
    kept = effect("k", "ticket", "jira:OPS", "reporter: kim.minji@example.com, 010-1234-5678")

    assert "kim.minji" not in kept.text and "1234-5678" not in kept.text


def test_the_html_page_escapes_every_text() -> None:
    run = RunShadow("run-1", NOW, compare([fx("k", "<b>old</b>")], [fx("k", "<script>")]))
    page = render_html(ShadowReport("inventory-alert", NOW, [run]), "en")

    assert "<script>" not in page and "&lt;script&gt;" in page and "&lt;b&gt;old" in page
    korean = render_html(ShadowReport("inventory-alert", NOW, [run]), "ko")
    assert "<td>변경</td>" in korean and "<script>" not in korean


# --------------------------------------------------------------------------- recording


def test_a_run_is_recorded_once_and_read_back_since_a_moment(ledger: Ledger) -> None:
    store = RecordedInputs(ledger)
    first = {"items": [1], "quantity": float("nan")}
    kept = store.record(
        automation="inventory-alert", flow_run_id="r1", kind="stock", payload=first,
        effects=[fx("k", "t").as_dict()], now=NOW,
    )  # fmt: skip
    retried = store.record(
        automation="inventory-alert", flow_run_id="r1", kind="stock", payload={"items": [2]},
        effects=[], now=NOW + timedelta(minutes=1),
    )  # fmt: skip
    store.record(
        automation="inventory-alert", flow_run_id="r0", kind="stock", payload={}, effects=[],
        now=NOW - timedelta(days=8),
    )  # fmt: skip

    [run] = store.runs("inventory-alert", NOW - timedelta(days=7))

    assert (kept, retried) == (True, False)
    assert (run.flow_run_id, run.recorded_at, run.payload["items"]) == ("r1", NOW, [1])
    assert run.effects == [fx("k", "t").as_dict()]
    assert store.runs("ticket-creation", NOW - timedelta(days=7)) == []


@pytest.mark.parametrize(
    "payload",
    [
        {"now": "2026-11-23T09:00:00+09:00", "items": {"columns": ["sku"], "data": [("A-1",)]}},
        {"now": "2026-11-23T09:00:00+09:00"},
        {"items": [], "재고": "부족", "quantity": None},
    ],
)
def test_the_stored_payload_reads_back_whole_and_its_digest_leaves_out_the_moment(
    ledger: Ledger, payload: dict
) -> None:
    store = RecordedInputs(ledger)
    store.record(
        automation="inventory-alert", flow_run_id="r1", kind="stock", payload=payload,
        effects=[], now=NOW,
    )  # fmt: skip

    [run] = store.runs("inventory-alert", NOW)

    assert run.payload == json.loads(json.dumps(payload))
    assert input_digest(payload) == input_digest({**payload, "now": "another moment"})


def test_a_run_with_nothing_to_send_is_kept_unless_its_input_is_the_one_kept_last(
    ledger: Ledger,
) -> None:
    store = RecordedInputs(ledger)
    kept = []
    for minute, (items, effects) in enumerate(
        [([1], [fx("k", "t").as_dict()]), ([1], []), ([2], []), ([2], []), ([1], [])]
    ):
        at = NOW + timedelta(minutes=minute)
        # The run's moment differs every time and says nothing of the input.
        payload = {"items": items, "now": at.isoformat()}
        if store.record(
            automation="inventory-alert", flow_run_id=f"r{minute}", kind="stock",
            payload=payload, effects=effects, now=at,
        ):  # fmt: skip
            kept.append(f"r{minute}")

    # r1 and r3 had no news and the input kept just before them; r4 has news of its own
    # (the stock went back to what r0 saw): the current code may send for it.
    assert kept == ["r0", "r2", "r4"]
    assert [run.flow_run_id for run in store.runs("inventory-alert", NOW)] == kept


def test_prune_removes_inputs_past_their_limit_whatever_age_it_names(ledger: Ledger) -> None:
    store = RecordedInputs(ledger)
    for name, age in (("old", 20), ("week", 7), ("new", 1)):
        store.record(
            automation="inventory-alert", flow_run_id=name, kind="stock",
            payload={"items": [age]}, effects=[], now=NOW - timedelta(days=age),
        )  # fmt: skip
    retention = ShadowInputs(ledger, now=NOW, keep_days=14)

    assert retention.count(NOW - timedelta(days=90)) == 1  # the limit wins over 90 days
    assert retention.prune(NOW - timedelta(days=5)) == 2  # a shorter age wins over the limit
    assert [r.flow_run_id for r in store.runs("inventory-alert", NOW - timedelta(days=99))] == [
        "new"
    ]


# --------------------------------------------------------------------------- inventory replay


def evaluated(csv: str) -> Evaluation:
    from io import StringIO

    raw = pd.read_csv(StringIO(csv), dtype=str, keep_default_na=False)
    inventory = normalize_inventory(raw, source_label="stock.csv")
    states = compute_states(inventory.items, today=NOW.date())
    return Evaluation(states, state_counts(states), inventory.bad_rows, None)


def replayed(ledger: Ledger, evaluation: Evaluation, previous: pd.DataFrame, at: datetime):
    """Record a snapshot as the flow does, read it back from the ledger and replay it."""
    payload = inventory_shadow.snapshot(
        evaluation.states, evaluation.bad_rows, previous, now=at, cooldown_hours=24,
        timezone=SEOUL, locale="ko", top_n=20,
    )  # fmt: skip
    store = RecordedInputs(ledger)
    store.record(automation="inventory-alert", flow_run_id=str(at), kind="stock",
                 payload=payload, effects=[], now=at)  # fmt: skip
    run = next(r for r in store.runs("inventory-alert", at) if r.flow_run_id == str(at))
    return inventory_shadow.replay(run)


def test_an_inventory_snapshot_replays_to_the_messages_the_run_rendered(ledger: Ledger) -> None:
    first = evaluated(
        "sku,name,on_hand,reorder_point,location\nA,우유,3,5,서울\nB,두부,0,4,\nC,계란,9,2,서울\n"
        "D,빵,x,1,\n"
    )
    # A run's moment has microseconds: the saved `since` times (and the keys built on them) do.
    at = NOW + timedelta(microseconds=123_456)
    plan, messages = plan_run.fn(first, empty_states(), now=at, cooldown_hours=24,
                                 timezone=SEOUL, locale="ko", top_n=20)  # fmt: skip
    # The second run compares with the states the first saved: A recovers, B is still out.
    previous = plan.writes.drop(columns="severity")
    later = at + timedelta(days=2, microseconds=1)
    second = evaluated("sku,name,on_hand,reorder_point\nA,우유,30,5\nB,두부,0,4\nC,계란,9,2\n")
    _, again = plan_run.fn(second, previous, now=later, cooldown_hours=24, timezone=SEOUL,
                           locale="ko", top_n=20)  # fmt: skip

    assert replayed(ledger, first, empty_states(), at) == inventory_shadow.effects(messages)
    assert replayed(ledger, second, previous, later) == inventory_shadow.effects(again)
    assert sorted(again) == ["recovered", "reminder"]
    assert "재고" in inventory_shadow.effects(again)[0].text


# --------------------------------------------------------------------------- templates


def test_a_templates_dir_overrides_one_template_and_keeps_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.inventory_alert.render import TEMPLATES

    folder = tmp_path / "mine" / "inventory-alert" / "en"
    folder.mkdir(parents=True)
    (folder / "title.txt.j2").write_text("Stock news: {{ total }}", encoding="utf-8")
    shipped = render_template(TEMPLATES, "en", "title.txt.j2", severity="low", total=2)
    monkeypatch.setenv("MOLTBOT_TEMPLATES_DIR", str(tmp_path / "mine"))

    assert shipped == "Low stock: 2 items\n"
    assert render_template(TEMPLATES, "en", "title.txt.j2", severity="low", total=2) == (
        "Stock news: 2"
    )
    assert render_template(TEMPLATES, "ko", "title.txt.j2", severity="low", total=2) != (
        "Stock news: 2"
    )


# --------------------------------------------------------------------------- the command


def test_an_empty_state_says_so_in_one_line_and_exits_0(moltbot_home: Path) -> None:
    english = CliRunner().invoke(app, ["shadow", "inventory-alert"])
    korean = CliRunner().invoke(
        app, ["--locale", "ko", "shadow", "ticket-creation", "--since", "2w"]
    )
    document = CliRunner().invoke(app, ["shadow", "inventory-alert", "--json"])

    assert english.exit_code == 0 and english.stdout.startswith(
        "no recorded runs of inventory-alert since "
    )
    assert korean.exit_code == 0 and "기록된 ticket-creation 실행이 없습니다" in korean.stdout
    assert document.exit_code == 0
    assert (
        json.loads(document.stdout)["runs"] == []
        and json.loads(document.stdout)["differs"] is False
    )


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["nope"], "unknown automation 'nope'"),
        (["daily-report"], "daily-report keeps no run inputs"),
        (["inventory-alert", "--since", "yesterday"], "--since must be a positive whole number"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(moltbot_home: Path, args: list[str], reason: str) -> None:
    result = CliRunner().invoke(app, ["shadow", *args, "--json"])

    assert result.exit_code == 2 and result.stdout == ""
    assert reason in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_nothing_is_written_to_the_effects_when_a_run_is_replayed(ledger: Ledger) -> None:
    RecordedInputs(ledger).record(
        automation="inventory-alert", flow_run_id="r1", kind="stock", payload={},
        effects=[fx("inventory-alert:low:1", "old").as_dict()], now=NOW,
    )  # fmt: skip
    ledger.claim("inventory-alert:low:1:slack-ops", automation="inventory-alert",
                 kind="message", target="slack-ops", flow_run_id="r1")  # fmt: skip
    ledger.complete("inventory-alert:low:1:slack-ops", via="slack-ops")
    before = ledger.effects()

    report = shadow(
        get_automation("inventory-alert"), ledger, since=NOW - timedelta(days=1),
        replay=lambda run: [fx("inventory-alert:low:1", "new")],
    )  # fmt: skip

    assert [run.counts() for run in report.runs] == [
        {"added": 0, "removed": 0, "changed": 1, "same": 0}
    ]
    assert ledger.effects() == before

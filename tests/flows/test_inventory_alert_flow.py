"""The inventory-alert flow end to end: real Prefect API, Slack emulator, SMTP sink, ledger."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from typer.testing import CliRunner

from blocks import EmailChannel, SlackIncomingWebhook
from demo.run import save_sandbox_channels
from flows.inventory_alert.flow import (
    evaluate_stock,
    inventory_alert,
    plan_run,
    resolve_routes,
)
from moltbot.blockdocs import save_block_document
from moltbot.cli import app
from moltbot.config.settings import get_settings
from moltbot.effects import perform
from moltbot.effects.runtime import runtime_from_settings
from moltbot.errors import DeliveryFailed, InputError
from moltbot.state.item_state import ItemStateStore
from moltbot.state.ledger import EffectStatus, Ledger
from tasks.effects import channel_destinations, message_intents
from tasks.item_state import read_item_states
from tasks.sources import read_table
from tests.ledger_checks import assert_only_the_failed_run_is_audited

pytestmark = pytest.mark.slow

HEADER = "sku,name,on_hand,reorder_point,lead_time_days,daily_demand,location"
ROUTES = {"out": ["slack-urgent", "sms-oncall"], "low": ["slack-ops"]}


@pytest.fixture
def stock_csv(tmp_path: Path) -> Path:
    return tmp_path / "재고.csv"


def write_stock(path: Path, *rows: str) -> Path:
    path.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def channels(prefect_api: str, sandbox) -> dict[str, str]:
    """Slack webhooks for the urgent and ops rooms and an on-call mailbox, on the sandbox."""
    save_sandbox_channels(sandbox)
    urls = {name: sandbox.slack_webhook_url(name) for name in ("urgent", "ops")}
    save_block_document(SlackIncomingWebhook(url=urls["urgent"]), "slack-urgent")
    save_block_document(SlackIncomingWebhook(url=urls["ops"]), "slack-ops")
    save_block_document(
        EmailChannel(
            smtp_host="127.0.0.1",
            smtp_port=sandbox.smtp_port,
            tls="none",
            sender="moltbot@example.com",
            recipients=["oncall@example.com"],
        ),
        "sms-oncall",
    )
    return urls


def run(source: Path, **params):
    params.setdefault("channels_by_severity", ROUTES)
    return inventory_alert(source=str(source), **params)


def posts(sandbox, room: str) -> list[str]:
    """The text of every Slack section posted to `room`, one string per post."""
    return [
        "\n".join(
            block["text"]["text"]
            for block in post.payload["blocks"]
            if block["type"] in ("header", "section")
        )
        for post in sandbox.state.slack.messages_for(sandbox.slack_webhook_url(room))
    ]


def stored() -> dict[str, tuple]:
    with Ledger.from_settings() as ledger:
        frame = ItemStateStore(ledger, "inventory-alert").read()
    return {
        row.item_key: (row.state, row.since, row.last_alerted_at)
        for row in frame.itertuples(index=False)
    }


def backdate_states(hours: float) -> None:
    """Make every stored state look `hours` older, as if that much time had passed."""
    with Ledger.from_settings() as ledger:
        store = ItemStateStore(ledger, "inventory-alert")
        frame = store.read()
        for name in ("since", "episode_since", "last_alerted_at"):
            frame[name] = frame[name] - timedelta(hours=hours)
        store.write(frame, now=datetime.now(UTC))


def ledger_effects() -> list:
    with Ledger.from_settings() as ledger:
        return ledger.effects()


def transitions(result: dict) -> list[tuple[str, str, str]]:
    return [(t["sku"], t["from"], t["to"]) for t in result["transitions"]]


def test_routing_out_goes_to_both_urgent_channels_and_low_only_to_ops(stock_csv, channels, sandbox):
    write_stock(
        stock_csv,
        "A1,무선 이어폰,3,10,7,1,서울",  # low
        "B2,Green Tea,0,5,3,2,부산",  # out
        "C3,Tumbler,50,10,3,1,",  # ok
    )

    result = run(stock_csv)

    assert result["counts"] == {"ok": 1, "low": 1, "out": 1, "at_risk": 1}
    assert sorted(transitions(result)) == [("A1", "ok", "low"), ("B2", "ok", "out")]
    assert [(d["severity"], d["channel"], d["status"]) for d in result["deliveries"]] == [
        ("out", "slack-urgent", "done"),
        ("out", "sms-oncall", "done"),
        ("low", "slack-ops", "done"),
    ]
    [urgent] = posts(sandbox, "urgent")
    assert "Out of stock: 1 item" in urgent and "B2" in urgent and "A1" not in urgent
    [ops] = posts(sandbox, "ops")
    assert "Low stock: 1 item" in ops and "무선 이어폰" in ops and "B2" not in ops
    assert posts(sandbox, "demo") == []
    [mail] = sandbox.smtp.messages
    assert mail.subject == "Out of stock: 1 item"
    [csv_part] = [p for p in mail.message.walk() if p.get_content_type() == "text/csv"]
    attached = pd.read_csv(io.BytesIO(csv_part.get_payload(decode=True)), encoding="utf-8-sig")
    assert attached["sku"].tolist() == ["B2"]
    assert attached["location"].tolist() == ["부산"]
    assert sorted(e.target for e in ledger_effects() if e.status == EffectStatus.DONE) == [
        "slack-ops",
        "slack-urgent",
        "sms-oncall",
    ]


def test_transitions_and_recovery_over_three_runs(stock_csv, channels, sandbox, moltbot_home):
    write_stock(stock_csv, "A1,무선 이어폰,3,10,7,1,서울", "B2,Green Tea,0,5,3,2,")
    first = run(stock_csv)
    write_stock(stock_csv, "A1,무선 이어폰,0,10,7,1,서울", "B2,Green Tea,40,5,3,2,")
    second = run(stock_csv)
    write_stock(stock_csv, "A1,무선 이어폰,30,10,7,1,서울", "B2,Green Tea,40,5,3,2,")
    third = run(stock_csv)

    assert sorted(transitions(first)) == [("A1", "ok", "low"), ("B2", "ok", "out")]
    assert sorted(transitions(second)) == [("A1", "low", "out"), ("B2", "out", "ok")]
    assert transitions(third) == [("A1", "out", "ok")]
    # Recoveries default to the `low` channels.
    assert {d["severity"]: d["channel"] for d in third["deliveries"]} == {"recovered": "slack-ops"}
    ops = posts(sandbox, "ops")
    assert len(ops) == 3  # low (run 1), B2 back (run 2), A1 back (run 3)
    assert "Back in stock: 1 item" in ops[1] and "back after under an hour (was out)" in ops[1]
    assert "A1" in ops[2] and "back after" in ops[2]
    urgent = posts(sandbox, "urgent")
    assert len(urgent) == 2 and "B2" in urgent[0] and "A1" in urgent[1]
    assert {key: state for key, (state, _, _) in stored().items()} == {"A1": "ok", "B2": "ok"}
    assert third["states_saved"] == 1


def test_a_second_run_with_no_change_sends_nothing(stock_csv, channels, sandbox):
    write_stock(stock_csv, "A1,무선 이어폰,3,10,7,1,서울", "B2,Green Tea,0,5,3,2,")
    run(stock_csv)
    before = stored()

    again = run(stock_csv)

    assert again["transitions"] == [] and again["transitions_total"] == 0
    assert again["reminders"] == [] and again["deliveries"] == []
    assert again["states_saved"] == 0
    assert len(sandbox.state.slack.posts) == 2
    assert len(sandbox.smtp.messages) == 1
    assert stored() == before


def test_an_item_still_out_is_reminded_once_per_cooldown(stock_csv, channels, sandbox):
    write_stock(stock_csv, "B2,Green Tea,0,5,3,2,")
    run(stock_csv, cooldown_hours=24)
    assert run(stock_csv, cooldown_hours=24)["deliveries"] == []

    backdate_states(25)
    reminded = run(stock_csv, cooldown_hours=24)
    unchanged = run(stock_csv, cooldown_hours=24)
    backdate_states(24)
    reminded_again = run(stock_csv, cooldown_hours=24)

    assert [(r["sku"], r["period"]) for r in reminded["reminders"]] == [("B2", 1)]
    assert reminded["transitions"] == []
    # Reminders default to the `out` channels.
    assert [(d["severity"], d["channel"]) for d in reminded["deliveries"]] == [
        ("reminder", "slack-urgent"),
        ("reminder", "sms-oncall"),
    ]
    assert unchanged["deliveries"] == []
    assert [(r["sku"], r["period"]) for r in reminded_again["reminders"]] == [("B2", 2)]
    urgent = posts(sandbox, "urgent")
    assert len(urgent) == 3
    assert "Still out of stock: 1 item" in urgent[1] and "out for 25 h" in urgent[1]
    assert "out for 2.0 days" in urgent[2]


def test_bad_rows_are_reported_and_keep_their_items_state(stock_csv, channels, sandbox):
    write_stock(stock_csv, "A1,무선 이어폰,3,10,7,1,서울", "B2,Green Tea,40,5,3,2,")
    run(stock_csv)
    before = stored()
    write_stock(
        stock_csv,
        "A1,무선 이어폰,-4,10,7,1,서울",  # negative: A1 stays low, not out
        "B2,Green Tea,0,5,3,2,",  # out: a real transition
        ",No SKU,1,1,1,1,",
        "D4,Mouse,lots,5,3,2,",
        "E5,Cable,9,5,3,2,",
        "E5,Cable,1,5,3,2,",
    )

    result = run(stock_csv)

    assert result["bad_rows"] == [
        {"row": 2, "sku": "A1", "problem": "negative on_hand"},
        {"row": 4, "sku": None, "problem": "missing sku"},
        {"row": 5, "sku": "D4", "problem": "non-numeric on_hand"},
        {"row": 6, "sku": "E5", "problem": "duplicate sku"},
        {"row": 7, "sku": "E5", "problem": "duplicate sku"},
    ]
    assert result["bad_rows_total"] == 5
    assert transitions(result) == [("B2", "ok", "out")]
    assert result["counts"] == {"ok": 0, "low": 0, "out": 1, "at_risk": 0}
    after = stored()
    assert after["A1"] == before["A1"]
    assert "D4" not in after and "E5" not in after
    [post] = sandbox.state.slack.messages_for(channels["urgent"])
    footer = post.payload["blocks"][-1]["elements"][0]["text"]
    assert "5 unusable rows skipped" in footer and "row 2 (A1) negative on_hand" in footer


def test_demand_is_computed_from_the_sales_table(stock_csv, tmp_path, channels, sandbox):
    yesterday = datetime.now(ZoneInfo("Asia/Seoul")).date() - timedelta(days=1)
    lines = ["order_id,ordered_at,product,channel,region,quantity,unit_price,status"]
    for offset in range(28):  # 2 tumblers a day for 28 days, and 1 cancelled line
        day = yesterday - timedelta(days=offset)
        lines.append(f"O{offset},{day}T03:00:00Z,텀블러 500ml,web,Seoul,2,24900,completed")
    lines.append(f"X1,{yesterday}T04:00:00Z,텀블러 500ml,web,Seoul,30,24900,cancelled")
    sales_csv = tmp_path / "sales.csv"
    sales_csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    stock_csv.write_text(
        "sku,name,on_hand,reorder_point,lead_time_days\n"
        "T1,텀블러 500ml,5,10,7\n"
        "N1,Never Sold,3,10,7\n",
        encoding="utf-8",
    )

    result = inventory_alert(
        source=str(stock_csv),
        sales_source=str(sales_csv),
        channels_by_severity={"low": ["slack-ops"]},
    )

    assert result["counts"] == {"ok": 0, "low": 2, "out": 0, "at_risk": 1}
    [ops] = posts(sandbox, "ops")
    stockout = yesterday + timedelta(days=3)  # today + floor(5 / 2)
    assert f"2.5 days of cover, stock-out {stockout:%a} {stockout.day} {stockout:%b %Y}" in ops
    assert "at risk: lead time 7 days" in ops
    # No sales in 28 days: demand 0, so no stock-out date for it.
    never_sold = next(line for line in ops.splitlines() if "N1" in line)
    assert "days of cover" not in never_sold


def test_retried_delivery_sends_each_message_once(stock_csv, channels, sandbox):
    write_stock(stock_csv, "A1,무선 이어폰,3,10,7,1,서울", "B2,Green Tea,0,5,3,2,")
    sandbox.state.slack.inject_fault(503, count=2)

    result = run(stock_csv)

    out = [d for d in result["deliveries"] if d["channel"] == "slack-urgent"]
    assert [(d["status"], d["attempts"]) for d in out] == [("done", 3)]
    assert len(sandbox.state.slack.posts) == 2  # urgent + ops, each once


def test_a_crash_between_delivery_and_saving_state_sends_nothing_twice(
    stock_csv, channels, sandbox
):
    write_stock(stock_csv, "A1,무선 이어폰,3,10,7,1,서울", "B2,Green Tea,0,5,3,2,")
    # The flow's own steps, stopped after delivering, as if the process died before saving.
    settings = get_settings()
    now = datetime.now(UTC)
    evaluation = evaluate_stock.fn(
        read_table(str(stock_csv)),
        None,
        stock_label=stock_csv.name,
        sales_label=None,
        columns=None,
        sales_columns=None,
        timezone=settings.timezone,
        now=now,
    )
    _, messages = plan_run.fn(
        evaluation,
        read_item_states.fn("inventory-alert"),
        now=now,
        cooldown_hours=24,
        timezone=settings.timezone,
        locale=settings.locale,
        top_n=20,
    )
    routes = resolve_routes(ROUTES)
    destinations = channel_destinations.fn([*ROUTES["out"], *ROUTES["low"]])
    with Ledger.from_settings() as ledger:
        runtime = runtime_from_settings(ledger, destinations)
        for severity, message in messages.items():
            outcomes = perform(message_intents(message, routes[severity]), runtime)
            assert {outcome.status for outcome in outcomes} == {"done"}
    assert stored() == {}
    assert len(sandbox.state.slack.posts) == 2

    rerun = run(stock_csv)
    after = run(stock_csv)

    assert sorted(transitions(rerun)) == [("A1", "ok", "low"), ("B2", "ok", "out")]
    assert {d["status"] for d in rerun["deliveries"]} == {"already_done"}
    assert rerun["states_saved"] == 2
    assert after["deliveries"] == []
    assert len(sandbox.state.slack.posts) == 2
    assert len(sandbox.smtp.messages) == 1


def test_a_failed_channel_keeps_its_items_for_the_next_run(stock_csv, channels, sandbox):
    write_stock(stock_csv, "A1,무선 이어폰,3,10,7,1,서울", "B2,Green Tea,0,5,3,2,")
    sandbox.state.slack.unregister_webhook(channels["urgent"])  # slack-urgent answers 404

    with pytest.raises(DeliveryFailed) as raised:
        run(stock_csv)

    statuses = {d["channel"]: d["status"] for d in raised.value.result["deliveries"]}
    assert statuses == {"slack-urgent": "dead", "sms-oncall": "done", "slack-ops": "done"}
    # The low alert is done and saved; the out alert is not, so B2 is still "new".
    assert set(stored()) == {"A1"}

    sandbox.state.slack.register_webhook(channels["urgent"])
    # A dead letter is not resent by the next run (it would fail again and page every 30
    # minutes): it waits in the outbox until replayed, and the run keeps saying so.
    with pytest.raises(DeliveryFailed) as again:
        run(stock_csv)
    assert {d["channel"]: d["status"] for d in again.value.result["deliveries"]} == {
        "slack-urgent": "dead",
        "sms-oncall": "already_done",
    }
    replayed = CliRunner().invoke(app, ["outbox", "replay", "--all", "--json"])
    assert replayed.exit_code == 0, replayed.output
    assert [row["status"] for row in json.loads(replayed.stdout)] == ["done"]
    retried = run(stock_csv)

    assert {d["channel"]: d["status"] for d in retried["deliveries"]} == {
        "slack-urgent": "already_done",
        "sms-oncall": "already_done",
    }
    assert stored()["B2"][0] == "out"
    assert len(sandbox.smtp.messages) == 1
    assert len(posts(sandbox, "urgent")) == 1 and len(posts(sandbox, "ops")) == 1


def test_default_routing_is_the_outbox_with_a_csv_of_every_item(
    stock_csv, prefect_api, moltbot_home
):
    write_stock(stock_csv, *(f"S{i},상품 {i},{i % 3},5,3,1,창고" for i in range(30)))

    result = inventory_alert(source=str(stock_csv), top_n=5)

    assert [(d["severity"], d["channel"]) for d in result["deliveries"]] == [
        ("out", "outbox"),
        ("low", "outbox"),
    ]
    outbox = moltbot_home / "outbox"
    [low_md] = outbox.glob("inventory-alert-low-*.md")
    assert "…and 15 more" in low_md.read_text(encoding="utf-8")
    [low_csv] = outbox.glob("inventory-alert-low-*.csv")
    listed = pd.read_csv(low_csv, encoding="utf-8-sig")
    assert len(listed) == 20 and listed["name"].iloc[0].startswith("상품 ")


def test_korean_locale_round_trips_product_names(stock_csv, channels, sandbox, monkeypatch):
    monkeypatch.setenv("MOLTBOT_LOCALE", "ko")
    write_stock(stock_csv, "B2,보조배터리 10000mAh,0,5,3,2,서울 물류센터")

    run(stock_csv)

    [post] = sandbox.state.slack.messages_for(channels["urgent"])
    assert post.payload["blocks"][0]["text"]["text"] == "품절: 1개 품목"
    assert "보조배터리 10000mAh · 서울 물류센터" in post.payload["blocks"][2]["text"]["text"]
    assert sandbox.smtp.messages[0].subject == "품절: 1개 품목"


def test_the_changes_table_artifact_lists_every_changed_item(stock_csv, channels, sandbox):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterId

    write_stock(stock_csv, "A1,무선 이어폰,3,10,7,1,서울", "B2,Green Tea,0,5,3,2,")

    result = run(stock_csv)

    assert [a["key"] for a in result["artifacts"]] == [
        "inventory-alert",
        "inventory-alert-changes",
    ]
    with get_client(sync_client=True) as client:
        [table] = client.read_artifacts(
            artifact_filter=ArtifactFilter(id=ArtifactFilterId(any_=[result["artifacts"][1]["id"]]))
        )
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    assert [(r["Alert"], r["SKU"], r["Was"], r["Now"]) for r in rows] == [
        ("out of stock", "B2", "ok", "out of stock"),
        ("low stock", "A1", "ok", "low"),
    ]
    assert (rows[1]["Item"], rows[1]["On hand"], rows[1]["Reorder point"]) == (
        "무선 이어폰",
        "3",
        "10",
    )
    assert table.description.startswith("inventory-alert 20")
    assert table.description.endswith(" · changed items (2)")


def test_dry_run_sends_nothing_and_saves_nothing(stock_csv, channels, sandbox):
    write_stock(stock_csv, "A1,무선 이어폰,3,10,7,1,서울", "B2,Green Tea,0,5,3,2,")

    result = run(stock_csv, dry_run=True)

    assert {d["status"] for d in result["deliveries"]} == {"dry_run"}
    assert [a["key"] for a in result["artifacts"]] == [None, None]
    assert sandbox.state.slack.posts == [] and sandbox.smtp.messages == []
    assert stored() == {} and ledger_effects() == []
    assert result["states_saved"] == 0


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"columns": {"Qty": "on_hand"}}, "재고.csv: column mapping names column 'Qty'"),
        ({"channels_by_severity": {"urgent": ["slack-urgent"]}}, "unknown severity 'urgent'"),
        ({"channels_by_severity": {"out": ["nowhere"]}}, "unknown channel 'nowhere'"),
        ({"cooldown_hours": 0}, "cooldown_hours must be more than 0"),
        ({"sales_source": "missing.csv"}, "missing.csv: file not found"),
    ],
    ids=["mapping", "severity", "channel", "cooldown", "sales"],
)
def test_bad_input_fails_clearly_before_any_effect(
    stock_csv, channels, sandbox, moltbot_home, params, message
):
    write_stock(stock_csv, "B2,Green Tea,0,5,3,2,")

    with pytest.raises(InputError) as raised:
        run(stock_csv, **params)

    assert message in str(raised.value)
    assert sandbox.state.slack.attempts == 0
    assert_only_the_failed_run_is_audited(moltbot_home)


def test_stock_read_from_a_sheet_in_one_request_with_sheet_row_numbers(
    channels, sandbox, sandbox_blocks
):
    sheets = sandbox.state.sheets
    spreadsheet_id = sheets.create_spreadsheet(
        "창고 재고",
        {
            "재고": [
                HEADER.split(","),
                ["A1", "우유 1L", "0", "5"],
                [],  # a blank line in the sheet keeps the numbering of the rows below
                ["B2", "두부", "-3", "5"],
                ["C3", "김치", "2", "5"],
            ]
        },
    )
    sheets.core.clear_requests()

    result = inventory_alert(
        sheets_block="sandbox-sheets",
        spreadsheet_id=spreadsheet_id,
        worksheet="재고",
        channels_by_severity=ROUTES,
    )

    assert transitions(result) == [("A1", "ok", "out"), ("C3", "ok", "low")]
    assert result["bad_rows"] == [{"row": 4, "sku": "B2", "problem": "negative on_hand"}]
    # The service account's OAuth token is fetched once per process, then one values request.
    assert [(r.method, r.path) for r in sheets.core.requests if r.path != "/token"] == [
        ("GET", f"/v4/spreadsheets/{spreadsheet_id}/values/'재고'")
    ]
    assert "우유 1L" in posts(sandbox, "urgent")[0]


def test_an_unknown_sheets_block_is_bad_input_naming_the_saved_ones(channels, sandbox_blocks):
    with pytest.raises(
        InputError, match=r"unknown .*block 'shop-sheets' \(saved: .*sandbox-sheets"
    ):
        inventory_alert(sheets_block="shop-sheets", spreadsheet_id="1AbC", worksheet="재고")


@pytest.mark.parametrize(
    ("mapping", "expected"),
    [
        (None, {s: ["outbox"] for s in ("out", "low", "recovered", "reminder")}),
        (
            ROUTES,
            {
                "out": ["slack-urgent", "sms-oncall"],
                "low": ["slack-ops"],
                "recovered": ["slack-ops"],
                "reminder": ["slack-urgent", "sms-oncall"],
            },
        ),
        (
            {"low": ["ops"], "recovered": [], "reminder": ["pager"]},
            {"out": ["ops"], "low": ["ops"], "recovered": [], "reminder": ["pager"]},
        ),
    ],
    ids=["default", "issue-example", "partial"],
)
def test_routes_per_severity(mapping, expected):
    routes = resolve_routes(mapping)
    assert {severity: [r.name for r in chosen] for severity, chosen in routes.items()} == expected
    assert all(len(r.links) == 1 for chosen in routes.values() for r in chosen)


def test_a_severity_may_route_through_a_fallback_chain():
    routes = resolve_routes({"out": [["slack-urgent", "ops-email", "sms-oncall"]], "low": ["ops"]})

    assert routes["out"][0].links == ("slack-urgent", "ops-email", "sms-oncall")
    assert routes["reminder"] == routes["out"]
    assert routes["out"][0].policy == "at_least_once"


def test_routes_come_from_moltbot_toml_when_not_given(tmp_path):
    (tmp_path / "moltbot.toml").write_text(
        '[routes.inventory-alert]\nout = ["team-slack", "ops-email"]\n'
        'low = { channels = ["team-slack"], policy = "at_most_once" }\n',
        encoding="utf-8",
    )

    routes = resolve_routes(None)

    assert routes["out"][0].links == ("team-slack", "ops-email")
    assert (routes["low"][0].links, routes["low"][0].policy) == (("team-slack",), "at_most_once")
    assert routes["recovered"][0].links == ("outbox",)


def test_a_bad_routes_table_names_its_line(tmp_path):
    (tmp_path / "moltbot.toml").write_text(
        "# routes\n[routes.inventory-alert]\nout = []\n", encoding="utf-8"
    )

    with pytest.raises(InputError, match=r"moltbot.toml line 3: a route is a non-empty list"):
        resolve_routes(None)


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"recovered": ["ops"]}, "needs channels for 'out' or 'low'"),
        ({"out": "pager"}, r"channels_by_severity\['out'\] must be a list of channel names"),
        ({"low": ["ops", "ops"]}, "a channel is listed twice"),
    ],
)
def test_unusable_routes_are_input_errors(mapping, message):
    with pytest.raises(InputError, match=message):
        resolve_routes(mapping)


def test_cli_dry_run_json_prints_the_result(stock_csv, prefect_api):
    write_stock(stock_csv, "A1,무선 이어폰,3,10,7,1,서울", "B2,Green Tea,0,5,3,2,")

    result = CliRunner().invoke(
        app, ["run", "inventory-alert", "--param", f"source={stock_csv}", "--dry-run", "--json"]
    )

    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["counts"] == {"ok": 0, "low": 1, "out": 1, "at_risk": 1}
    assert sorted(transitions(document)) == [("A1", "ok", "low"), ("B2", "ok", "out")]
    assert {d["status"] for d in document["deliveries"]} == {"dry_run"}


def test_cli_bad_input_exits_2_with_one_line(stock_csv, prefect_api):
    stock_csv.write_text("sku,name,on_hand\nA,a,1\n", encoding="utf-8")

    result = CliRunner().invoke(app, ["run", "inventory-alert", "--param", f"source={stock_csv}"])

    assert result.exit_code == 2
    assert "재고.csv: missing column 'reorder_point'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1

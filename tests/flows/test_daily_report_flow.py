"""The daily-report flow end to end: real Prefect API, Slack emulator, SMTP sink, ledger."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from demo.run import DEMO_WEBHOOK_NAME, save_sandbox_channels
from flows.daily_report.flow import daily_report
from moltbot.config.settings import get_settings
from moltbot.errors import DeliveryFailed, InputError
from moltbot.state.ledger import EffectStatus, Ledger

pytestmark = pytest.mark.slow

ORDERS_CSV = """\
order_id,ordered_at,product,channel,region,quantity,unit_price,status
A1,2026-11-23 01:00:00,무선 이어폰,web,Seoul,2,"10,000",completed
A2,2026-11-23 15:30:00,Green Tea,app,Busan,1,5000,completed
A3,2026-11-23 03:00:00,Green Tea,app,Busan,3,5000,completed
A3,2026-11-23 03:00:00,Tumbler,app,Busan,1,12000,completed
A4,2026-11-23 05:00:00,Tumbler,store,Seoul,1,12000,cancelled
A5,2026-11-22 02:00:00,무선 이어폰,web,Seoul,1,10000,completed
A6,2026-11-16 02:00:00,Green Tea,web,Seoul,4,5000,refunded
"""

# Hand computation for 2026-11-23 in Asia/Seoul (UTC+9):
# A2 at 15:30Z is 00:30 on the 24th, so it belongs to the next day; A4 is cancelled.
# revenue = 2*10,000 + 3*5,000 + 1*12,000 = 47,000; orders A1, A3 = 2; units 2+3+1 = 6;
# aov 23,500; previous day (22nd) 10,000 -> +370 %; the 16th only has a refund -> base 0 -> None.
EXPECTED_KPIS = {
    "revenue": 47000.0,
    "orders": 2,
    "units": 6,
    "aov": 23500.0,
    "top_products": [
        {"product": "무선 이어폰", "revenue": 20000.0, "units": 2},
        {"product": "Green Tea", "revenue": 15000.0, "units": 3},
        {"product": "Tumbler", "revenue": 12000.0, "units": 1},
    ],
    "by_channel": {"app": 27000.0, "web": 20000.0},
    "by_region": {"Busan": 27000.0, "Seoul": 20000.0},
    "change_vs_prev_day_pct": 370.0,
    "change_vs_prev_week_pct": None,
    "cancelled": {"count": 1, "amount": 12000.0},
    "anomaly": False,
}


@pytest.fixture
def orders_csv(tmp_path: Path) -> Path:
    path = tmp_path / "주문.csv"
    path.write_text(ORDERS_CSV, encoding="utf-8")
    return path


@pytest.fixture
def channels(prefect_api: str, sandbox) -> list[str]:
    """The demo's channel blocks (Slack emulator, SMTP sink, outbox), saved for this sandbox."""
    return save_sandbox_channels(sandbox)


def ledger_effects() -> list:
    settings = get_settings()
    with Ledger(settings.resolved_ledger_url) as ledger:
        return ledger.effects()


def test_report_reaches_slack_email_and_outbox(orders_csv, channels, sandbox, moltbot_home):
    result = daily_report(source=str(orders_csv), report_date=date(2026, 11, 23), channels=channels)

    assert result["report_date"] == "2026-11-23"
    assert result["timezone"] == "Asia/Seoul"
    assert {key: result["kpis"][key] for key in EXPECTED_KPIS} == EXPECTED_KPIS
    assert [(d["channel"], d["status"]) for d in result["deliveries"]] == [
        ("demo-slack", "done"),
        ("demo-email", "done"),
        ("outbox", "done"),
    ]
    assert [artifact["key"] for artifact in result["artifacts"]] == [
        "daily-report",
        "daily-report-top-products",
    ]

    [post] = sandbox.state.slack.posts
    assert post.payload["blocks"][0]["text"]["text"] == "Daily report Mon 23 Nov 2026"
    summary = post.payload["blocks"][1]["text"]["text"]
    assert "₩47,000" in summary and "+370.0% vs previous day" in summary
    assert "무선 이어폰" in post.payload["blocks"][2]["text"]["text"]

    [mail] = sandbox.smtp.messages
    assert mail.subject == "Daily report Mon 23 Nov 2026"
    html = mail.message.get_body(preferencelist=("html",)).get_content()
    assert "₩47,000" in html and 'src="cid:revenue-chart"' in html
    [chart] = [part for part in mail.message.walk() if part.get_content_type() == "image/png"]
    assert chart.get_content().startswith(b"\x89PNG")

    outbox = moltbot_home / "outbox"
    assert "| Revenue | ₩47,000 |" in (outbox / "daily-report-2026-11-23.md").read_text()
    assert (outbox / "daily-report-2026-11-23-revenue.png").read_bytes().startswith(b"\x89PNG")
    assert sorted((e.target, e.status) for e in ledger_effects()) == [
        ("demo-email", EffectStatus.DONE),
        ("demo-slack", EffectStatus.DONE),
        ("outbox", EffectStatus.DONE),
    ]


def test_second_run_sends_nothing_and_force_sends_again(orders_csv, channels, sandbox):
    run = lambda **extra: daily_report(  # noqa: E731
        source=str(orders_csv), report_date=date(2026, 11, 23), channels=channels, **extra
    )
    run()
    second = run()
    assert {d["status"] for d in second["deliveries"]} == {"already_done"}
    assert len(sandbox.state.slack.posts) == 1
    assert len(sandbox.smtp.messages) == 1

    forced = run(force=True)

    assert {d["status"] for d in forced["deliveries"]} == {"done"}
    assert len(sandbox.state.slack.posts) == 2
    assert len(sandbox.smtp.messages) == 2


def test_korean_locale_renders_korean_messages(orders_csv, channels, sandbox, monkeypatch):
    monkeypatch.setenv("MOLTBOT_LOCALE", "ko")

    daily_report(source=str(orders_csv), report_date=date(2026, 11, 23), channels=channels)

    [post] = sandbox.state.slack.posts
    assert post.payload["blocks"][0]["text"]["text"] == "일일 리포트 2026년 11월 23일 (월)"
    assert "47,000원" in post.payload["blocks"][1]["text"]["text"]
    assert sandbox.smtp.messages[0].subject == "일일 리포트 2026년 11월 23일 (월)"


def test_slack_429_with_retry_after_then_success_gives_exactly_one_message(
    orders_csv, channels, sandbox
):
    sandbox.state.slack.inject_fault(429, count=1, retry_after=1)

    result = daily_report(source=str(orders_csv), report_date=date(2026, 11, 23), channels=channels)

    slack = next(d for d in result["deliveries"] if d["channel"] == "demo-slack")
    assert (slack["status"], slack["attempts"]) == ("done", 2)
    assert len(sandbox.state.slack.posts) == 1
    assert sandbox.state.slack.attempts == 2


def test_slack_400_fails_the_run_at_once_with_slacks_message(orders_csv, channels, sandbox):
    sandbox.state.slack.inject_fault(400, count=3, body="invalid_payload")

    with pytest.raises(DeliveryFailed) as raised:
        daily_report(source=str(orders_csv), report_date=date(2026, 11, 23), channels=channels)

    assert "demo-slack: Slack answered 400 invalid_payload" in str(raised.value)
    assert sandbox.state.slack.attempts == 1
    # The other channels are not held hostage by one refusal.
    statuses = {d["channel"]: d["status"] for d in raised.value.result["deliveries"]}
    assert statuses == {"demo-slack": "dead", "demo-email": "done", "outbox": "done"}


def test_empty_day_says_there_were_no_orders(orders_csv, channels, sandbox):
    result = daily_report(source=str(orders_csv), report_date=date(2026, 11, 20), channels=channels)

    assert result["kpis"]["no_orders"] is True
    assert result["kpis"]["revenue"] == 0
    assert "*No orders*" in sandbox.state.slack.posts[0].payload["blocks"][1]["text"]["text"]


def test_a_report_date_without_data_is_reported_with_a_warning(orders_csv, channels):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    state = daily_report(
        source=str(orders_csv),
        report_date=date(2026, 11, 20),
        channels=["outbox"],
        return_state=True,
    )
    result = state.result()

    warning = "no orders on 2026-11-20 in 주문.csv (latest order: 2026-11-16)"
    assert result["warnings"] == [warning]
    assert [d["status"] for d in result["deliveries"]] == ["done"]  # a zero day is still reported
    report, top = (read_artifact(a["id"]) for a in result["artifacts"])
    assert f"> ⚠ **Warning:** {warning}" in report.data
    assert (
        report.description
        == f"daily-report 2026-11-20 · Daily report Fri 20 Nov 2026 · ⚠ {warning}"
    )
    assert top.description.startswith("daily-report 2026-11-20 · top products")
    # The run's logs reach the API before they are read.
    APILogHandler().flush()
    with get_client(sync_client=True) as client:
        logs = client.read_logs(
            LogFilter(flow_run_id=LogFilterFlowRunId(any_=[state.state_details.flow_run_id]))
        )
    assert [log.message for log in logs if log.level == 30] == [f"Report 2026-11-20: {warning}"]


def read_artifact(artifact_id: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterId

    with get_client(sync_client=True) as client:
        [artifact] = client.read_artifacts(
            artifact_filter=ArtifactFilter(id=ArtifactFilterId(any_=[artifact_id]))
        )
    return artifact


def table_rows(artifact) -> list[dict]:
    import json

    return json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data


def read_run(flow_run_id):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id)


def test_the_run_and_its_artifacts_read_well_in_the_ui(orders_csv, channels):
    state = daily_report(
        source=str(orders_csv),
        report_date=date(2026, 11, 23),
        channels=["outbox"],
        return_state=True,
    )
    result = state.result()

    run = read_run(state.state_details.flow_run_id)
    assert run.name == "daily-report 2026-11-23"
    assert "daily-report" in run.tags
    report, top = (read_artifact(a["id"]) for a in result["artifacts"])
    assert report.description == "daily-report 2026-11-23 · Daily report Mon 23 Nov 2026"
    assert "![Revenue, last 28 days](data:image/png;base64,iVBOR" in report.data
    first = {"#": "1", "Product": "무선 이어폰", "Revenue": "₩20,000", "Units": "2"}
    assert table_rows(top)[0] == first


def test_korean_tables_have_korean_headings(orders_csv, channels, monkeypatch):
    monkeypatch.setenv("MOLTBOT_LOCALE", "ko")

    result = daily_report(
        source=str(orders_csv), report_date=date(2026, 11, 23), channels=["outbox"]
    )

    top = read_artifact(result["artifacts"][1]["id"])
    assert table_rows(top)[1] == {"순위": "2", "상품": "Green Tea", "매출": "15,000원", "수량": "3"}
    assert top.description == "daily-report 2026-11-23 · 인기 상품"


def test_dry_run_delivers_nothing_and_records_nothing(orders_csv, channels, sandbox):
    result = daily_report(
        source=str(orders_csv), report_date=date(2026, 11, 23), channels=channels, dry_run=True
    )

    assert {d["status"] for d in result["deliveries"]} == {"dry_run"}
    assert [artifact["key"] for artifact in result["artifacts"]] == [None, None]
    descriptions = [read_artifact(artifact["id"]).description for artifact in result["artifacts"]]
    assert all(text.startswith("DRY RUN — daily-report 2026-11-23 · ") for text in descriptions)
    assert sandbox.state.slack.posts == []
    assert sandbox.smtp.messages == []
    assert ledger_effects() == []


@pytest.mark.parametrize(
    ("csv_text", "expected"),
    [
        (ORDERS_CSV.replace(",unit_price,", ",price,"), "주문.csv: missing column 'unit_price'"),
        (
            ORDERS_CSV.replace(
                "A3,2026-11-23 03:00:00,Tumbler,app,Busan,1,",
                "A3,2026-11-23 03:00:00,Tumbler,app,Busan,one,",
            ),
            "quantity",
        ),
        ("\x89PNG\x00\x01binary", "주문.csv"),
    ],
    ids=["missing-column", "non-numeric-quantity", "unreadable"],
)
def test_bad_input_fails_clearly_with_nothing_delivered(
    orders_csv, channels, sandbox, csv_text, expected
):
    orders_csv.write_text(csv_text, encoding="utf-8")

    with pytest.raises(InputError) as raised:
        daily_report(source=str(orders_csv), report_date=date(2026, 11, 23), channels=channels)

    assert expected in str(raised.value)
    assert sandbox.state.slack.attempts == 0
    assert sandbox.smtp.messages == []
    assert ledger_effects() == []


def test_missing_file_and_unknown_channel_fail_before_anything(tmp_path, channels, sandbox):
    with pytest.raises(InputError, match=r"nope\.csv: file not found"):
        daily_report(source=str(tmp_path / "nope.csv"), channels=channels)
    with pytest.raises(InputError, match=r"unknown channel 'no-such-channel' \(choose from: "):
        daily_report(source=str(tmp_path / "nope.csv"), channels=["no-such-channel"])
    assert sandbox.state.slack.attempts == 0
    assert ledger_effects() == []


def test_database_source_with_query(tmp_path, channels, sandbox):
    import pandas as pd
    import sqlalchemy

    url = f"sqlite:///{tmp_path / 'shop.db'}"
    frame = pd.read_csv(pd.io.common.StringIO(ORDERS_CSV), dtype=str)
    with sqlalchemy.create_engine(url).begin() as connection:
        frame.to_sql("sales", connection, index=False)

    result = daily_report(
        source=url,
        query="SELECT * FROM sales",
        report_date=date(2026, 11, 23),
        channels=["outbox"],
        dry_run=True,
    )

    assert result["kpis"]["revenue"] == 47000.0

    from prefect.blocks.system import Secret

    Secret(value=url).save("shop-db-url", overwrite=True)
    from_secret = daily_report(
        source="secret:shop-db-url",
        query="SELECT * FROM sales",
        report_date=date(2026, 11, 23),
        dry_run=True,
    )
    assert from_secret["kpis"] == result["kpis"]


def test_database_url_with_a_password_is_refused_before_anything(channels, sandbox):
    with pytest.raises(
        InputError, match=r"postgresql://shop:\*\*\*@db/sales: the URL holds a password"
    ):
        daily_report(
            source="postgresql://shop:hunter2@db/sales", query="SELECT 1", channels=channels
        )
    with pytest.raises(InputError, match="no Secret block named 'missing-secret'"):
        daily_report(source="secret:missing-secret", query="SELECT 1", channels=channels)
    assert sandbox.state.slack.attempts == 0
    assert ledger_effects() == []


def test_webhook_secret_never_reaches_a_log(orders_csv, channels, sandbox, moltbot_home):
    import io
    import logging

    from moltbot.masking import add_masking_filter

    token = sandbox.slack_webhook_url(DEMO_WEBHOOK_NAME).rsplit("/", 1)[-1]
    stream = io.StringIO()
    handler = add_masking_filter(logging.StreamHandler(stream))
    httpx_logger = logging.getLogger("httpx")
    previous_level = httpx_logger.level
    httpx_logger.setLevel(logging.DEBUG)
    logging.getLogger().addHandler(handler)
    try:
        daily_report(source=str(orders_csv), report_date=date(2026, 11, 23), channels=channels)
    finally:
        logging.getLogger().removeHandler(handler)
        httpx_logger.setLevel(previous_level)

    logged = stream.getvalue()
    # httpx logs every request URL at INFO: the webhook's line is there, masked whole (the URL
    # is a registered secret of the block), and its token is nowhere.
    assert 'HTTP Request: POST *** "HTTP/1.1 200 OK"' in logged
    assert token not in logged
    assert token not in str([(e.key, e.error) for e in ledger_effects()])


def test_ledger_on_postgresql_keeps_the_report_once(
    orders_csv, channels, sandbox, monkeypatch, postgres_database_url
):
    monkeypatch.setenv("MOLTBOT_LEDGER_URL", postgres_database_url)
    run = lambda: daily_report(  # noqa: E731
        source=str(orders_csv), report_date=date(2026, 11, 23), channels=channels
    )

    first, second = run(), run()

    assert {d["status"] for d in first["deliveries"]} == {"done"}
    assert {d["status"] for d in second["deliveries"]} == {"already_done"}
    assert len(sandbox.state.slack.posts) == 1
    with Ledger(postgres_database_url) as ledger:
        assert sorted(e.key for e in ledger.effects(status=EffectStatus.DONE)) == [
            "daily-report:2026-11-23:demo-email",
            "daily-report:2026-11-23:demo-slack",
            "daily-report:2026-11-23:outbox",
        ]

"""Rendering of the daily report: wording per locale, escaping of user data, attachments."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from flows.daily_report.render import build_artifact_markdown, build_report_message, report_key
from tasks.artifacts import data_uri

PNG = b"\x89PNG\r\n\x1a\nchart"


def kpis(**overrides: Any) -> dict[str, Any]:
    figures: dict[str, Any] = {
        "revenue": 1234500.0,
        "orders": 10,
        "units": 12,
        "aov": 123450.0,
        "top_products": [{"product": "<b>Tea & Co</b> | 차", "revenue": 1234500.0, "units": 12}],
        "by_channel": {"web|app": 1234500.0},
        "by_region": {"Seoul": 1234500.0},
        "change_vs_prev_day_pct": 12.345,
        "change_vs_prev_week_pct": None,
        "cancelled": {"count": 1, "amount": 5000.0},
        "anomaly": False,
        "anomaly_detail": {"history_days": 3, "mean": None, "std": None, "z_score": None},
        "no_orders": False,
    }
    figures.update(overrides)
    return figures


def render(locale: str = "en", **overrides: Any):
    return build_report_message(
        kpis(**overrides),
        report_date=date(2026, 11, 23),
        timezone="Asia/Seoul",
        currency="KRW",
        locale=locale,
        chart_png=PNG,
    )


def test_key_title_and_chart_attachment() -> None:
    message = render()

    assert message.key == report_key(date(2026, 11, 23)) == "daily-report:2026-11-23"
    assert message.title == "Daily report Mon 23 Nov 2026"
    [chart] = message.attachments
    assert (chart.filename, chart.inline_id, chart.data) == (
        "daily-report-2026-11-23-revenue.png",
        "revenue-chart",
        PNG,
    )


def test_user_data_is_escaped_for_each_format() -> None:
    message = render()

    assert "&lt;b&gt;Tea &amp; Co&lt;/b&gt; | 차" in message.html
    assert "<b>Tea" not in message.html
    assert "&lt;b&gt;Tea &amp; Co&lt;/b&gt; | 차" in message.slack_blocks[2]["text"]["text"]
    assert "| 1 | <b>Tea & Co</b> \\| 차 | ₩1,234,500 | 12 |" in message.markdown
    assert "| web\\|app | ₩1,234,500 |" in message.markdown


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        ("en", ["₩1,234,500", "+12.3% vs previous day", "n/a vs last week"]),
        ("ko", ["1,234,500원", "전일 대비 +12.3%", "전주 대비 해당 없음", "10건"]),
    ],
)
def test_summary_wording_per_locale(locale: str, expected: list[str]) -> None:
    summary = render(locale).slack_blocks[1]["text"]["text"]

    for fragment in expected:
        assert fragment in summary


def test_no_orders_day_says_so_and_has_no_top_products_block() -> None:
    message = render(
        revenue=0.0,
        orders=0,
        units=0,
        aov=None,
        top_products=[],
        by_channel={},
        by_region={},
        cancelled={"count": 0, "amount": 0.0},
        no_orders=True,
    )

    assert "*No orders* on Mon 23 Nov 2026 (Asia/Seoul)." in message.slack_blocks[1]["text"]["text"]
    assert [block["type"] for block in message.slack_blocks] == ["header", "section", "context"]
    assert "**No orders** on this day." in message.markdown
    assert "Top products" not in message.markdown


def test_anomaly_is_flagged_in_title_and_severity() -> None:
    detail = {"history_days": 28, "mean": 500000.0, "std": 10000.0, "z_score": 73.45}

    message = render(anomaly=True, anomaly_detail=detail)

    assert message.severity == "warning"
    assert message.title.endswith("⚠ unusual revenue")
    assert "73.5 standard deviations" in message.slack_blocks[1]["text"]["text"]


def artifact(locale: str = "en", warnings: list[str] | None = None, **overrides: Any) -> str:
    return build_artifact_markdown(
        kpis(**overrides),
        report_date=date(2026, 11, 23),
        timezone="Asia/Seoul",
        currency="KRW",
        locale=locale,
        chart_png=PNG,
        warnings=warnings,
    )


def test_the_artifact_embeds_the_chart_and_the_outbox_names_its_file() -> None:
    markdown = artifact()

    assert f"![Revenue, last 28 days]({data_uri(PNG, 'image/png')})" in markdown
    assert "-revenue.png" not in markdown
    # The outbox and e-mail keep their own image handling.
    assert "](daily-report-2026-11-23-revenue.png)" in (render().markdown or "")
    # Apart from the chart, the artifact is the outbox's report.
    outbox = (render().markdown or "").replace(
        "daily-report-2026-11-23-revenue.png", data_uri(PNG, "image/png")
    )
    assert markdown == outbox


@pytest.mark.parametrize(("locale", "label"), [("en", "Warning"), ("ko", "경고")], ids=["en", "ko"])
def test_warnings_stand_under_the_artifact_title(locale: str, label: str) -> None:
    markdown = artifact(locale, warnings=["no orders on 2026-11-23 in orders.csv"])

    title, blank, warning, *_ = markdown.splitlines()
    assert title.startswith("# ")
    assert blank == ""
    assert warning == f"> ⚠ **{label}:** no orders on 2026-11-23 in orders.csv  "

"""Tests of inventory-alert's messages: one per severity, top N, CSV attachment, en and ko."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from flows.inventory_alert.render import build_alert_message
from flows.inventory_alert.states import compute_states, plan_alerts, state_counts

NOW = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)


def low_items(count: int, name: str = "텀블러 500ml") -> pd.DataFrame:
    """`count` new items that are all low, with distinct cover, as `plan_alerts` returns them."""
    items = pd.DataFrame(
        {
            "sku": [f"SKU-{i:03d}" for i in range(count)],
            "name": [f"{name} {i}" for i in range(count)],
            "location": "서울",
            "on_hand": [float(i + 1) for i in range(count)],
            "reorder_point": 1000.0,
            "safety_stock": float("nan"),
            "lead_time_days": 3.0,
            "daily_demand": 2.0,
        }
    ).astype({"sku": "str", "name": "str", "location": "str"})
    states = compute_states(items, today=NOW.date())
    plan = plan_alerts(states, None, now=NOW, cooldown=timedelta(hours=24))
    return plan.alerts["low"], state_counts(states)


def message(count: int, *, top_n: int = 3, locale: str = "en", bad_rows=(), name="텀블러 500ml"):
    items, counts = low_items(count, name)
    return build_alert_message(
        "low",
        items,
        counts=counts,
        bad_rows=list(bad_rows),
        bad_rows_total=len(bad_rows),
        now=NOW,
        timezone="Asia/Seoul",
        locale=locale,
        top_n=top_n,
    )


def test_one_message_lists_the_most_urgent_items_and_counts_the_rest() -> None:
    sent = message(5, top_n=2)

    assert sent.key.startswith("inventory-alert:low:")
    assert sent.severity == "warning"
    assert sent.title == "Low stock: 5 items"
    slack_text = "\n".join(
        block["text"]["text"] for block in sent.slack_blocks if block["type"] == "section"
    )
    # Least cover first: SKU-000 has 1 unit at 2 a day.
    assert slack_text.index("SKU-000") < slack_text.index("SKU-001")
    assert "SKU-002" not in slack_text
    assert "…and 3 more" in slack_text
    assert "0.5 days of cover, stock-out Tue 24 Nov 2026" in slack_text
    assert "Now 0 out · 5 low · 5 at risk · 0 ok" in slack_text
    assert "| SKU-001 | 텀블러 500ml 1 | 서울 | 2 | 1,000 | 1.0 | Wed 25 Nov 2026 | yes |" in (
        sent.markdown
    )


def test_the_csv_attachment_holds_every_item_and_korean_round_trips() -> None:
    sent = message(5, top_n=2)

    [attachment] = sent.attachments
    assert attachment.content_type == "text/csv"
    assert attachment.filename == f"{sent.file_stem}.csv"
    assert attachment.filename.startswith("inventory-alert-low-2026-11-24-")
    frame = pd.read_csv(io.BytesIO(attachment.data), encoding="utf-8-sig", dtype=str)
    assert frame["sku"].tolist() == [f"SKU-{i:03d}" for i in range(5)]
    assert frame["name"].iloc[0] == "텀블러 500ml 0"
    assert frame[["from", "to", "on_hand", "stockout_date"]].iloc[0].tolist() == [
        "ok",
        "low",
        "1",
        "2026-11-24",
    ]


def test_korean_locale() -> None:
    sent = message(2, locale="ko", bad_rows=[{"row": 3, "sku": None, "problem": "missing sku"}])

    assert sent.title == "재고 부족: 2개 품목"
    summary = sent.slack_blocks[1]["text"]["text"]
    assert "2개 품목이 재주문 기준 이하로 떨어졌습니다" in summary
    assert "2026년 11월 24일 (화)" in summary
    footer = sent.slack_blocks[-1]["elements"][0]["text"]
    assert "사용할 수 없는 행 1개를 건너뛰었습니다" in footer and "3행 누락: sku" in footer
    assert "재고 1개 (재주문 기준 1,000개)" in sent.html


def test_bad_rows_go_in_the_footer_of_every_channel() -> None:
    bad = [{"row": 4, "sku": "A<1>", "problem": "negative on_hand"}] * 7

    sent = message(1, bad_rows=bad)

    footer = sent.slack_blocks[-1]["elements"][0]["text"]
    assert footer.startswith(":warning: 7 unusable rows skipped")
    assert "row 4 (A&lt;1&gt;) negative on_hand" in footer  # Slack control characters escaped
    assert "; and 2 more" in footer
    assert "7 unusable rows skipped" in sent.markdown
    assert "row 4 (A&lt;1&gt;) negative on_hand" in sent.html


def test_names_are_escaped_in_html_and_slack() -> None:
    sent = message(1, name="<b>Cable & Co</b>")

    assert "&lt;b&gt;Cable &amp; Co&lt;/b&gt;" in sent.html
    assert "<b>Cable" not in sent.html
    assert "&lt;b&gt;Cable &amp; Co&lt;/b&gt;" in sent.slack_blocks[2]["text"]["text"]


@pytest.mark.parametrize("top_n", [0, 60])
def test_slack_sections_stay_within_slacks_limits(top_n: int) -> None:
    sent = message(80, top_n=top_n, name="아주 긴 상품명 " * 12)

    sections = [block for block in sent.slack_blocks if block["type"] == "section"]
    assert all(len(block["text"]["text"]) <= 3000 for block in sections)
    assert len(sent.slack_blocks) <= 50
    listed = sum(block["text"]["text"].count("• *SKU-") for block in sections)
    assert listed == top_n

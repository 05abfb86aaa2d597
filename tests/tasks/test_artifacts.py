"""Table artifacts as analysts read them, and images embedded in artifacts (no Prefect API)."""

from __future__ import annotations

import base64
from datetime import UTC, date, datetime

import numpy as np
import pytest

from tasks.artifacts import (
    TableColumn,
    data_uri,
    format_cell,
    masked_markdown,
    readable_rows,
)

COLUMNS = (
    TableColumn("product", "Product", "상품"),
    TableColumn("revenue", "Revenue", "매출", kind="money"),
    TableColumn("units", "Units", "수량", kind="number"),
    TableColumn("change", "vs previous day", "전일 대비", kind="pct"),
)
ROWS = [
    {"product": "무선 이어폰", "revenue": 1424000.0, "units": 1200, "change": 12.345},
    {"product": "Green Tea", "revenue": 5000, "units": 2.5, "change": None},
]


def test_english_headings_and_formatted_values():
    assert readable_rows(ROWS, COLUMNS, locale="en", currency="KRW") == [
        {
            "Product": "무선 이어폰",
            "Revenue": "₩1,424,000",
            "Units": "1,200",
            "vs previous day": "+12.3%",
        },
        {"Product": "Green Tea", "Revenue": "₩5,000", "Units": "2.5", "vs previous day": ""},
    ]


def test_korean_headings_and_won():
    [first, _] = readable_rows(ROWS, COLUMNS, locale="ko", currency="KRW")
    assert first == {
        "상품": "무선 이어폰",
        "매출": "1,424,000원",
        "수량": "1,200",
        "전일 대비": "+12.3%",
    }


def test_usd_keeps_cents_and_columns_keep_their_order():
    [row, _] = readable_rows(ROWS, COLUMNS, locale="en", currency="USD")
    assert row["Revenue"] == "$1,424,000.00"
    assert list(row) == ["Product", "Revenue", "Units", "vs previous day"]


def test_fields_not_in_the_columns_are_left_out_and_missing_ones_are_empty():
    rows = readable_rows(
        [{"product": "Tea", "secret": "x"}], COLUMNS[:2], locale="en", currency="KRW"
    )
    assert rows == [{"Product": "Tea", "Revenue": ""}]


STATE = TableColumn("to", "Now", "현재 상태", values={"out": ("out of stock", "품절")})


@pytest.mark.parametrize(
    ("value", "column", "locale", "expected"),
    [
        ("out", STATE, "en", "out of stock"),
        ("out", STATE, "ko", "품절"),
        ("ok", STATE, "ko", "ok"),
        (True, TableColumn("a", "At risk", "위험", kind="flag"), "en", "yes"),
        (False, TableColumn("a", "At risk", "위험", kind="flag"), "ko", "아니요"),
        (date(2026, 12, 3), TableColumn("d", "Date", "날짜", kind="date"), "en", "2026-12-03"),
        ("2026-12-03", TableColumn("d", "Date", "날짜", kind="date"), "en", "2026-12-03"),
        (3.456, TableColumn("c", "Cover", "일수", kind="number", decimals=1), "en", "3.5"),
        (4.0, TableColumn("c", "Cover", "일수", kind="number", decimals=1), "en", "4"),
        (np.int64(1424000), TableColumn("n", "On hand", "재고", kind="number"), "en", "1,424,000"),
        (float("nan"), TableColumn("n", "On hand", "재고", kind="number"), "en", ""),
        (-1500, TableColumn("m", "Amount", "금액", kind="money"), "ko", "-1,500원"),
        ("n/a", TableColumn("m", "Amount", "금액", kind="money"), "en", "n/a"),
    ],
)
def test_format_cell(value, column, locale, expected):
    assert format_cell(value, column, locale, "KRW") == expected


def test_datetimes_show_in_the_given_timezone():
    column = TableColumn("at", "At", "시각", kind="datetime")
    moment = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    assert format_cell(moment, column, "en", "KRW", "Asia/Seoul") == "2026-12-03 21:00"


def test_data_uri_holds_the_bytes():
    png = b"\x89PNG\r\n\x1a\n\x00\x01"
    uri = data_uri(png, "image/png")
    prefix = "data:image/png;base64,"
    assert uri.startswith(prefix)
    assert base64.b64decode(uri.removeprefix(prefix)) == png


def test_markdown_is_masked_and_its_embedded_images_are_left_whole():
    # Base64 that masking would otherwise cut: its digits read as a (Luhn-valid) card number.
    image = "data:image/png;base64,iVBORw0KGgo+0101234/4111111111111111=="
    text = "연락처 010-1234-5678, kim@example.com"
    markdown = f"# 보고\n{text}\n\n![chart]({image})\n끝 900101-1234567"

    assert masked_markdown(markdown) == (
        f"# 보고\n연락처 ***, ***@example.com\n\n![chart]({image})\n끝 ***"
    )

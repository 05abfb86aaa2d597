"""Tests of the daily report's revenue chart: a PNG of the right size, for any series."""

from __future__ import annotations

import io
import warnings
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta

import matplotlib.image
import pandas as pd
import pytest

from flows.daily_report.chart import render_revenue_chart

REPORT = date(2026, 11, 24)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def series(values: list[float], end: date = REPORT) -> pd.Series:
    days = [end - timedelta(days=len(values) - 1 - i) for i in range(len(values))]
    return pd.Series(values, index=days, dtype="float64", name="revenue")


def size(png: bytes) -> tuple[int, int]:
    height, width = matplotlib.image.imread(io.BytesIO(png), format="png").shape[:2]
    return width, height


@pytest.mark.parametrize(
    ("values", "currency"),
    [
        ([float(1000 * (i % 5) + 500) for i in range(28)], "KRW"),
        ([0.0] * 28, "KRW"),  # a shop with no sales yet
        ([0.0] * 27 + [12.5], "USD"),  # small amounts with cents
        ([1_234_567_890.0] * 28, "KRW"),  # large amounts
        ([500.0], "KRW"),  # a single day
    ],
)
def test_chart_is_a_png_of_about_800_by_360(values, currency):
    png = render_revenue_chart(series(values), report_date=REPORT, currency=currency)
    assert png.startswith(PNG_MAGIC)
    width, height = size(png)
    assert abs(width - 800) <= 10
    assert abs(height - 360) <= 10


@pytest.mark.parametrize("locale", ["en", "ko"])
def test_text_in_either_language_needs_no_missing_glyphs(locale):
    # Hangul is drawn with the bundled NanumGothic, so no machine font is needed.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        png = render_revenue_chart(series([1500.0, 0.0, 2500.0]), report_date=REPORT, locale=locale)
    assert png.startswith(PNG_MAGIC)
    assert not [w for w in caught if "Glyph" in str(w.message)]


def test_the_korean_chart_says_its_title_in_korean():
    from flows.daily_report.chart import chart_texts

    assert chart_texts("ko")["title"] == "최근 28일 매출"
    assert chart_texts("fr") == chart_texts("en")


def test_report_day_outside_the_series_and_timestamp_index():
    values = series([100.0, 200.0], end=REPORT - timedelta(days=3))
    values.index = pd.to_datetime(values.index)
    assert render_revenue_chart(values, report_date=REPORT).startswith(PNG_MAGIC)


def test_empty_series():
    empty = pd.Series([], dtype="float64")
    assert render_revenue_chart(empty, report_date=REPORT).startswith(PNG_MAGIC)


def test_renders_concurrently_from_threads():
    # Figure + Agg canvas share no pyplot state, so flow runs in threads may draw at once.
    data = series([float(i * 100) for i in range(28)])
    with ThreadPoolExecutor(max_workers=4) as pool:
        pngs = list(pool.map(lambda _: render_revenue_chart(data, report_date=REPORT), range(8)))
    assert all(png.startswith(PNG_MAGIC) for png in pngs)
    assert len({size(png) for png in pngs}) == 1

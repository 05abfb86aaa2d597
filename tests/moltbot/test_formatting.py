"""Locale-aware formatting of amounts, percentages and dates."""

from __future__ import annotations

from datetime import date

import pytest

from moltbot.formatting import format_date, format_money, format_number, format_pct


@pytest.mark.parametrize(
    ("value", "currency", "locale", "expected"),
    [
        (1234567.4, "KRW", "en", "₩1,234,567"),
        (1234567.6, "KRW", "ko", "1,234,568원"),
        (-500, "KRW", "en", "-₩500"),
        (1234.5, "USD", "en", "$1,234.50"),
        (10, "CHF", "en", "10.00 CHF"),
        (None, "KRW", "ko", "해당 없음"),
    ],
)
def test_money(value, currency: str, locale: str, expected: str) -> None:
    assert format_money(value, currency, locale) == expected


def test_percent_and_number() -> None:
    assert format_pct(12.345) == "+12.3%"
    assert format_pct(-0.04) == "-0.0%"
    assert format_pct(None) == "n/a"
    assert format_number(1234567) == "1,234,567"
    assert format_number(2.25, decimals=1) == "2.2"


def test_dates_per_locale() -> None:
    assert format_date(date(2026, 11, 24), "en") == "Tue 24 Nov 2026"
    assert format_date(date(2026, 11, 24), "ko") == "2026년 11월 24일 (화)"

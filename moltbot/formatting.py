"""Locale-aware formatting of amounts, numbers, percentages and dates for messages (en, ko)."""

from __future__ import annotations

from datetime import date

# Currencies without a minor unit are shown without decimals (ISO 4217 exponent 0).
_ZERO_DECIMAL_CURRENCIES = frozenset({"KRW", "JPY", "VND", "CLP", "ISK", "TWD"})
_SYMBOLS = {"KRW": "₩", "USD": "$", "EUR": "€", "JPY": "¥", "GBP": "£"}
_KO_WEEKDAYS = "월화수목금토일"
_NOT_AVAILABLE = {"en": "n/a", "ko": "해당 없음"}


def format_number(value: float | int | None, locale: str = "en", decimals: int = 0) -> str:
    """`1234567.891` -> `1,234,568` (or with `decimals`); None -> n/a."""
    if value is None:
        return _NOT_AVAILABLE.get(locale, "n/a")
    return f"{value:,.{decimals}f}"


def minor_unit_digits(currency: str) -> int:
    """Decimal digits of `currency`'s minor unit: 0 for KRW, JPY… (no minor unit), else 2."""
    return 0 if currency.upper() in _ZERO_DECIMAL_CURRENCIES else 2


def format_money(value: float | int | None, currency: str = "KRW", locale: str = "en") -> str:
    """`1234567` KRW -> `₩1,234,567` (en) or `1,234,567원` (ko); USD keeps cents."""
    if value is None:
        return _NOT_AVAILABLE.get(locale, "n/a")
    code = currency.upper()
    decimals = 0 if code in _ZERO_DECIMAL_CURRENCIES else 2
    number = f"{abs(value):,.{decimals}f}"
    sign = "-" if value < 0 else ""
    if locale == "ko" and code == "KRW":
        return f"{sign}{number}원"
    symbol = _SYMBOLS.get(code)
    return f"{sign}{symbol}{number}" if symbol else f"{sign}{number} {code}"


def format_pct(value: float | None, locale: str = "en") -> str:
    """`12.345` -> `+12.3%`; None (a base of zero) -> n/a."""
    if value is None:
        return _NOT_AVAILABLE.get(locale, "n/a")
    return f"{value:+.1f}%"


def format_date(value: date, locale: str = "en") -> str:
    """`2026-11-23` -> `Mon 23 Nov 2026` (en) or `2026년 11월 23일 (월)` (ko)."""
    if locale == "ko":
        return f"{value.year}년 {value.month}월 {value.day}일 ({_KO_WEEKDAYS[value.weekday()]})"
    return f"{value:%a} {value.day} {value:%b %Y}"

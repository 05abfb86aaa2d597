"""Jinja2 rendering of message templates per automation and locale, with formatting filters."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from moltbot import formatting

SUPPORTED_LOCALES = ("en", "ko")


def markdown_cell(value: object) -> str:
    """Text safe inside a Markdown table cell: a `|` or a line break would split the row."""
    return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def slack_escape(value: object) -> str:
    """Text safe in Slack mrkdwn: `&`, `<` and `>` are control characters there."""
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@cache
def _environment(template_root: Path, locale: str) -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(template_root / locale),
        # HTML templates escape by default; text/markdown templates keep characters as written.
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "html.j2"), default=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    environment.filters["money"] = lambda value, currency="KRW": formatting.format_money(
        value, currency, locale
    )
    environment.filters["number"] = lambda value, decimals=0: formatting.format_number(
        value, locale, decimals
    )
    environment.filters["pct"] = lambda value: formatting.format_pct(value, locale)
    environment.filters["longdate"] = lambda value: formatting.format_date(value, locale)
    environment.filters["mdcell"] = markdown_cell
    environment.filters["slack"] = slack_escape
    return environment


def render_template(template_root: Path, locale: str, name: str, **context: Any) -> str:
    """Render `<template_root>/<locale>/<name>` (e.g. `templates/ko/slack.md.j2`).

    Raises:
        ValueError: for a locale moltbot has no templates for.
    """
    if locale not in SUPPORTED_LOCALES:
        raise ValueError(
            f"unsupported locale {locale!r} (choose from {', '.join(SUPPORTED_LOCALES)})"
        )
    return _environment(template_root, locale).get_template(name).render(**context)

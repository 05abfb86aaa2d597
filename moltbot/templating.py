"""Jinja2 rendering of message templates per automation and locale, with formatting filters."""

from __future__ import annotations

from dataclasses import dataclass
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


def override_folder(templates_dir: Path, template_root: Path) -> Path:
    """Where `templates_dir` keeps overrides of `template_root`'s templates: a folder named
    for the automation (`flows/inventory_alert/templates` -> `<templates_dir>/inventory-alert`)."""
    return templates_dir / template_root.parent.name.replace("_", "-")


@cache
def _environment(
    template_root: Path, locale: str, templates_dir: Path | None = None
) -> jinja2.Environment:
    # An override folder is searched first, so a user changes one template's wording (or a CI
    # shadow run tries a change) without copying the others.
    folders = [template_root / locale]
    if templates_dir is not None:
        folders.insert(0, override_folder(templates_dir, template_root) / locale)
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(folders),
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
    """Render `<template_root>/<locale>/<name>` (e.g. `templates/ko/slack.md.j2`), or its
    override under `MOLTBOT_TEMPLATES_DIR` (see `override_folder`) when there is one.

    Raises:
        ValueError: for a locale moltbot has no templates for.
    """
    if locale not in SUPPORTED_LOCALES:
        raise ValueError(
            f"unsupported locale {locale!r} (choose from {', '.join(SUPPORTED_LOCALES)})"
        )
    from moltbot.config.settings import get_settings

    templates_dir = get_settings().templates_dir
    environment = _environment(
        template_root, locale, templates_dir.resolve() if templates_dir else None
    )
    return environment.get_template(name).render(**context)


@dataclass(frozen=True)
class RenderedAlert:
    """An alert in every form a channel takes: title, Markdown, HTML e-mail, Slack blocks."""

    title: str
    markdown: str
    html: str
    slack_blocks: list[dict[str, Any]]


ALERT_TEMPLATES = (
    "title.txt.j2",
    "slack_summary.mrkdwn.j2",
    "slack_items.mrkdwn.j2",
    "slack_footer.mrkdwn.j2",
    "alert.md.j2",
    "email.html.j2",
)
"""The standard alert templates `render_alert` renders (with the default items template)."""


def render_alert(
    templates: Path, locale: str, items_template: str = "slack_items.mrkdwn.j2", **context: Any
) -> RenderedAlert:
    """Render an alert from an automation's standard templates.

    They are `title.txt.j2`, `slack_summary.mrkdwn.j2`, the item lines (`items_template`, one
    Slack line each), `slack_footer.mrkdwn.j2`, `alert.md.j2` and `email.html.j2`; the last two
    also see `title`. The Slack blocks are a header, the summary, the item lines packed into as
    few sections as Slack allows, and the footer as context.
    """
    from moltbot.messages import SLACK_SECTION_LIMIT, slack_sections

    title = render_template(templates, locale, "title.txt.j2", **context).strip()
    summary = render_template(templates, locale, "slack_summary.mrkdwn.j2", **context).strip()
    lines = render_template(templates, locale, items_template, **context)
    footer = render_template(templates, locale, "slack_footer.mrkdwn.j2", **context).strip()
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150], "emoji": True}},
        {"type": "section", "text": {"type": "mrkdwn", "text": summary[:SLACK_SECTION_LIMIT]}},
        *slack_sections([line for line in lines.splitlines() if line.strip()]),
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": footer[:SLACK_SECTION_LIMIT]}],
        },
    ]
    return RenderedAlert(
        title=title,
        markdown=render_template(templates, locale, "alert.md.j2", title=title, **context),
        html=render_template(templates, locale, "email.html.j2", title=title, **context),
        slack_blocks=blocks,
    )

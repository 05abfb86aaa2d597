"""What `moltbot show` and `moltbot list` say about an automation: schedule, parameters, routes."""

from __future__ import annotations

import json
from typing import Any

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from moltbot.registry import Automation

# Example parameters that run as written after `uv run moltbot demo` (its files and blocks).
EXAMPLES: dict[str, str] = {
    "daily-report": (
        "uv run moltbot run daily-report --param source=.moltbot/sample/orders.csv --dry-run"
    ),
    "inventory-alert": (
        "uv run moltbot run inventory-alert --param source=.moltbot/sample/inventory.csv "
        "--param sales_source=.moltbot/sample/orders.csv --dry-run"
    ),
    "form-digest": (
        "uv run moltbot run form-digest --param sheets_block=sandbox-sheets "
        "--param spreadsheet_id=ID --param worksheet=TITLE --dry-run"
    ),
    "ticket-creation": (
        "uv run moltbot run ticket-creation --param events_file=events.jsonl --dry-run"
    ),
}


def schedule_words(cron: str | None, timezone: str, locale: str = "en") -> str:
    """A cron schedule in words: `*/30 * * * *` -> `every 30 minutes (Asia/Seoul)`."""
    if not cron:
        return "실행 요청 시 (웹훅, run_deployment)" if locale == "ko" else "on demand (webhooks)"
    from cron_descriptor import ExpressionDescriptor, Options

    options = Options()
    options.use_24hour_time_format = True
    options.locale_code = "ko_KR" if locale == "ko" else "en_US"
    try:
        words = ExpressionDescriptor(cron, options).get_description()
    except Exception:  # an expression it cannot read is shown as it is
        words = cron
    words = words[0].lower() + words[1:] if locale != "ko" else words
    return f"{words} ({timezone})"


def describe_automation(automation: Automation) -> dict[str, Any]:
    """Everything `moltbot show` prints, as JSON types."""
    from moltbot.config.settings import get_settings
    from moltbot.parameters import describe_params

    settings = get_settings()
    return {
        "name": automation.name,
        "description": automation.description,
        "schedule": automation.default_schedule,
        "schedule_words": schedule_words(
            automation.default_schedule, settings.timezone, settings.locale
        ),
        "parameters": [
            {
                "name": info.name,
                "expected": info.expected,
                "required": info.required,
                "default": info.default,
                "meaning": info.meaning,
            }
            for info in describe_params(automation)
        ],
        "required_choices": [
            f"{choice.what}: {choice.words()}" for choice in automation.required_choices
        ],
        "routes": {severity: list(chain) for severity, chain in automation.default_routes.items()},
        "example": EXAMPLES.get(automation.name, f"uv run moltbot run {automation.name}"),
    }


def render_description(description: dict[str, Any]) -> list[RenderableType]:
    """`describe_automation`'s document as terminal output."""
    parts: list[RenderableType] = [
        Text.assemble((description["name"], "bold"), f": {description['description']}"),
        Text(f"schedule: {description['schedule_words']}"),
    ]
    table = Table("parameter", "expected", "default", "meaning", title="parameters")
    for parameter in description["parameters"]:
        default = (
            "required"
            if parameter["required"]
            else ("" if parameter["default"] is None else json.dumps(parameter["default"]))
        )
        table.add_row(parameter["name"], parameter["expected"], default, parameter["meaning"])
    parts.append(table)
    for choice in description["required_choices"]:
        parts.append(Text(f"needs {choice}"))
    routes = "; ".join(
        f"{severity}: {' > '.join(chain)}" for severity, chain in description["routes"].items()
    )
    parts.append(Text(f"default routes: {routes} (override in [routes] of moltbot.toml)"))
    parts.append(Text(f"example: {description['example']}"))
    return parts

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
    korean = _korean_schedule(cron) if locale == "ko" else None
    if korean is not None:
        return f"{korean} ({timezone})"
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


# Cron's day-of-week numbers (0 and 7: Sunday) in Korean, for weekly schedules.
_KO_WEEKDAYS = dict(
    zip(
        "01234567",
        ("일요일", "월요일", "화요일", "수요일", "목요일", "금요일", "토요일", "일요일"),
        strict=True,
    )
)


def _korean_schedule(cron: str) -> str | None:
    """Common schedules in plain Korean (cron-descriptor says "매 30분마다, 매시마다")."""
    fields = cron.split()
    weekly = len(fields) == 5 and fields[2:4] == ["*", "*"] and fields[4] in _KO_WEEKDAYS
    if weekly and fields[0].isdigit() and fields[1].isdigit():
        day = _KO_WEEKDAYS[fields[4]]
        return f"매주 {day} {int(fields[1]):02d}:{int(fields[0]):02d}"
    if len(fields) != 5 or fields[2:] != ["*", "*", "*"]:
        return None
    minute, hour = fields[0], fields[1]
    if minute.startswith("*/") and hour == "*" and minute[2:].isdigit():
        return f"{int(minute[2:])}분마다"
    if minute.isdigit() and hour == "*":
        return "매시 정각" if int(minute) == 0 else f"매시 {int(minute)}분"
    if minute.isdigit() and hour.isdigit():
        return f"매일 {int(hour):02d}:{int(minute):02d}"
    return None


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
    """`describe_automation`'s document as terminal output (in `MOLTBOT_LOCALE`)."""
    from moltbot.i18n import cli_text

    schedule, needs, default_routes, example = cli_text("show_lines")
    parts: list[RenderableType] = [
        Text.assemble((description["name"], "bold"), f": {description['description']}"),
        Text(schedule.format(schedule=description["schedule_words"])),
    ]
    *columns, title, required = cli_text("show_columns")
    table = Table(*columns, title=title)
    for parameter in description["parameters"]:
        default = (
            required
            if parameter["required"]
            else ("" if parameter["default"] is None else json.dumps(parameter["default"]))
        )
        # Text, not markup: a meaning may name a TOML table (`[routes.<name>]`).
        table.add_row(
            *(Text(cell) for cell in (parameter["name"], parameter["expected"], default)),
            Text(parameter["meaning"]),
        )
    parts.append(table)
    for choice in description["required_choices"]:
        parts.append(Text(needs.format(choice=choice)))
    routes = "; ".join(
        f"{severity}: {' > '.join(chain)}" for severity, chain in description["routes"].items()
    )
    parts.append(Text(default_routes.format(routes=routes)))
    parts.append(Text(example.format(example=description["example"])))
    return parts

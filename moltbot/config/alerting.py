"""The `[quiet_hours]` and `[escalation]` config: when messages wait, and when urgent ones climb."""

from __future__ import annotations

import re
from datetime import time
from typing import Any, TypeVar, get_args
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from moltbot.config.project import ProjectConfig
from moltbot.errors import InputError
from moltbot.messages import Severity

SEVERITIES: tuple[str, ...] = get_args(Severity)
"""Message severities from the least to the most urgent."""

_Model = TypeVar("_Model", bound=BaseModel)
_CLOCK_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def severity_rank(severity: str) -> int:
    """The place of `severity` in `SEVERITIES` (unknown ones rank lowest)."""
    return SEVERITIES.index(severity) if severity in SEVERITIES else 0


def _clock_time(value: Any) -> Any:
    if isinstance(value, time):
        return value
    if not isinstance(value, str) or not _CLOCK_TIME.match(value.strip()):
        raise ValueError('must be a time of day as HH:MM (24-hour), e.g. "22:00"')
    hours, minutes = value.strip().split(":")
    return time(int(hours), int(minutes))


def _timezone(value: Any) -> Any:
    if value is None:
        return value
    try:
        ZoneInfo(str(value))
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError('is not an IANA timezone (e.g. "Asia/Seoul")') from None
    return value


class _QuietTimes(BaseModel):
    """Start, end and timezone of quiet hours, each optional (a route takes the table's)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: time | None = Field(default=None, description="When quiet hours begin (HH:MM).")
    end: time | None = Field(default=None, description="When they end (HH:MM).")
    timezone: str | None = Field(default=None, description="IANA timezone of start and end.")

    @field_validator("start", "end", mode="before")
    @classmethod
    def _times(cls, value: Any) -> Any:
        return None if value is None else _clock_time(value)

    @field_validator("timezone", mode="before")
    @classmethod
    def _zone(cls, value: Any) -> Any:
        return _timezone(value)


class QuietRoute(_QuietTimes):
    """One route's own quiet hours (every key optional: the `[quiet_hours]` value is used)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(default=True, description="false: this route has no quiet hours.")
    hold_below: Severity | None = Field(
        default=None, description="Messages less urgent than this wait for the end."
    )


class QuietWindow(BaseModel):
    """The quiet hours in force on one route."""

    model_config = ConfigDict(frozen=True)

    start: time
    end: time
    hold_below: Severity
    timezone: str


class QuietHoursConfig(_QuietTimes):
    """The `[quiet_hours]` table of moltbot.toml.

    ```toml
    [quiet_hours]
    start = "22:00"
    end = "08:00"
    hold_below = "critical"      # info and warning wait; critical goes at once
    # timezone = "Asia/Seoul"    # default: MOLTBOT_TIMEZONE

    [quiet_hours.routes.oncall-sms]   # a route, by its first channel
    enabled = false
    [quiet_hours.routes.team-slack]
    start = "21:00"
    ```

    Without `start` and `end` at the top, only the routes listed with both have quiet hours.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    hold_below: Severity = Field(
        default="critical", description="Messages less urgent than this wait for the end."
    )
    routes: dict[str, QuietRoute] = Field(
        default_factory=dict, description="Route (first channel) -> its own quiet hours."
    )

    def window_for(self, route: str, default_timezone: str) -> QuietWindow | None:
        """The quiet hours of the route whose first channel is `route` (None: it has none)."""
        own = self.routes.get(route, QuietRoute())
        if not own.enabled:
            return None
        start = own.start or self.start
        end = own.end or self.end
        if start is None or end is None or start == end:
            return None
        return QuietWindow(
            start=start,
            end=end,
            hold_below=own.hold_below or self.hold_below,
            timezone=own.timezone or self.timezone or default_timezone,
        )


class EscalationRoute(BaseModel):
    """One route's own escalation (every key optional: the `[escalation]` value is used)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(default=True, description="false: this route never escalates.")
    after_minutes: int | None = Field(
        default=None, ge=1, le=1440, description="Minutes without acknowledgement per step."
    )


class EscalationConfig(BaseModel):
    """The `[escalation]` table of moltbot.toml: urgent alerts carry an acknowledgement link and
    climb their route until acknowledged.

    ```toml
    [escalation]
    after_minutes = 15                       # N: unacknowledged this long -> the next channel
    public_url = "https://hooks.example.com" # where people reach the webhook gateway
    # severities = ["critical"]
    # link_ttl_hours = 24

    [escalation.routes.team-slack]
    after_minutes = 5
    ```

    Without the table nothing escalates and no message carries a link.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    after_minutes: int = Field(
        default=15, ge=1, le=1440, description="Minutes without acknowledgement per step."
    )
    public_url: str = Field(
        default="http://127.0.0.1:8787",
        description="The webhook gateway's address as people reach it (ack links start with it).",
    )
    severities: tuple[Severity, ...] = Field(
        default=("critical",), min_length=1, description="Severities that escalate."
    )
    link_ttl_hours: float = Field(
        default=24.0, gt=0, le=24 * 30, description="How long an acknowledgement link works."
    )
    routes: dict[str, EscalationRoute] = Field(
        default_factory=dict, description="Route (first channel) -> its own escalation."
    )

    @field_validator("public_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// address")
        if parts.query or parts.fragment:
            raise ValueError("must not carry a query or fragment")
        return value.strip().rstrip("/")

    def after_for(self, route: str) -> int | None:
        """Minutes per step on the route whose first channel is `route` (None: no escalation)."""
        own = self.routes.get(route, EscalationRoute())
        return None if not own.enabled else own.after_minutes or self.after_minutes


def load_quiet_hours(config: ProjectConfig | None = None) -> QuietHoursConfig | None:
    """Read and check `[quiet_hours]` (None without the table).

    Raises:
        InputError: one line naming the file's line, the table and key, and the problem.
    """
    return _load(config or ProjectConfig.load(), "quiet_hours", QuietHoursConfig)


def load_escalation(config: ProjectConfig | None = None) -> EscalationConfig | None:
    """Read and check `[escalation]` (None without the table).

    Raises:
        InputError: one line naming the file's line, the table and key, and the problem.
    """
    return _load(config or ProjectConfig.load(), "escalation", EscalationConfig)


def _load(config: ProjectConfig, name: str, model: type[_Model]) -> _Model | None:
    table = config.table(name)
    if table is None:
        return None
    try:
        return model.model_validate(table)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False, include_input=False):
            loc = [str(part) for part in error["loc"] if not isinstance(part, int)]
            if loc[:1] == ["routes"] and len(loc) >= 2:
                table_name, keys = f"[{name}.routes.{loc[1]}]", loc[2:]
            else:
                table_name, keys = f"[{name}]", loc
            if error["type"] == "extra_forbidden":
                problem = "unknown key"
            else:
                problem = error["msg"].removeprefix("Value error, ")
            problems.append(f"{table_name} {'.'.join(keys)}: {problem}".replace(" :", ":"))
        where = config.where(name, *[str(p) for p in exc.errors()[0]["loc"]])
        raise InputError(f"{where}: {'; '.join(dict.fromkeys(problems))}") from None

"""The `[monitoring]` config: the HTTP endpoints service-health checks and how it checks them."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from moltbot.config.project import ProjectConfig
from moltbot.errors import InputError

DEFAULT_MAX_PARALLEL = 20
# A service's name goes into ledger keys, artifact rows and messages: a word, dots and dashes
# (Korean letters count as word characters).
_SERVICE_NAME = re.compile(r"^[\w][\w.\-]{0,99}$")

HttpMethod = Literal["GET", "HEAD", "POST"]


class ServiceCheck(BaseModel):
    """How one service is checked: one request, and what a healthy answer looks like.

    Attributes:
        url: the http(s) URL requested.
        expected_status: the status code(s) a healthy answer has.
        latency_ms: above this many milliseconds a healthy answer makes the service DEGRADED.
        contains: text the body must contain.
        timeout_seconds: the whole check (connect, answer, body) must finish within this.
        method: GET, HEAD or POST (with an empty body).
        headers_block: a saved `HttpHeaders` block whose headers are sent (secret values).
        failures_to_down: consecutive failed checks after which the service is DOWN.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(description="The http or https URL to request.")
    expected_status: tuple[int, ...] = Field(
        default=(200,), description="Status code, or list of codes, of a healthy answer."
    )
    latency_ms: float | None = Field(
        default=None, gt=0, description="Slower than this (milliseconds): DEGRADED."
    )
    contains: str | None = Field(
        default=None, min_length=1, description="Text a healthy answer's body contains."
    )
    timeout_seconds: float = Field(
        default=10.0, gt=0, le=300, description="Time allowed for the whole check."
    )
    method: HttpMethod = Field(default="GET", description="GET, HEAD or POST.")
    headers_block: str | None = Field(
        default=None, min_length=1, description="An HttpHeaders block: headers sent (secret)."
    )
    failures_to_down: int = Field(
        default=3, ge=1, le=1000, description="Consecutive failures before DOWN (K)."
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        # The problem is said without the URL: it may carry a token in its query.
        try:
            parts = urlsplit(value.strip())
        except ValueError:
            raise ValueError("not a URL") from None
        if parts.scheme not in ("http", "https"):
            raise ValueError("must start with http:// or https://")
        if not parts.hostname:
            raise ValueError("has no host")
        return value.strip()

    @field_validator("expected_status", mode="before")
    @classmethod
    def _statuses(cls, value: Any) -> Any:
        codes = [value] if not isinstance(value, list | tuple) else list(value)
        if not codes:
            raise ValueError("lists no status code")
        for code in codes:
            if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 599:
                raise ValueError("must be a status code from 100 to 599, or a list of them")
        return tuple(codes)

    @field_validator("method", mode="before")
    @classmethod
    def _upper_method(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _body_needs_a_body(self) -> ServiceCheck:
        if self.contains is not None and self.method == "HEAD":
            raise ValueError("contains needs a body: use GET or POST, not HEAD")
        return self


class MonitoringConfig(BaseModel):
    """The `[monitoring]` table of moltbot.toml.

    ```toml
    [monitoring]
    max_parallel = 20

    [monitoring.services.api]
    url = "https://api.example.com/health"
    latency_ms = 800
    headers_block = "api-health-headers"
    ```
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_parallel: int = Field(
        default=DEFAULT_MAX_PARALLEL, ge=1, le=1000, description="Checks in flight at once."
    )
    services: dict[str, ServiceCheck] = Field(
        default_factory=dict, description="Service name -> how it is checked."
    )

    @field_validator("services", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            for name in value:
                if not isinstance(name, str) or not _SERVICE_NAME.match(name):
                    raise ValueError(
                        "service names are letters, digits, '_', '.' and '-' (at most 100)"
                    )
        return value


def load_monitoring(config: ProjectConfig | None = None) -> MonitoringConfig:
    """Read and check `[monitoring]` of moltbot.toml (the defaults and no services without it).

    Raises:
        InputError: one line naming the file's line, the table and key, and the problem.
    """
    config = config or ProjectConfig.load()
    table = config.table("monitoring")
    try:
        return MonitoringConfig.model_validate(table or {})
    except ValidationError as exc:
        loc = exc.errors()[0]["loc"]
        keys = [str(part) for part in loc]
        where = config.where("monitoring", *keys)
        raise InputError(f"{where}: {_describe(exc, _table_path)}") from None


def services_from_parameter(services: Any) -> dict[str, ServiceCheck]:
    """The `services` flow parameter (the shape of `[monitoring.services]`), checked.

    Raises:
        InputError: one line naming `services[...]` and the key, and the problem.
    """
    if not isinstance(services, Mapping):
        raise InputError("services must map service names to their checks")
    try:
        return MonitoringConfig.model_validate({"services": dict(services)}).services
    except ValidationError as exc:
        raise InputError(_describe(exc, _parameter_path)) from None


def _table_path(loc: tuple[int | str, ...]) -> str:
    """`[monitoring.services.api] url`, `[monitoring] max_parallel`."""
    parts = [str(part) for part in loc]
    if parts[:1] == ["services"] and len(parts) >= 2:
        table = f"[monitoring.services.{parts[1]}]"
        return f"{table} {'.'.join(parts[2:])}".strip()
    return f"[monitoring] {'.'.join(parts)}".strip()


def _parameter_path(loc: tuple[int | str, ...]) -> str:
    """`services['api'].url`."""
    parts = [str(part) for part in loc]
    if parts[:1] == ["services"]:
        parts = parts[1:]
    if not parts:
        return "services"
    rest = "".join(f".{part}" for part in parts[1:])
    return f"services[{parts[0]!r}]{rest}"


def _describe(exc: ValidationError, path: Callable[[tuple[int | str, ...]], str]) -> str:
    """The validation errors as one line, each `where: problem`, never echoing a value."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = error["loc"]
        # A tuple's per-item errors (`expected_status.0`) are about the key itself.
        if loc and isinstance(loc[-1], int):
            loc = loc[:-1]
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        elif error["type"] == "missing":
            message = "missing"
        else:
            message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{path(loc)}: {message}")
    return "; ".join(dict.fromkeys(problems))

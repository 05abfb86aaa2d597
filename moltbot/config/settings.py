"""moltbot settings: MOLTBOT_* environment, optional ./moltbot.toml, defaults (CLI values win)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from moltbot.config.ratelimits import RateLimits
from moltbot.errors import InputError


class Settings(BaseSettings):
    """Process-wide settings; read with `get_settings()`, never at import time."""

    model_config = SettingsConfigDict(
        env_prefix="MOLTBOT_", toml_file="moltbot.toml", extra="ignore"
    )

    home: Path = Field(
        default=Path(".moltbot"), description="State folder: ledger, sample data, outbox."
    )
    timezone: str = Field(default="Asia/Seoul", description="IANA timezone for day boundaries.")
    ledger_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the ledger; default: a SQLite file under `home`.",
    )
    locale: Literal["en", "ko"] = Field(default="en", description="Language of messages.")
    currency: str = Field(default="KRW", description="ISO 4217 code used to format amounts.")
    retry_attempts: int = Field(
        default=4, ge=1, description="Attempts per delivery, the first included."
    )
    # 0.5 s doubling over 4 attempts waits at most 5.25 s in all, so a service that is down is
    # reported within seconds, while a 429's own Retry-After is still honoured in full.
    retry_base_delay: float = Field(
        default=0.5, ge=0, description="First backoff delay in seconds (doubles, with jitter)."
    )
    retry_max_delay: float = Field(default=30.0, ge=0, description="Cap of one backoff delay.")
    retry_after_cap: float = Field(
        default=120.0, ge=0, description="Longest `Retry-After` honoured before giving up."
    )

    ops_block: str | None = Field(
        default=None,
        description="Prefect notification block that failure alerts go to (kept apart from the "
        "automations' own channels).",
    )

    ops_channels: list[str] = Field(
        default_factory=lambda: ["outbox"],
        description="Channel route (block names, first that takes it) where dead letters and "
        "in-doubt effects are announced; keep it apart from the business channels.",
    )
    hold_wait_seconds: float = Field(
        default=30.0,
        ge=0,
        description="How long a run waits for another live run holding the same effect.",
    )
    breaker_threshold: int = Field(
        default=3, ge=1, description="Consecutive failures that open a channel's circuit."
    )
    breaker_cooldown_seconds: float = Field(
        default=300.0, ge=0, description="How long an open circuit skips its channel."
    )
    secret_rotation_days: int = Field(
        default=90,
        ge=1,
        description="`moltbot blocks list` flags a block whose secret is older than this.",
    )
    audit_publish_interval_seconds: float = Field(
        default=300.0,
        ge=0,
        description="Runs republish the day's audit table artifact at most this often "
        "(0: after every run); a day's first run always publishes.",
    )
    rate_limits: RateLimits = Field(
        default_factory=RateLimits,
        description="Client-side limits per external API and credential ([rate_limits]).",
    )
    shadow_retention_days: int = Field(
        default=14,
        ge=1,
        description="`moltbot prune` removes the run inputs kept for `moltbot shadow` after "
        "this many days (they may hold personal data; they live in the ledger database).",
    )
    templates_dir: Path | None = Field(
        default=None,
        description="A folder of message templates that override the shipped ones: "
        "`<templates_dir>/<automation>/<locale>/<name>` (e.g. inventory-alert/en/title.txt.j2).",
    )

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown timezone {value!r}") from exc
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # CLI (init) > environment > moltbot.toml > defaults.
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    @property
    def resolved_ledger_url(self) -> str:
        """The ledger URL, defaulting to `<home>/ledger.sqlite3`."""
        if self.ledger_url:
            return self.ledger_url
        return f"sqlite:///{(self.home / 'ledger.sqlite3').resolve()}"

    @property
    def outbox_dir(self) -> Path:
        """Where the outbox channel writes when no folder is configured."""
        return self.home / "outbox"

    @property
    def tz(self) -> ZoneInfo:
        """The configured timezone as a ZoneInfo."""
        return ZoneInfo(self.timezone)


# Settings read from the same environment and the same moltbot.toml, by their inputs. A run
# reads its settings a dozen times (the ledger, the locale of each formatted number, the
# audit's timezone); building them anew costs ~8 ms each (a TOML parse and pydantic).
_READ: dict[tuple[str, tuple[tuple[str, str], ...], bytes | None], Settings] = {}
_READ_MAX = 16


def get_settings(**overrides: object) -> Settings:
    """Read settings now (env and moltbot.toml of the working directory), with CLI overrides.

    Whatever changed since the last read (a `MOLTBOT_*` variable, the file's bytes, the working
    directory) is seen: settings are built again unless all of those are the same, and each
    caller gets its own copy.
    """
    given = {key: value for key, value in overrides.items() if value is not None}
    if given:
        return Settings(**given)
    key = _inputs()
    read = _READ.get(key)
    if read is None:
        read = Settings()
        if len(_READ) >= _READ_MAX:
            _READ.clear()
        _READ[key] = read
    return read.model_copy(deep=True)


def _inputs() -> tuple[str, tuple[tuple[str, str], ...], bytes | None]:
    """What `Settings()` reads: the working directory, `MOLTBOT_*` variables (any case, as
    pydantic-settings matches them), and the bytes of ./moltbot.toml (None without one)."""
    cwd = os.getcwd()
    environment = tuple(
        sorted(
            (name, value)
            for name, value in os.environ.items()
            if name.upper().startswith("MOLTBOT_")
        )
    )
    try:
        config = (Path(cwd) / str(Settings.model_config.get("toml_file"))).read_bytes()
    except OSError:
        config = None
    return cwd, environment, config


def checked_timezone(timezone: str) -> str:
    """`timezone` itself once it is known to be an IANA timezone (a flow parameter or setting).

    Raises:
        InputError: no such timezone.
    """
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise InputError(
            f"unknown timezone {timezone!r} (use an IANA name like Asia/Seoul)"
        ) from None
    return timezone

"""Deployment specs: one per automation, from the registry plus the `[deployments]` config table."""

from __future__ import annotations

import itertools
import subprocess
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from moltbot.config.project import ProjectConfig
from moltbot.config.settings import checked_timezone, get_settings
from moltbot.errors import InputError
from moltbot.parameters import check_values, missing_params
from moltbot.registry import Automation, CollisionStrategy, automations, get_automation

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment

DEPLOYMENT_NAME = "default"
MOLTBOT_TAG = "moltbot"
"""Every moltbot deployment, hence every run it creates, has this tag: failure alerts match it."""
# A cron's longest gap is looked for among this many fire times, at most this far ahead: enough
# for the weekly pattern of an every-few-minutes cron, and two fire times of a yearly cron.
GAP_FIRE_TIMES = 1000
GAP_HORIZON = timedelta(days=800)
DEFAULT_GRACE_MINUTES = 10.0
"""How late a scheduled run may complete before its missed-run alert fires (`grace_minutes`).

It covers the run's own duration and the worker's pick-up delay. Ten minutes fits moltbot's
automations, which take seconds to a few minutes; a longer automation sets its own.
"""


class RunPolicy(BaseModel):
    """How many runs of one deployment may run at once, and what a run beyond that does."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    concurrency_limit: int = Field(default=1, ge=1)
    collision_strategy: CollisionStrategy = "ENQUEUE"

    @classmethod
    def of(cls, automation: Automation) -> RunPolicy:
        """The automation's own policy, as its registry entry declares it (and says why)."""
        return cls(
            concurrency_limit=automation.concurrency_limit,
            collision_strategy=automation.collision_strategy,
        )


class DeploymentSettings(BaseModel):
    """One automation's entry in the `[deployments.<name>]` table of moltbot.toml."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=True, description="False: no deployment at all.")
    cron: str | None = Field(default=None, description="Replaces the registry's schedule.")
    interval_seconds: float | None = Field(
        default=None, gt=0, description="An interval schedule instead of the cron (tests, demos)."
    )
    timezone: str | None = Field(default=None, description="IANA timezone of the cron.")
    paused: bool | None = Field(default=None, description="Create the schedule paused.")
    parameters: dict[str, Any] = Field(default_factory=dict, description="Default parameters.")
    tags: list[str] = Field(default_factory=list, description="Tags added to `moltbot`.")
    concurrency_limit: int | None = Field(default=None, ge=1)
    collision_strategy: CollisionStrategy | None = None
    grace_minutes: float | None = Field(
        default=None,
        ge=0,
        allow_inf_nan=False,
        description="Minutes a scheduled run may be late before the missed-run alert fires.",
    )


@dataclass(frozen=True)
class DeploymentSpec:
    """Everything Prefect needs to deploy one automation.

    Attributes:
        automation: the registry entry.
        cron: cron schedule (None with an interval, or with no schedule at all).
        interval_seconds: interval schedule instead of the cron.
        timezone: IANA timezone the cron is read in.
        parameters: default parameters of every run.
        tags: deployment tags (runs inherit them); always includes `moltbot`.
        policy: concurrency limit and collision strategy.
        version: the code version (git commit, `-dirty` with local changes).
        paused: created with its schedule paused.
        missing_parameters: what its runs would lack, in words (a required flow parameter with
            no default here, or a required choice such as a stock source); such a deployment is
            created paused, since every scheduled run would fail.
        grace_minutes: how late a scheduled run may complete before ops are told it was missed.
    """

    automation: Automation
    cron: str | None
    interval_seconds: float | None
    timezone: str
    parameters: dict[str, Any]
    tags: tuple[str, ...]
    policy: RunPolicy
    version: str
    paused: bool
    missing_parameters: tuple[str, ...] = field(default=())
    grace_minutes: float = DEFAULT_GRACE_MINUTES

    @property
    def runs_on_schedule(self) -> bool:
        """Whether the server creates runs by itself: a cron or an interval, not paused."""
        return not self.paused and (self.interval_seconds is not None or self.cron is not None)

    @property
    def name(self) -> str:
        """The deployment's own name (`default`)."""
        return DEPLOYMENT_NAME

    @property
    def full_name(self) -> str:
        """`flow name/deployment name`, as `run_deployment` and the CLI take it."""
        return f"{self.automation.name}/{DEPLOYMENT_NAME}"

    def schedules(self) -> list[Any]:
        """The Prefect schedules of the deployment (none when it has neither cron nor interval)."""
        from prefect.schedules import Cron, Interval

        if self.interval_seconds is not None:
            return [Interval(timedelta(seconds=self.interval_seconds), timezone=self.timezone)]
        if self.cron is not None:
            return [Cron(self.cron, timezone=self.timezone)]
        return []

    def to_runner_deployment(self, work_pool_name: str | None = None) -> RunnerDeployment:
        """The Prefect deployment object, for `serve` (no pool) or a work pool.

        The entrypoint is the flow's module path, so a worker imports the installed package
        instead of needing the code copied to it.
        """
        from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
        from prefect.deployments.runner import EntrypointType

        flow = self.automation.load_flow()
        return flow.to_deployment(
            name=DEPLOYMENT_NAME,
            schedules=self.schedules(),
            paused=self.paused,
            parameters=self.parameters,
            tags=list(self.tags),
            version=self.version,
            description=self.automation.description,
            concurrency_limit=ConcurrencyLimitConfig(
                limit=self.policy.concurrency_limit,
                collision_strategy=ConcurrencyLimitStrategy(self.policy.collision_strategy),
            ),
            work_pool_name=work_pool_name,
            entrypoint_type=EntrypointType.MODULE_PATH,
        )

    def as_dict(self) -> dict[str, Any]:
        """The spec as plain JSON types (for `--json` and tests)."""
        return {
            "name": self.full_name,
            "automation": self.automation.name,
            "cron": self.cron,
            "interval_seconds": self.interval_seconds,
            "timezone": self.timezone,
            "parameters": self.parameters,
            "tags": list(self.tags),
            "concurrency_limit": self.policy.concurrency_limit,
            "collision_strategy": self.policy.collision_strategy,
            "version": self.version,
            "paused": self.paused,
            "missing_parameters": list(self.missing_parameters),
            "grace_minutes": self.grace_minutes,
        }

    def longest_gap(self, after: datetime | None = None) -> timedelta | None:
        """The longest time between two consecutive scheduled runs (None: no schedule).

        An interval schedule's gap is its interval. A cron's is the longest gap among its next
        `GAP_FIRE_TIMES` fire times (at most `GAP_HORIZON` ahead), in its own timezone: a
        weekday cron's is the weekend, a daily one's is 25 hours on the night the clocks go
        back. A cron that fires less than twice in that horizon has none. The dates come from
        Prefect's own cron schedule, so they are the server's.

        Args:
            after: where to start looking (default: now).
        """
        import asyncio

        from prefect.server.schemas.schedules import CronSchedule

        if self.interval_seconds is not None:
            return timedelta(seconds=self.interval_seconds)
        if self.cron is None:
            return None
        start = after or datetime.now(ZoneInfo(self.timezone))
        schedule = CronSchedule(cron=self.cron, timezone=self.timezone)
        dates = asyncio.run(
            schedule.get_dates(n=GAP_FIRE_TIMES, start=start, end=start + GAP_HORIZON)
        )
        gaps = [
            timedelta(seconds=(later - earlier).total_seconds())
            for earlier, later in itertools.pairwise(dates)
        ]
        return max(gaps, default=None)


def code_version(root: Path | None = None) -> str:
    """The git commit of the code (`-dirty` when the tree has changes), else the package version."""
    root = root or Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=root, capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
        changes = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root, capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("moltbot")
        except PackageNotFoundError:
            return "unknown"
    return f"{commit}-dirty" if changes else commit


def parse_deployment_settings(
    table: dict[str, Any], config: ProjectConfig | None = None
) -> dict[str, DeploymentSettings]:
    """Validate the `[deployments]` config table: automation name -> its settings.

    Args:
        table: the table's content.
        config: the file it comes from, so errors can name the line.

    Raises:
        InputError: an unknown automation, an unknown key or a value of the wrong type.
    """

    def where(*keys: str | int) -> str:
        return f" ({config.where('deployments', *keys)})" if config and config.found else ""

    parsed: dict[str, DeploymentSettings] = {}
    for name, entry in table.items():
        try:
            get_automation(name)
        except InputError as exc:
            raise InputError(f"[deployments.{name}]{where(name)}: {exc}") from None
        if not isinstance(entry, dict):
            raise InputError(f"[deployments.{name}]{where(name)}: must be a table")
        try:
            parsed[name] = DeploymentSettings.model_validate(entry)
        except ValidationError as exc:
            error = exc.errors()[0]
            location = [str(part) for part in error["loc"]]
            raise InputError(
                f"[deployments.{name}]{where(name, *location)}: "
                f"{'.'.join(location)}: {error['msg']}"
            ) from None
    return parsed


def build_specs(
    table: dict[str, Any] | None = None,
    *,
    only: list[str] | None = None,
    version: str | None = None,
) -> list[DeploymentSpec]:
    """The deployment of every enabled automation (or of those in `only`), registry order.

    Args:
        table: the `[deployments]` config table (None: read it from moltbot.toml).
        only: automation names to keep.
        version: the code version (default: `code_version()`).

    Raises:
        InputError: a bad config entry, an unknown name in `only`, a bad timezone.
    """
    config = None
    if table is None:
        config = ProjectConfig.load()
        table = config.table("deployments") or {}
    overrides = parse_deployment_settings(table, config)
    for name in only or []:
        get_automation(name)
    version = version or code_version()
    default_timezone = get_settings().timezone
    specs = []
    for automation in automations():
        if only and automation.name not in only:
            continue
        entry = overrides.get(automation.name, DeploymentSettings())
        if not entry.enabled:
            continue
        policy = RunPolicy.of(automation)
        policy = RunPolicy(
            concurrency_limit=entry.concurrency_limit or policy.concurrency_limit,
            collision_strategy=entry.collision_strategy or policy.collision_strategy,
        )
        parameters = {**automation.default_parameters, **entry.parameters}
        try:
            check_values(automation, parameters)
        except InputError as exc:
            place = automation.name, "parameters"
            where = f" ({config.where('deployments', *place)})" if config and config.found else ""
            raise InputError(f"[deployments.{automation.name}.parameters]{where}: {exc}") from None
        missing = tuple(needed for _, needed in missing_params(automation, parameters))
        specs.append(
            DeploymentSpec(
                automation=automation,
                cron=None if entry.interval_seconds else entry.cron or automation.default_schedule,
                interval_seconds=entry.interval_seconds,
                timezone=checked_timezone(entry.timezone or default_timezone),
                parameters=parameters,
                tags=tuple(dict.fromkeys([MOLTBOT_TAG, *entry.tags])),
                policy=policy,
                version=version,
                paused=bool(entry.paused) or bool(missing),
                missing_parameters=missing,
                grace_minutes=(
                    DEFAULT_GRACE_MINUTES if entry.grace_minutes is None else entry.grace_minutes
                ),
            )
        )
    return specs

"""The effects runtime of a process: ledger, breakers, retries and ops announcer from settings."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from moltbot.config.alerting import load_escalation, load_quiet_hours
from moltbot.config.project import ProjectConfig
from moltbot.config.settings import Settings, get_settings
from moltbot.effects.announce import attach_announcer
from moltbot.effects.breaker import CircuitBreaker
from moltbot.effects.channels import channel_executors
from moltbot.effects.escalation import EscalationWatch
from moltbot.effects.executors import Executor
from moltbot.effects.model import Intent, Route
from moltbot.effects.perform import EffectsRuntime
from moltbot.effects.quiet import held_until
from moltbot.messages import Message
from moltbot.policy import current_version
from moltbot.retrying import RetryPolicy
from moltbot.state.ledger import Ledger


def runtime_from_settings(
    ledger: Ledger,
    executors: Mapping[str, Executor],
    *,
    flow_run_id: str | None = None,
    settings: Settings | None = None,
    announce: bool = True,
    quiet_and_escalation: bool = True,
) -> EffectsRuntime:
    """The runtime configured by `MOLTBOT_*` settings; dead and in-doubt effects are announced
    on `ops_channels` (their blocks are loaded only when there is something to announce).

    With `quiet_and_escalation`, messages follow `[quiet_hours]` and `[escalation]` of
    moltbot.toml (the on-call automation's own digests and steps do not: they are what those
    rules produce).
    """
    settings = settings or get_settings()
    runtime = EffectsRuntime(
        ledger=ledger,
        executors=executors,
        flow_run_id=flow_run_id,
        retry=RetryPolicy.from_settings(settings),
        breaker=CircuitBreaker(
            ledger.engine,
            threshold=settings.breaker_threshold,
            cooldown_seconds=settings.breaker_cooldown_seconds,
        ),
        hold_wait_seconds=settings.hold_wait_seconds,
        policy_version=current_version(settings),
    )
    if quiet_and_escalation:
        follow_rules(runtime, ProjectConfig.load(), settings)
    if announce:
        attach_announcer(
            runtime,
            Route(tuple(settings.ops_channels)),
            locale=settings.locale,
            load=channel_executors,
        )
    return runtime


def follow_rules(runtime: EffectsRuntime, config: ProjectConfig, settings: Settings) -> None:
    """Make `runtime` hold messages in quiet hours and watch urgent ones, as `config` says."""
    quiet = load_quiet_hours(config)
    if quiet is not None:

        def hold_until(intent: Intent, now: datetime) -> datetime | None:
            if intent.kind != "message" or not isinstance(intent.payload, Message):
                return None
            return held_until(intent.payload, intent.route, now, quiet, settings.timezone)

        runtime.hold_until = hold_until
    escalation = load_escalation(config)
    if escalation is not None:
        runtime.watch = EscalationWatch(
            runtime.ledger, escalation, settings.locale, clock=lambda: runtime.clock()
        )

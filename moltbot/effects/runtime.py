"""The effects runtime of a process: ledger, breakers, retries and ops announcer from settings."""

from __future__ import annotations

from collections.abc import Mapping

from moltbot.config.settings import Settings, get_settings
from moltbot.effects.announce import attach_announcer
from moltbot.effects.breaker import CircuitBreaker
from moltbot.effects.channels import channel_executors
from moltbot.effects.executors import Executor
from moltbot.effects.model import Route
from moltbot.effects.perform import EffectsRuntime
from moltbot.retrying import RetryPolicy
from moltbot.state.ledger import Ledger


def runtime_from_settings(
    ledger: Ledger,
    executors: Mapping[str, Executor],
    *,
    flow_run_id: str | None = None,
    settings: Settings | None = None,
    announce: bool = True,
) -> EffectsRuntime:
    """The runtime configured by `MOLTBOT_*` settings; dead and in-doubt effects are announced
    on `ops_channels` (their blocks are loaded only when there is something to announce)."""
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
    )
    if announce:
        attach_announcer(
            runtime,
            Route(tuple(settings.ops_channels)),
            locale=settings.locale,
            load=channel_executors,
        )
    return runtime

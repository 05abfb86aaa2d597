"""The effects runtime of a process: ledger, breakers, retries and ops announcer from settings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from moltbot.config.settings import Settings, get_settings
from moltbot.effects.announce import announcer
from moltbot.effects.breaker import CircuitBreaker
from moltbot.effects.channels import channel_executors
from moltbot.effects.executors import Executor
from moltbot.effects.model import Intent, Outcome, Route
from moltbot.effects.perform import EffectsRuntime, perform
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
        ops_route = Route(tuple(settings.ops_channels), "at_least_once")

        def send(intents: list[Intent]) -> list[Outcome]:
            missing = [link for link in ops_route.links if link not in executors]
            ops = replace(
                runtime, announce=None, executors={**executors, **channel_executors(missing)}
            )
            return perform(intents, ops)

        runtime.announce = announcer(ops_route, locale=settings.locale, send=send)
    return runtime

"""Fixtures of the effects layer: a real ledger, sandbox channel blocks, a settable clock."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from blocks import OutboxChannel, SlackIncomingWebhook
from moltbot.effects import ChannelExecutor, EffectsRuntime
from moltbot.effects.announce import attach_announcer
from moltbot.effects.breaker import CircuitBreaker
from moltbot.effects.model import Route
from moltbot.retrying import RetryPolicy
from moltbot.sandbox.blocks import sandbox_email_channel
from moltbot.state.ledger import Ledger


class Clock:
    """A settable clock: tests move time instead of waiting for it."""

    def __init__(self) -> None:
        self.now = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite3'}") as opened:
        yield opened


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def waits() -> list[float]:
    return []


@pytest.fixture
def ops_folder(tmp_path: Path) -> Path:
    return tmp_path / "ops"


@pytest.fixture
def destinations(sandbox, ops_folder: Path) -> dict[str, ChannelExecutor]:
    """team-slack (the Slack emulator), ops-email (the SMTP sink), ops-outbox (a folder)."""
    return {
        "team-slack": ChannelExecutor(
            "team-slack", SlackIncomingWebhook(url=sandbox.slack_webhook_url("effects"))
        ),
        "ops-email": ChannelExecutor("ops-email", sandbox_email_channel(sandbox)),
        "ops-outbox": ChannelExecutor("ops-outbox", OutboxChannel(folder=str(ops_folder))),
    }


@pytest.fixture
def make_runtime(ledger: Ledger, destinations, clock: Clock, waits: list[float]):
    """Runtimes over the real ledger and sandbox channels; ops announcements go to ops-outbox."""

    def build(**overrides: object) -> EffectsRuntime:
        runtime = EffectsRuntime(
            ledger=ledger,
            executors=destinations,
            flow_run_id=None,
            retry=RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02),
            breaker=CircuitBreaker(ledger.engine, threshold=3, cooldown_seconds=60),
            hold_wait_seconds=0,
            clock=clock,
            sleep=waits.append,
        )
        runtime = replace(runtime, **overrides)
        if "announce" not in overrides:
            attach_announcer(runtime, Route(("ops-outbox",)), locale="en", load=lambda _: {})
        return runtime

    return build

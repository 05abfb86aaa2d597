"""Effects runtimes the channel tests share: one channel, then e-mail, sleeps recorded."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from moltbot.effects import ChannelExecutor, EffectsRuntime
from moltbot.retrying import RetryPolicy
from moltbot.sandbox.blocks import sandbox_email_channel
from moltbot.state.ledger import Ledger


def channel_then_email(
    ledger: Ledger,
    sandbox: Any,
    name: str,
    channel: Any,
    waits: list[float],
    on_sleep: Callable[[float], None] = lambda seconds: None,
) -> EffectsRuntime:
    """A runtime over `ledger` whose route links are `name` (the channel under test) and
    `ops-email` (the sandbox's SMTP sink); each sleep is recorded in `waits`, then handed to
    `on_sleep` (a test moves an emulator's clock there), never slept."""

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        on_sleep(seconds)

    return EffectsRuntime(
        ledger=ledger,
        executors={
            name: ChannelExecutor(name, channel),
            "ops-email": ChannelExecutor("ops-email", sandbox_email_channel(sandbox)),
        },
        retry=RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02),
        hold_wait_seconds=0,
        sleep=sleep,
    )

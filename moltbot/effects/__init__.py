"""The one effects layer: every external effect (message, page, issue, comment, sheet write) goes
through `perform`, which claims it in the ledger, applies it along its route, recovers
interrupted attempts, and records one outcome in one vocabulary."""

from moltbot.effects.executors import ChannelExecutor, Executor, Previewing
from moltbot.effects.model import (
    SETTLED,
    Applied,
    Attempt,
    DeliveryPolicy,
    Intent,
    Outcome,
    OutcomeStatus,
    Preview,
    Route,
)
from moltbot.effects.perform import EffectsRuntime, perform

__all__ = [
    "SETTLED",
    "Applied",
    "Attempt",
    "ChannelExecutor",
    "DeliveryPolicy",
    "EffectsRuntime",
    "Executor",
    "Intent",
    "Outcome",
    "OutcomeStatus",
    "Preview",
    "Previewing",
    "Route",
    "perform",
]

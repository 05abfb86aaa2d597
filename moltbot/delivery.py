"""Delivery guarantees: send each (message, channel) at most once via the ledger, with retries."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Literal, Protocol

from moltbot.errors import DeliveryError
from moltbot.ledger import EffectStatus, Ledger
from moltbot.masking import mask_text
from moltbot.messages import Message
from moltbot.retrying import RetryPolicy

DeliveryStatus = Literal["sent", "skipped", "in_progress", "failed", "dry_run"]


class Channel(Protocol):
    """Anything that can take a message: the channel blocks in `blocks.channels`."""

    def send(self, message: Message) -> str | None: ...


@dataclass(frozen=True)
class DeliveryOutcome:
    """What happened to one message on one channel (JSON-friendly via `as_dict`)."""

    channel: str
    status: DeliveryStatus
    key: str
    attempts: int = 0
    remote_id: str | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, object]:
        """The outcome as plain JSON types."""
        return asdict(self)


def effect_key(message: Message, channel_name: str) -> str:
    """The ledger key of `message` on `channel_name`: automation, logical item and target."""
    return f"{message.key}:{channel_name}"


def deliver(
    message: Message,
    channel_name: str,
    channel: Channel,
    ledger: Ledger,
    *,
    flow_run_id: str | None = None,
    force: bool = False,
    policy: RetryPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> DeliveryOutcome:
    """Send `message` to one channel unless the ledger says it was already sent.

    The ledger row is claimed before sending, so concurrent runs cannot both send; transient
    failures are retried in place; the final outcome (remote id or masked error) is recorded.
    """
    policy = policy or RetryPolicy.from_settings()
    key = effect_key(message, channel_name)
    claim = ledger.claim(
        key,
        automation=message.automation,
        kind="message",
        target=channel_name,
        flow_run_id=flow_run_id,
        force=force,
    )
    if not claim.acquired:
        status: DeliveryStatus = (
            "skipped" if claim.effect.status == EffectStatus.DONE else "in_progress"
        )
        if claim.effect.status == EffectStatus.DEAD:
            status = "failed"
        return DeliveryOutcome(
            channel=channel_name,
            status=status,
            key=key,
            attempts=claim.effect.attempts,
            remote_id=claim.effect.remote_id,
            error=claim.effect.error,
        )
    attempt = 1
    while True:
        try:
            remote_id = channel.send(message)
        except DeliveryError as exc:
            wait = policy.delay(attempt, exc)
            if wait is None:
                effect = ledger.fail(key, str(exc))
                return DeliveryOutcome(
                    channel=channel_name,
                    status="failed",
                    key=key,
                    attempts=effect.attempts,
                    error=effect.error,
                )
            sleep(wait)
            attempt += 1
            ledger.note_attempt(key)
        except Exception as exc:
            # A bug, not a channel answer: record it so the row is retryable, then surface it.
            ledger.fail(key, mask_text(f"{type(exc).__name__}: {exc}"))
            raise
        else:
            effect = ledger.complete(key, remote_id=remote_id)
            return DeliveryOutcome(
                channel=channel_name,
                status="sent",
                key=key,
                attempts=effect.attempts,
                remote_id=remote_id,
            )

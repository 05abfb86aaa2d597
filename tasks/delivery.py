"""Tasks that resolve channel blocks by name and deliver messages through the ledger."""

from __future__ import annotations

from prefect import task
from prefect.blocks.core import Block
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger
from prefect.runtime import flow_run

from blocks.channels import CHANNEL_BLOCK_TYPES, OutboxChannel
from moltbot.blockdocs import saved_block_documents
from moltbot.delivery import Channel, DeliveryOutcome, deliver, effect_key
from moltbot.errors import InputError
from moltbot.ledger import Ledger
from moltbot.masking import register_model_secrets
from moltbot.messages import Message

OUTBOX = "outbox"


def saved_channel_names() -> list[str]:
    """Names of every saved moltbot channel block (for error messages that list the choices)."""
    return sorted({document.name for document in saved_block_documents(CHANNEL_BLOCK_TYPES)})


def _load_channel(name: str) -> Block:
    if name == OUTBOX:
        return OutboxChannel()
    if "/" in name:
        block = Block.load(name)
        if not isinstance(block, CHANNEL_BLOCK_TYPES):
            raise InputError(f"block {name!r} is not a moltbot channel")
        return block
    for block_type in CHANNEL_BLOCK_TYPES:
        try:
            return block_type.load(name)
        except ValueError:
            continue
    choices = ", ".join([OUTBOX, *saved_channel_names()])
    raise InputError(f"unknown channel {name!r} (choose from: {choices})")


@task(name="load-channels", cache_policy=NO_CACHE)
def load_channels(names: list[str]) -> dict[str, Channel]:
    """Load the channel blocks named in `names` once per run (`outbox` needs no block).

    Raises:
        InputError: a name that is neither `outbox` nor a saved channel block.
    """
    if not names:
        raise InputError("no channels given (use 'outbox' for local files)")
    if len(set(names)) != len(names):
        raise InputError(f"a channel is listed twice: {names}")
    channels = {name: _load_channel(name) for name in names}
    for block in channels.values():
        # From now on this process masks the block's secrets (webhook URL, password) in logs.
        register_model_secrets(block)
    return channels


@task(name="deliver-message", task_run_name="deliver-{channel_name}", cache_policy=NO_CACHE)
def deliver_message(
    message: Message, channel_name: str, channel: Channel, force: bool = False
) -> dict[str, object]:
    """Send `message` to one channel at most once (ledger-guarded, retried when transient).

    Returns:
        The outcome: channel, status (`sent`, `skipped`, `in_progress`, `failed`), key, attempts.
    """
    logger = get_run_logger()
    with Ledger.from_settings() as ledger:
        outcome = deliver(
            message, channel_name, channel, ledger, flow_run_id=flow_run.get_id(), force=force
        )
    if outcome.status == "failed":
        logger.error("Delivery to %s failed: %s", channel_name, outcome.error)
    else:
        logger.info("Delivery to %s: %s", channel_name, outcome.status)
    return outcome.as_dict()


def dry_run_outcome(message: Message, channel_name: str) -> dict[str, object]:
    """The outcome reported for a channel in a dry run: nothing sent, nothing recorded."""
    return DeliveryOutcome(
        channel=channel_name, status="dry_run", key=effect_key(message, channel_name)
    ).as_dict()

"""Channel destinations: channel blocks loaded once by name and wrapped as executors."""

from __future__ import annotations

from collections.abc import Iterable

from blocks.channels import CHANNEL_BLOCK_TYPES, OutboxChannel
from moltbot.blockdocs import saved_block_documents
from moltbot.effects.executors import Channel, ChannelExecutor
from moltbot.errors import InputError
from moltbot.masking import register_model_secrets

OUTBOX = "outbox"


def saved_channel_names() -> list[str]:
    """Names of every saved moltbot channel block (for error messages that list the choices)."""
    return sorted({document.name for document in saved_block_documents(CHANNEL_BLOCK_TYPES)})


def load_channel(name: str) -> Channel:
    """The channel called `name`: `outbox`, a saved channel block, or ``<type slug>/<name>``.

    Raises:
        InputError: no such channel (the message lists the saved ones).
    """
    from prefect.blocks.core import Block

    if name == OUTBOX:
        return OutboxChannel()
    if "/" in name:
        block = Block.load(name)
        if not isinstance(block, CHANNEL_BLOCK_TYPES):
            raise InputError(f"block {name!r} is not a moltbot channel")
    else:
        for block_type in CHANNEL_BLOCK_TYPES:
            try:
                block = block_type.load(name)
                break
            except ValueError:
                continue
        else:
            choices = ", ".join([OUTBOX, *saved_channel_names()])
            raise InputError(f"unknown channel {name!r} (choose from: {choices})")
    # From now on this process masks the block's secrets (webhook URL, password) in logs.
    register_model_secrets(block)
    return block  # type: ignore[return-value]


def channel_executors(names: Iterable[str]) -> dict[str, ChannelExecutor]:
    """One executor per distinct channel name, each block loaded once."""
    return {name: ChannelExecutor(name, load_channel(name)) for name in dict.fromkeys(names)}

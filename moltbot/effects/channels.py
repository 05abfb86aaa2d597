"""Channel destinations: channel blocks loaded once by name and wrapped as executors."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from blocks.channels import CHANNEL_BLOCK_TYPES, OutboxChannel
from moltbot.blockdocs import saved_block_documents
from moltbot.effects.executors import Channel, ChannelExecutor
from moltbot.errors import InputError
from moltbot.masking import register_model_secrets

if TYPE_CHECKING:
    from prefect.blocks.core import Block

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
        block = _load_channel_block(name)
    # From now on this process masks the block's secrets (webhook URL, password) in logs.
    register_model_secrets(block)
    return block  # type: ignore[return-value]


def _load_channel_block(name: str) -> Block:
    """The saved channel block called `name`, looked up across every channel type at once."""
    documents = saved_block_documents(CHANNEL_BLOCK_TYPES, names=[name], include_secrets=True)
    by_slug = {document.block_type.slug: document for document in documents if document.block_type}
    # A name saved under two channel types resolves to the first type in CHANNEL_BLOCK_TYPES.
    for block_type in CHANNEL_BLOCK_TYPES:
        document = by_slug.get(block_type.get_block_type_slug())
        if document is not None:
            return block_type._load_from_block_document(document)
    choices = ", ".join([OUTBOX, *saved_channel_names()])
    raise InputError(f"unknown channel {name!r} (choose from: {choices})")


def channel_executors(names: Iterable[str]) -> dict[str, ChannelExecutor]:
    """One executor per distinct channel name, each block loaded once."""
    return {name: ChannelExecutor(name, load_channel(name)) for name in dict.fromkeys(names)}

"""Destinations by name, for replays: a route's links loaded back into executors."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from moltbot.effects.executors import Executor
from moltbot.errors import InputError


def executors_for(kind: str, links: Sequence[str]) -> Mapping[str, Executor]:
    """Executors of `links` for an effect of `kind`, their blocks loaded by name.

    Links are channel block names for messages, ``jira:<block>``, ``jira-comment:<block>``,
    ``notion:<block>`` and ``sheets:<block>`` for the others.

    Raises:
        InputError: a link that names no known destination.
    """
    from moltbot.blockdocs import load_block
    from moltbot.effects.channels import channel_executors
    from moltbot.effects.services import SERVICE_EXECUTORS

    if kind == "message":
        return channel_executors(links)
    by_prefix = {executor.prefix: executor for executor in SERVICE_EXECUTORS}
    built: dict[str, Executor] = {}
    for link in links:
        prefix, _, block = link.partition(":")
        executor = by_prefix.get(prefix)
        if executor is None:
            raise InputError(f"no destination type for {link!r} ({kind})")
        built[link] = executor(load_block(executor.block_type, block), block)
    return built

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
    from blocks.jira import JiraCredentials
    from blocks.notion import NotionCredentials
    from blocks.sheets import GoogleSheetsCredentials
    from moltbot.blockdocs import load_block
    from moltbot.effects.channels import channel_executors
    from moltbot.effects.services import (
        JiraCommentExecutor,
        JiraIssueExecutor,
        NotionPageExecutor,
        SheetsAppendExecutor,
    )

    if kind == "message":
        return channel_executors(links)
    built: dict[str, Executor] = {}
    for link in links:
        prefix, _, block = link.partition(":")
        if prefix == "jira":
            built[link] = JiraIssueExecutor(load_block(JiraCredentials, block), block)
        elif prefix == "jira-comment":
            built[link] = JiraCommentExecutor(load_block(JiraCredentials, block), block)
        elif prefix == "notion":
            built[link] = NotionPageExecutor(load_block(NotionCredentials, block), block)
        elif prefix == "sheets":
            built[link] = SheetsAppendExecutor(load_block(GoogleSheetsCredentials, block), block)
        else:
            raise InputError(f"no destination type for {link!r} ({kind})")
    return built

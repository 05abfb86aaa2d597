"""Tasks that read events the webhook gateway committed to its inbox (in the ledger database)."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from moltbot.errors import InputError
from moltbot.state.inbox import Inbox
from moltbot.state.ledger import Ledger


@task(name="read-inbox-events", cache_policy=NO_CACHE)
def read_inbox_events(inbox_ids: list[str]) -> list[dict[str, Any]]:
    """The normalised events of the given inbox entries, in the order given.

    The gateway passes inbox ids rather than events to the runs it creates, so a payload with
    customer details is read here, from the ledger database, and never shown with the run's
    parameters in the Prefect UI.

    Args:
        inbox_ids: ids of `webhook_inbox` entries.

    Returns:
        Each entry's event `{"id", "type", "occurred_at", "payload"}`.

    Raises:
        InputError: an id the inbox does not have (every unknown id is named).
    """
    with Ledger.from_settings() as ledger:
        # One query per 500 ids (the gateway passes up to 2,000 ids per run by default).
        entries = Inbox(ledger).get_many(inbox_ids)
    unknown = [entry_id for entry_id in dict.fromkeys(inbox_ids) if entry_id not in entries]
    if unknown:
        raise InputError(f"no webhook inbox entry {', '.join(map(repr, unknown))}")
    return [dict(entries[entry_id].event) for entry_id in inbox_ids]

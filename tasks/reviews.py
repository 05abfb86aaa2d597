"""Tasks that ask for a review and record its decision in the ledger (see moltbot.state.reviews)."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from moltbot.state.ledger import Ledger
from moltbot.state.reviews import Review, ReviewStore


@task(name="ask-review", cache_policy=NO_CACHE)
def ask_review(
    key: str, *, automation: str, requester: str | None, flow_run_id: str | None
) -> Review:
    """Record that `key` awaits a decision; the decision already taken, when there is one."""
    with Ledger.from_settings() as ledger:
        return ReviewStore(ledger).ask(
            key, automation=automation, requester=requester, flow_run_id=flow_run_id
        )


@task(name="decide-review", cache_policy=NO_CACHE)
def decide_review(
    key: str,
    *,
    status: str,
    reviewer: str | None,
    reason: str | None,
    decision: dict[str, Any] | None,
) -> Review:
    """Record the decision (or the timeout); the one that holds when another run was first."""
    with Ledger.from_settings() as ledger:
        return ReviewStore(ledger).decide(
            key, status=status, reviewer=reviewer, reason=reason, decision=decision
        )

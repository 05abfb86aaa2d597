"""Tasks of held messages and escalations: what is due, from the ledger; what was done, into it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from prefect import task
from prefect.cache_policies import NO_CACHE

from moltbot.config.alerting import EscalationConfig
from moltbot.effects.escalation import EscalationStep, EscalationWatch, record_of_step
from moltbot.effects.executors import load_payload
from moltbot.effects.model import Outcome, Route
from moltbot.effects.quiet import HeldMessage
from moltbot.state.audit import AuditAction, AuditTrail
from moltbot.state.escalations import Escalation, EscalationStore
from moltbot.state.ledger import Ledger


@task(name="load-held-messages", cache_policy=NO_CACHE)
def load_held(now: datetime) -> list[HeldMessage]:
    """The messages held for quiet hours that ended by `now`, with their routes."""
    with Ledger.from_settings() as ledger:
        return [
            HeldMessage(
                key=effect.key,
                message=load_payload("message", effect.payload),
                route=Route(tuple(json.loads(effect.route)), effect.policy or "at_least_once"),  # type: ignore[arg-type]
                due_at=effect.due_at,
                held_at=effect.created_at,
            )
            for effect in ledger.queued_due(now)
            if effect.payload is not None and effect.route and effect.due_at is not None
        ]


@task(name="release-held-messages", cache_policy=NO_CACHE)
def release_held(members: list[str], *, digest_key: str, via: str) -> int:
    """Record the held messages `members` done: the digest `digest_key` delivered them on
    `via` (one transaction; rows no longer held are left alone)."""
    with Ledger.from_settings() as ledger:
        return ledger.release_queued(members, remote_id=digest_key, via=via)


@task(name="load-due-escalations", cache_policy=NO_CACHE)
def load_due_escalations(
    now: datetime, config: EscalationConfig, locale: str
) -> tuple[list[Escalation], dict[str, str]]:
    """The open escalations whose next step is due, and each one's acknowledgement link."""
    with Ledger.from_settings() as ledger:
        due = EscalationStore(ledger).due(now)
        watch = EscalationWatch(ledger, config, locale, clock=lambda: now)
        return due, {escalation.key: watch.link_of(escalation) for escalation in due}


@task(name="record-escalation-steps", cache_policy=NO_CACHE)
def record_steps(
    steps: Sequence[EscalationStep],
    outcomes: Sequence[Outcome],
    *,
    config: EscalationConfig,
    now: datetime,
) -> list[dict[str, object]]:
    """Record where each step went (the next one due in N minutes, while links are left) in
    the escalation and the audit trail; a step not settled is left for the next run.

    Returns:
        One row per step: the escalation's key, the step, the link that took it, the outcome.
    """
    rows: list[dict[str, object]] = []
    with Ledger.from_settings() as ledger:
        store = EscalationStore(ledger)
        trail = AuditTrail(ledger)
        for step, outcome in zip(steps, outcomes, strict=True):
            escalation = step.escalation
            after = config.after_for(escalation.route[0]) or config.after_minutes
            record = record_of_step(escalation, outcome.status, outcome.via, after=after, now=now)
            recorded = record is not None and store.record_step(
                escalation.key,
                from_step=escalation.step,
                step=record.step,
                link=record.link,
                outcome=record.outcome,
                next_at=record.next_at,
                now=now,
            )
            if recorded:
                trail.record(
                    AuditAction.ESCALATE,
                    escalation.key,
                    actor="automation:on-call",
                    automation=escalation.automation,
                    outcome=outcome.status,
                    detail=f"step {step.number}: {outcome.via or step.intent.route.describe()}",
                    at=now,
                )
            rows.append(
                {
                    "key": escalation.key,
                    "step": step.number,
                    "via": outcome.via,
                    "status": outcome.status,
                    "recorded": recorded,
                }
            )
    return rows

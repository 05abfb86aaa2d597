"""The outbox: effects the ledger holds, listed, shown, replayed and resolved by a person."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from moltbot.effects.executors import Executor, load_payload
from moltbot.effects.model import Intent, Outcome, Route
from moltbot.effects.perform import EffectsRuntime, perform, recorded_outcome
from moltbot.errors import InputError
from moltbot.state.ledger import Effect, EffectStatus, Ledger

REPLAYABLE = (EffectStatus.DEAD, EffectStatus.FAILED)

ExecutorsFor = Callable[[str, Sequence[str]], Mapping[str, Executor]]
"""Builds the executors of a route's links for an effect kind (blocks loaded by name)."""


@dataclass(frozen=True)
class OutboxEntry:
    """One ledger row as the outbox shows it: no payload, errors masked already."""

    key: str
    automation: str
    kind: str
    target: str
    status: str
    attempts: int
    route: list[str]
    policy: str | None
    via: str | None
    remote_id: str | None
    error: str | None
    tried: list[dict[str, str]]
    flow_run_id: str | None
    created_at: str
    updated_at: str
    replayable: bool
    # A message held for quiet hours: when they end and the on-call digest delivers it.
    due_at: str | None = None
    # Why it went out: the rule that produced it and the policy version then (`moltbot policy`).
    rule_id: str | None = None
    policy_version: str | None = None

    @classmethod
    def of(cls, effect: Effect) -> OutboxEntry:
        """The entry of a ledger row."""
        return cls(
            key=effect.key,
            automation=effect.automation,
            kind=effect.kind,
            target=effect.target,
            status=effect.status.value,
            attempts=effect.attempts,
            route=json.loads(effect.route) if effect.route else [],
            policy=effect.policy,
            via=effect.via,
            remote_id=effect.remote_id,
            error=effect.error,
            tried=json.loads(effect.tried) if effect.tried else [],
            flow_run_id=effect.flow_run_id,
            created_at=effect.created_at.isoformat(timespec="seconds"),
            updated_at=effect.updated_at.isoformat(timespec="seconds"),
            replayable=effect.payload is not None
            and effect.route is not None
            and effect.status in REPLAYABLE,
            due_at=effect.due_at.isoformat(timespec="seconds") if effect.due_at else None,
            rule_id=effect.rule_id,
            policy_version=effect.policy_version,
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return dict(self.__dict__)


def list_entries(
    ledger: Ledger, *, status: str | None = None, automation: str | None = None
) -> list[OutboxEntry]:
    """Ledger rows, oldest first, optionally of one status or automation.

    Raises:
        InputError: an unknown status.
    """
    if status is not None and status not in {s.value for s in EffectStatus}:
        choices = ", ".join(s.value for s in EffectStatus)
        raise InputError(f"--status {status!r}: choose from {choices}")
    effects = ledger.effects(automation=automation, status=EffectStatus(status) if status else None)
    return [OutboxEntry.of(effect) for effect in effects]


def get_entry(ledger: Ledger, key: str) -> OutboxEntry:
    """The entry of `key`.

    Raises:
        InputError: no such key.
    """
    effect = ledger.get(key)
    if effect is None:
        raise InputError(
            f"no effect with key {key!r} in the ledger (see `uv run moltbot outbox list`)"
        )
    return OutboxEntry.of(effect)


def intent_of(effect: Effect) -> Intent:
    """Rebuild the intent of a recorded effect from its stored route, policy and payload.

    Raises:
        InputError: the row keeps no payload (done, or recorded before payloads were kept).
    """
    if effect.payload is None or effect.route is None:
        raise InputError(
            f"{effect.key}: no stored payload to replay; run the automation again instead"
        )
    policy = effect.policy if effect.policy in ("at_least_once", "at_most_once") else None
    return Intent(
        key=effect.key,
        automation=effect.automation,
        kind=effect.kind,
        target=effect.target,
        payload=load_payload(effect.kind, effect.payload),
        route=Route(tuple(json.loads(effect.route)), policy or "at_least_once"),
        label="replay",
        rule_id=effect.rule_id,
    )


def replay(
    ledger: Ledger,
    keys: Sequence[str],
    *,
    executors_for: ExecutorsFor,
    runtime: Callable[[Mapping[str, Executor]], EffectsRuntime],
) -> list[Outcome]:
    """Perform dead or failed effects again through the same idempotent path.

    A key already done is reported `already_done` and nothing is sent; a key held by a live
    run is reported `held`; an in-doubt key needs `resolve` first.

    Raises:
        InputError: an unknown key, an in-doubt one, or one without a stored payload.
    """
    outcomes: list[Outcome] = []
    for key in keys:
        effect = ledger.get(key)
        if effect is None:
            raise InputError(f"no effect with key {key!r} in the ledger")
        if effect.status == EffectStatus.IN_DOUBT:
            raise InputError(
                f"{key} is in doubt: decide first with "
                f"`uv run moltbot outbox resolve {key} --sent` (it arrived) or `--resend`"
            )
        if effect.status == EffectStatus.DONE:
            outcomes.append(recorded_outcome(_recorded_intent(effect), effect))
            continue
        intent = intent_of(effect)
        executors = executors_for(intent.kind, intent.route.links)
        outcomes.extend(perform([intent], runtime(executors), revive=True))
    return outcomes


def resolve(ledger: Ledger, key: str, *, sent: bool) -> OutboxEntry:
    """Record a person's decision on an in-doubt effect: it arrived (`sent`), or resend it
    (it becomes failed: `replay` or the next run sends it).

    Raises:
        InputError: no such key, or not in doubt.
    """
    try:
        return OutboxEntry.of(ledger.resolve(key, sent=sent))
    except KeyError:
        raise InputError(f"no effect with key {key!r} in the ledger") from None
    except ValueError as exc:
        raise InputError(f"{key}: {exc}") from None


def _recorded_intent(effect: Effect) -> Intent:
    """The intent a done row stands for (its payload is gone; nothing is performed)."""
    route = json.loads(effect.route) if effect.route else [effect.target]
    return Intent(
        key=effect.key,
        automation=effect.automation,
        kind=effect.kind,
        target=effect.target,
        payload=None,
        route=Route(tuple(route)),
    )

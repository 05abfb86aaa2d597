"""The one path of every external effect: claim in the ledger, look up, apply, fall back, record."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Protocol

from moltbot.effects.breaker import CircuitBreaker
from moltbot.effects.executors import Executor, dump_payload
from moltbot.effects.holders import current_holder, holder_is_dead
from moltbot.effects.model import Applied, Attempt, Intent, Outcome, Preview
from moltbot.errors import InputError, InputRefused, ServiceError
from moltbot.masking import mask_text
from moltbot.retrying import RetryPolicy, retry_sleep
from moltbot.state.ledger import Effect, EffectStatus, Ledger

logger = logging.getLogger("moltbot.effects")

Announce = Callable[[list[tuple[Intent, Outcome]]], None]
"""Tells the ops channel about effects that became dead or in doubt (each key once)."""

HoldUntil = Callable[[Intent, datetime], datetime | None]
"""When an intent may be performed, if it must wait (a message during its route's quiet hours)."""


class DeliveryWatch(Protocol):
    """Follows messages that need more than delivery (an urgent alert awaiting acknowledgement:
    `moltbot.effects.escalation.EscalationWatch`)."""

    def prepare(self, intent: Intent) -> Intent:
        """The intent as it is to be applied (its message carrying a link, say)."""
        ...

    def delivered(self, intent: Intent, link: str) -> None:
        """`link` took the intent."""
        ...

    def undelivered(self, intent: Intent) -> None:
        """No link of the route took it (dead)."""
        ...


@dataclass
class EffectsRuntime:
    """What `perform` works with; tests inject clocks, sleeps and holders.

    Attributes:
        ledger: where effects are claimed and recorded.
        executors: destination name -> executor, for every link of every route.
        flow_run_id: the Prefect flow run performing them (None outside a flow).
        holder: this process's identity, stored with each claim.
        holder_is_dead: tells whether another claim's holder is gone (taken over at once).
        retry: backoff of a destination whose adapter does not retry itself.
        breaker: the circuit breakers (None: never skip a destination).
        hold_wait_seconds: how long to wait for another live run holding a claim.
        hold_poll_seconds: how often to look again while waiting.
        announce: called with the effects that became dead or in doubt.
        clock: the current time (aware UTC).
        sleep: the wait function (default `retry_sleep`: tests record it).
        hold_until: when a message must wait for the end of quiet hours (None: none wait).
        watch: follows urgent messages after delivery (None: nothing escalates).
        policy_version: the version of the policy document in force (`moltbot.policy`),
            recorded with each claim beside the intent's rule id (None: not recorded).
    """

    ledger: Ledger
    executors: Mapping[str, Executor]
    flow_run_id: str | None = None
    holder: str = field(default_factory=current_holder)
    holder_is_dead: Callable[[Effect], bool] = holder_is_dead
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    breaker: CircuitBreaker | None = None
    hold_wait_seconds: float = 30.0
    hold_poll_seconds: float = 2.0
    announce: Announce | None = None
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    sleep: Callable[[float], None] = retry_sleep
    hold_until: HoldUntil | None = None
    watch: DeliveryWatch | None = None
    policy_version: str | None = None


def perform(
    intents: Sequence[Intent],
    runtime: EffectsRuntime,
    *,
    force: bool = False,
    revive: bool = False,
    dry_run: bool = False,
) -> list[Outcome]:
    """Perform each intent at most once, along its route, and say what became of it.

    1. Claim every key in the ledger (a key another live run holds is waited for, within
       `hold_wait_seconds`, then reported `held`; a holder that died is taken over at once).
    2. A claim taken over from an interrupted attempt is first looked up remotely where the
       destination allows it (found: recorded `done`, nothing applied). Where it cannot be
       looked up and the attempt died with its outcome unknown, an `at_most_once` route holds it
       `in_doubt` for a person; an `at_least_once` route sends it again.
    3. A message whose route is in quiet hours and whose severity may wait is recorded `queued`
       with its payload (a digest delivers it when they end; see `moltbot.effects.quiet`).
    4. Apply, in the executor's batches, on the first destination of the route whose circuit is
       closed; transient failures are retried there (honouring `Retry-After`), then the next
       destination is tried. A refusal of the effect itself (bad fields) is `failed`; a failure
       that may have applied is looked up (or, without a look-up, follows the route's policy).
    5. Record each outcome. When every destination failed the effect is `dead`, and it and the
       `in_doubt` ones are announced to ops once.

    Args:
        intents: what to do; keys must be unique.
        runtime: ledger, executors, clocks.
        force: perform even effects the ledger records as done.
        revive: take over dead and in-doubt effects (a replay), never done ones.
        dry_run: claim, apply and record nothing; each outcome carries what its route's
            first destination would receive, where that destination can preview it.

    Returns:
        One outcome per intent, in order.

    Raises:
        InputError: a route names a destination without an executor, or a key repeats.
    """
    keys = [intent.key for intent in intents]
    if len(set(keys)) != len(keys):
        raise InputError("the same effect key is listed twice")
    for intent in intents:
        missing = [link for link in intent.route.links if link not in runtime.executors]
        if missing:
            raise InputError(f"no destination named {', '.join(map(repr, missing))}")
    if dry_run:
        return preview(intents, runtime.executors)
    return _Performance(runtime, force=force, revive=revive).run(list(intents))


def preview(
    intents: Sequence[Intent], executors: Mapping[str, Executor] | None = None
) -> list[Outcome]:
    """The outcomes of a dry run: nothing claimed, applied or recorded.

    Each outcome's `preview` is what the route's first destination would receive, made by that
    executor's `preview` (the rendering its `apply` uses), with the route's fallbacks listed;
    None where the executor has no preview or `executors` are not given. An effect found
    remotely already (`known_remote_id`) previews as a record of it.
    """
    return [
        _outcome(intent, "dry_run", preview=_preview_one(intent, executors)) for intent in intents
    ]


def _preview_one(intent: Intent, executors: Mapping[str, Executor] | None) -> Preview | None:
    link = intent.route.links[0]
    fallbacks = list(intent.route.links[1:])
    if intent.known_remote_id is not None:
        lines = [f"record {intent.known_remote_id} as done (it exists already; nothing is sent)"]
        return Preview(destination=link, kind="record", lines=lines, fallbacks=fallbacks)
    make = getattr(executors.get(link), "preview", None) if executors is not None else None
    shown = make(intent) if make is not None else None
    if not isinstance(shown, Preview):
        return None
    return shown.model_copy(update={"fallbacks": fallbacks})


class _Performance:
    """One call of `perform`: its claims, attempts and outcomes."""

    def __init__(self, runtime: EffectsRuntime, *, force: bool, revive: bool) -> None:
        self.rt = runtime
        self.ledger = runtime.ledger
        self.force = force
        self.revive = revive
        self.outcomes: dict[str, Outcome] = {}
        self.tried: dict[str, list[Attempt]] = {}
        self.to_announce: list[tuple[Intent, Outcome]] = []

    def run(self, intents: list[Intent]) -> list[Outcome]:
        known = [intent for intent in intents if intent.known_remote_id is not None]
        for intent in known:
            self._record_known(intent)
        acquired = self._claim_all([i for i in intents if i.known_remote_id is None])
        to_apply = self._hold_quiet(self._recover(acquired))
        self._apply_along_routes(to_apply)
        if self.to_announce and self.rt.announce is not None:
            try:
                self.rt.announce(self.to_announce)
            except Exception as exc:  # the announcement must never hide the outcomes
                logger.error("ops announcement failed: %s", mask_text(str(exc)))
        return [self.outcomes[intent.key] for intent in intents]

    # ------------------------------------------------------------------ claims

    def _claim(self, intent: Intent) -> tuple[bool, Effect, Effect | None]:
        claim = self.ledger.claim(
            intent.key,
            automation=intent.automation,
            kind=intent.kind,
            target=intent.target,
            flow_run_id=self.rt.flow_run_id,
            force=self.force,
            revive=self.revive,
            holder=self.rt.holder,
            holder_is_dead=self.rt.holder_is_dead,
            details={
                "route": json.dumps(list(intent.route.links)),
                "policy": intent.route.policy,
                "payload": dump_payload(intent.kind, intent.payload),
                **self._why(intent),
            },
        )
        if claim.acquired:
            # A companion's fate is its effect's: whoever holds the effect holds it too.
            for companion in intent.companion_keys:
                self._take_over(companion, intent)
        return claim.acquired, claim.effect, claim.previous

    def _why(self, intent: Intent) -> dict[str, str]:
        """The rule and policy version to record with a claim ("why did this go out"); unknown
        ones are left out, so a claim never erases what an earlier one recorded."""
        why = {"rule_id": intent.rule_id, "policy_version": self.rt.policy_version}
        return {name: value for name, value in why.items() if value is not None}

    def _claim_all(self, intents: list[Intent]) -> list[tuple[Intent, Effect | None]]:
        """Claim each key; wait (bounded) for the ones another live run holds."""
        acquired: list[tuple[Intent, Effect | None]] = []
        waiting = self._claim_round(intents, acquired)
        deadline = self.rt.clock().timestamp() + self.rt.hold_wait_seconds
        while waiting and self.rt.clock().timestamp() < deadline:
            self.rt.sleep(self.rt.hold_poll_seconds)
            waiting = self._claim_round(waiting, acquired)
        for intent in waiting:
            effect = self.ledger.get(intent.key)
            assert effect is not None  # a held claim is a row
            self.outcomes[intent.key] = recorded_outcome(intent, effect)
        return acquired

    def _claim_round(
        self, intents: list[Intent], acquired: list[tuple[Intent, Effect | None]]
    ) -> list[Intent]:
        """Try each claim once; return the intents another live run still holds."""
        held: list[Intent] = []
        for intent in intents:
            won, effect, previous = self._claim(intent)
            if won:
                acquired.append((intent, previous))
            elif effect.status == EffectStatus.PENDING:
                held.append(intent)
            else:
                self.outcomes[intent.key] = recorded_outcome(intent, effect)
        return held

    def _record_known(self, intent: Intent) -> None:
        """An effect the caller found remotely: record it done without performing it."""
        current = self.ledger.get(intent.key)
        if current is not None and current.status == EffectStatus.DONE:
            self.outcomes[intent.key] = recorded_outcome(intent, current)
            return
        for key in (intent.key, *intent.companion_keys):
            self._take_over(key, intent)
            self.ledger.complete(key, remote_id=intent.known_remote_id, via=intent.route.name)
        self.outcomes[intent.key] = self._done(
            intent, intent.known_remote_id, via=intent.route.name, recovered=True
        )

    def _take_over(self, key: str, intent: Intent) -> None:
        """Claim `key` for this run whatever state another holder left it in (a companion of
        an effect this run holds, or an effect known to exist remotely)."""
        self.ledger.claim(
            key,
            automation=intent.automation,
            kind=intent.kind,
            target=intent.target,
            flow_run_id=self.rt.flow_run_id,
            force=True,
            holder=self.rt.holder,
            holder_is_dead=lambda _effect: True,
            details=self._why(intent),
        )

    # ------------------------------------------------------------------ recovery

    def _recover(self, acquired: list[tuple[Intent, Effect | None]]) -> list[Intent]:
        """Settle taken-over claims by looking them up; return the intents still to apply."""
        to_apply: list[Intent] = []
        by_link: dict[str, list[Intent]] = {}
        unknown: set[str] = set()
        for intent, previous in acquired:
            if previous is None:
                to_apply.append(intent)
                continue
            if previous.status == EffectStatus.PENDING:
                unknown.add(intent.key)
                logger.warning(
                    "%s: taking over an interrupted attempt (attempt %d, flow run %s)",
                    intent.key,
                    previous.attempts,
                    previous.flow_run_id,
                )
            by_link.setdefault(intent.route.links[0], []).append(intent)
        for link, batch in by_link.items():
            executor = self.rt.executors[link]
            if executor.can_look_up:
                try:
                    found = self._look_up(executor, batch)
                except ServiceError as failure:
                    # Unknown whether they exist: nothing is applied; the next run looks again.
                    for intent in batch:
                        self._finish_failed(
                            intent, f"look-up failed: {mask_text(str(failure))}", transient=True
                        )
                    continue
                for intent in batch:
                    if intent.key in found:
                        self._finish_done(intent, found[intent.key], link, recovered=True)
                    else:
                        to_apply.append(intent)
                continue
            for intent in batch:
                if intent.key in unknown and intent.route.policy == "at_most_once":
                    self._finish_in_doubt(
                        intent,
                        "the run sending it stopped before recording the outcome; it may have "
                        "been delivered and cannot be checked",
                    )
                else:
                    to_apply.append(intent)
        return to_apply

    def _look_up(self, executor: Executor, intents: list[Intent]) -> dict[str, str]:
        found: dict[str, str] = {}
        for start in range(0, len(intents), max(executor.batch_size, 1)):
            found.update(executor.look_up(intents[start : start + executor.batch_size]))
        return found

    def _hold_quiet(self, intents: list[Intent]) -> list[Intent]:
        """Queue the messages that must wait for the end of quiet hours; return the others."""
        if self.rt.hold_until is None:
            return intents
        now = self.rt.clock()
        to_apply = []
        for intent in intents:
            due = self.rt.hold_until(intent, now)
            if due is None:
                to_apply.append(intent)
                continue
            for companion in intent.companion_keys:
                self.ledger.queue(companion, due)
            effect = self.ledger.queue(intent.key, due)
            logger.info("%s: held for quiet hours until %s", intent.key, due.isoformat())
            self.outcomes[intent.key] = _outcome(intent, "queued", attempts=effect.attempts)
        return to_apply

    # ------------------------------------------------------------------ applying

    def _apply_along_routes(self, intents: list[Intent]) -> None:
        position = {intent.key: 0 for intent in intents}
        active = intents
        while active:
            by_link: dict[str, list[Intent]] = {}
            for intent in active:
                by_link.setdefault(intent.route.links[position[intent.key]], []).append(intent)
            failed_here: list[Intent] = []
            for link, batch in by_link.items():
                failed_here.extend(self._apply_on(link, batch))
            active = []
            for intent in failed_here:
                position[intent.key] += 1
                if position[intent.key] < len(intent.route.links):
                    active.append(intent)
                elif self.rt.executors[intent.route.links[-1]].dead_letters:
                    self._finish_dead(intent)
                else:
                    # A write to a service (a page, an issue) stays the automation's to retry:
                    # its next run re-plans the same key and tries again.
                    tried = self.tried.get(intent.key, [])
                    self._finish_failed(
                        intent, tried[-1].error if tried else "not applied", transient=True
                    )

    def _apply_on(self, link: str, batch: list[Intent]) -> list[Intent]:
        """Apply `batch` on `link`; return the intents that should go on to the next link."""
        executor = self.rt.executors[link]
        breaker = self.rt.breaker
        if breaker is not None and breaker.is_open(link, self.rt.clock()):
            state = breaker.state(link)
            until = state.opened_until.isoformat(timespec="seconds") if state.opened_until else ""
            for intent in batch:
                self._note_tried(intent, link, f"skipped: circuit open until {until}")
            logger.warning("%s: circuit open, %d effect(s) skip it", link, len(batch))
            return list(batch)
        batch = [self._prepared(intent, link) for intent in batch]
        onward: list[Intent] = []
        size = max(executor.batch_size, 1)
        for start in range(0, len(batch), size):
            chunk = batch[start : start + size]
            answers = self._attempt(executor, chunk)
            for intent in chunk:
                answer = answers[intent.key]
                if isinstance(answer, Applied):
                    if breaker is not None:
                        breaker.record_success(link, self.rt.clock())
                    self._finish_done(intent, answer.remote_id, link)
                elif self._settle_failure(intent, link, executor, answer):
                    onward.append(intent)
        return onward

    def _prepared(self, intent: Intent, link: str) -> Intent:
        """The intent as `link` applies it: a follow-up carries the remote id its original got
        there (None: not there); a watched message carries what its watch adds (a link)."""
        if intent.follow_up_of is not None:
            original = self.ledger.remote_id_via(intent.follow_up_of, link)
            intent = replace(intent, original_remote_id=original)
        if self.rt.watch is not None:
            intent = self.rt.watch.prepare(intent)
        return intent

    def _attempt(
        self, executor: Executor, chunk: list[Intent]
    ) -> dict[str, Applied | ServiceError]:
        """Apply `chunk`, retrying transient failures unless the adapter retries itself."""
        try:
            answers = executor.apply(chunk)
        except Exception as exc:
            self._record_bug(chunk, exc)
            raise
        if executor.retries_inside:
            return answers
        attempt = 1
        while True:
            retry = [
                intent
                for intent in chunk
                if isinstance(answers[intent.key], ServiceError)
                and self._may_retry(intent, answers[intent.key])  # type: ignore[arg-type]
            ]
            if not retry:
                return answers
            waits = [self.rt.retry.delay(attempt, answers[i.key]) for i in retry]  # type: ignore[arg-type]
            if any(wait is None for wait in waits):
                return answers
            self.rt.sleep(max(w for w in waits if w is not None))
            attempt += 1
            for intent in retry:
                self.ledger.note_attempt(intent.key)
            try:
                answers.update(executor.apply(retry))
            except Exception as exc:
                self._record_bug(retry, exc)
                raise

    def _may_retry(self, intent: Intent, failure: ServiceError) -> bool:
        if not failure.transient:
            return False
        # A send that may have arrived is not repeated where the route promises at most once.
        return not (failure.maybe_applied and intent.route.policy == "at_most_once")

    def _settle_failure(
        self, intent: Intent, link: str, executor: Executor, failure: ServiceError
    ) -> bool:
        """Record what a failure means; True when the next destination should be tried."""
        error = mask_text(str(failure))
        if isinstance(failure, InputRefused):
            # The destination works; the effect itself was refused (bad fields): fix and re-run.
            self._finish_failed(intent, error, transient=False)
            return False
        if failure.maybe_applied:
            if executor.can_look_up:
                try:
                    found = executor.look_up([intent])
                except ServiceError as check:
                    error = f"{error}; checking whether it was applied failed too ({check})"
                    found = {}
                if intent.key in found:
                    self._finish_done(intent, found[intent.key], link, recovered=True)
                else:
                    # Not visible yet, or not applied: the next run's look-up settles it.
                    self._finish_failed(intent, error, transient=True)
                return False
            if intent.route.policy == "at_most_once":
                self._note_tried(intent, link, error)
                self._finish_in_doubt(intent, error)
                return False
        self._note_tried(intent, link, error)
        if self.rt.breaker is not None:
            state = self.rt.breaker.record_failure(link, self.rt.clock())
            if state.is_open(self.rt.clock()) and state.failures == self.rt.breaker.threshold:
                logger.warning(
                    "%s: circuit opened after %d consecutive failures", link, state.failures
                )
        return True

    def _record_bug(self, chunk: list[Intent], exc: Exception) -> None:
        error = mask_text(f"{type(exc).__name__}: {exc}")
        for intent in chunk:
            for key in (intent.key, *intent.companion_keys):
                self.ledger.fail(key, error)

    # ------------------------------------------------------------------ outcomes

    def _note_tried(self, intent: Intent, link: str, error: str) -> None:
        self.tried.setdefault(intent.key, []).append(Attempt(link=link, error=error))

    def _tried_json(self, intent: Intent) -> str | None:
        tried = self.tried.get(intent.key)
        return json.dumps([t.model_dump() for t in tried], ensure_ascii=False) if tried else None

    def _done(
        self, intent: Intent, remote_id: str | None, *, via: str, recovered: bool = False
    ) -> Outcome:
        effect = self.ledger.get(intent.key)
        return _outcome(
            intent,
            "done",
            via=via,
            remote_id=remote_id,
            recovered=recovered,
            tried=self.tried.get(intent.key, []),
            attempts=effect.attempts if effect else 1,
        )

    def _finish_done(
        self, intent: Intent, remote_id: str | None, link: str, *, recovered: bool = False
    ) -> None:
        tried = self._tried_json(intent)
        for key in (intent.key, *intent.companion_keys):
            self.ledger.complete(key, remote_id=remote_id, via=link, tried=tried)
        self.outcomes[intent.key] = self._done(intent, remote_id, via=link, recovered=recovered)
        if self.rt.watch is not None:
            self.rt.watch.delivered(intent, link)

    def _finish_failed(self, intent: Intent, error: str, *, transient: bool) -> None:
        self._finish_unsettled(intent, "failed", error, transient=transient)

    def _finish_in_doubt(self, intent: Intent, error: str) -> None:
        self._finish_unsettled(intent, "in_doubt", error)

    def _finish_dead(self, intent: Intent) -> None:
        tried = self.tried.get(intent.key, [])
        error = "; ".join(f"{t.link}: {t.error}" for t in tried) or "no destination took it"
        logger.error("%s is dead: every destination failed (%s)", intent.key, mask_text(error))
        self._finish_unsettled(intent, "dead", error)
        if self.rt.watch is not None:
            self.rt.watch.undelivered(intent)

    def _finish_unsettled(
        self, intent: Intent, status: str, error: str, *, transient: bool = False
    ) -> None:
        """Record the effect (and its companions) failed, in doubt or dead; dead and in-doubt
        ones are announced to ops, each key once."""
        tried = self._tried_json(intent)
        flags = {"dead": status == "dead", "in_doubt": status == "in_doubt"}
        for companion in intent.companion_keys:
            self.ledger.fail(companion, error, tried=tried, **flags)
        effect = self.ledger.fail(intent.key, error, tried=tried, **flags)
        outcome = _outcome(
            intent,
            status,
            error=effect.error,
            transient=transient,
            tried=self.tried.get(intent.key, []),
            attempts=effect.attempts,
        )
        self.outcomes[intent.key] = outcome
        if status != "failed" and self.ledger.mark_announced(intent.key):
            self.to_announce.append((intent, outcome))


def _outcome(intent: Intent, status: str, **details: object) -> Outcome:
    return Outcome(
        key=intent.key,
        kind=intent.kind,
        target=intent.target,
        status=status,  # type: ignore[arg-type]
        label=intent.label,
        **details,  # type: ignore[arg-type]
    )


def recorded_outcome(intent: Intent, effect: Effect) -> Outcome:
    """The outcome of an intent this run did not perform, from the ledger's row."""
    tried = [Attempt(**item) for item in json.loads(effect.tried)] if effect.tried else []
    common = {"attempts": effect.attempts, "remote_id": effect.remote_id, "tried": tried}
    if effect.status == EffectStatus.DONE:
        return _outcome(intent, "already_done", via=effect.via, **common)
    if effect.status == EffectStatus.PENDING:
        return _outcome(
            intent,
            "held",
            held_by=effect.flow_run_id or effect.holder,
            error="another run is performing it",
            transient=True,
            **common,
        )
    if effect.status == EffectStatus.IN_DOUBT:
        return _outcome(intent, "in_doubt", error=effect.error, **common)
    if effect.status == EffectStatus.QUEUED:
        return _outcome(intent, "queued", **common)
    return _outcome(intent, "dead", error=effect.error, **common)

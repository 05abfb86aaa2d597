"""Service-health decisions: check results + stored states -> transitions and states (no I/O)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from moltbot.config.monitoring import ServiceCheck
from moltbot.state.service_health import HealthState, ServiceHealth

Severity = Literal["down", "degraded", "recovered"]
SEVERITIES: tuple[Severity, ...] = ("down", "degraded", "recovered")
"""The messages of one run: services that went DOWN, that became slow, that are back."""

Outcome = Literal["ok", "slow", "failed"]


class Check(Protocol):
    """What one check found (`tasks.http_checks.CheckResult` has this shape)."""

    @property
    def service(self) -> str: ...
    @property
    def ok(self) -> bool: ...
    @property
    def status_code(self) -> int | None: ...
    @property
    def latency_ms(self) -> float | None: ...
    @property
    def reason(self) -> str | None: ...


@dataclass(frozen=True)
class Transition:
    """A state change worth a message.

    Attributes:
        service: the service's name.
        severity: the message it goes in.
        before: the stored state (UNKNOWN for a service never stored).
        after: the new state.
        previous_since: when the stored state began (None for a service never stored): the
            start of the episode the change ends, the same on every re-run until the new state
            is saved, so it goes into the idempotency key.
        status_code: the status of this check's answer, if any.
        latency_ms: this check's latency, if it was answered.
        threshold_ms: the service's DEGRADED threshold, if it has one.
        reason: why this check failed (None when it did not).
        failures: consecutive failed checks, this one included.
        down_since: the first failed check of the streak (DOWN), or of the one that ended
            (a recovery from DOWN).
        lasted_seconds: a recovery: how long the service was down (from its first failed
            check) or slow.
        timeout_seconds: the service's time allowed for a check.
    """

    service: str
    severity: Severity
    before: HealthState
    after: HealthState
    previous_since: datetime | None
    status_code: int | None
    latency_ms: float | None
    threshold_ms: float | None
    reason: str | None
    failures: int
    down_since: datetime | None
    lasted_seconds: float | None
    timeout_seconds: float


@dataclass(frozen=True)
class StatusRow:
    """One line of the status table: where a service stands after this run's check."""

    service: str
    state: HealthState
    status_code: int | None
    latency_ms: float | None
    since: datetime
    reason: str | None
    failures: int


@dataclass(frozen=True)
class HealthPlan:
    """What one run decided, before anything is sent or saved.

    Attributes:
        alerts: per severity with news, its transitions in service order.
        writes: the states to save, each with the severity whose message must be delivered
            before it is saved (None: saved in any case, e.g. one more failure in a streak).
        rows: every checked service's line of the status table, in check order.
    """

    alerts: dict[Severity, list[Transition]]
    writes: list[tuple[ServiceHealth, Severity | None]]
    rows: list[StatusRow]

    def counts(self) -> dict[str, int]:
        """How many checked services are in each state."""
        counts = {"UP": 0, "DEGRADED": 0, "DOWN": 0, "UNKNOWN": 0}
        for row in self.rows:
            counts[row.state] += 1
        return counts


def classify(check: Check, spec: ServiceCheck) -> Outcome:
    """`failed`, `slow` (a healthy answer above the latency threshold) or `ok`."""
    if not check.ok:
        return "failed"
    threshold = spec.latency_ms
    if threshold is not None and check.latency_ms is not None and check.latency_ms > threshold:
        return "slow"
    return "ok"


def plan_health(
    checks: Sequence[Check],
    previous: Mapping[str, ServiceHealth],
    services: Mapping[str, ServiceCheck],
    *,
    now: datetime,
) -> HealthPlan:
    """Compare this run's checks with the stored states: transitions, states to save, table.

    - A failed check adds to the service's failure streak; at `failures_to_down` in a row it
      goes DOWN (once: more failures say nothing). Fewer failures keep its state.
    - A healthy answer ends the streak: UP, or DEGRADED when slower than `latency_ms`.
      DOWN -> UP/DEGRADED and DEGRADED -> UP are `recovered` (with how long it lasted),
      UP/UNKNOWN -> DEGRADED is `degraded`; UNKNOWN -> UP is saved without a message.
    - A service whose state, streak and start time do not change is not written.

    Args:
        checks: this run's results, one per service of `services`.
        previous: the stored states by service (services no longer configured are ignored).
        services: how each service is checked (its K and latency threshold).
        now: the moment of this run (tz-aware): the `since` of every change.
    """
    alerts: dict[Severity, list[Transition]] = {}
    writes: list[tuple[ServiceHealth, Severity | None]] = []
    rows: list[StatusRow] = []
    for check in checks:
        spec = services[check.service]
        stored = previous.get(check.service)
        decided = _decide(check, spec, stored, now=now)
        new, severity = decided
        if severity is not None:
            alerts.setdefault(severity, []).append(
                _transition(check, spec, stored, new, severity, now=now)
            )
        if new != stored:
            writes.append((new, severity))
        rows.append(
            StatusRow(
                service=check.service,
                state=new.state,
                status_code=check.status_code,
                latency_ms=check.latency_ms,
                since=new.since,
                reason=check.reason,
                failures=new.failures,
            )
        )
    ordered = {severity: alerts[severity] for severity in SEVERITIES if severity in alerts}
    return HealthPlan(alerts=ordered, writes=writes, rows=rows)


def _decide(
    check: Check, spec: ServiceCheck, stored: ServiceHealth | None, *, now: datetime
) -> tuple[ServiceHealth, Severity | None]:
    """The service's new stored state and the message its change goes in (None: silent)."""
    before: HealthState = stored.state if stored is not None else "UNKNOWN"
    since = stored.since if stored is not None else now
    outcome = classify(check, spec)
    if outcome == "failed":
        failures = (stored.failures if stored is not None else 0) + 1
        down_since = (stored.down_since if stored is not None else None) or now
        if before == "DOWN":
            kept = stored.alert_key if stored is not None else None
            return ServiceHealth(check.service, "DOWN", since, failures, down_since, kept), None
        if failures >= spec.failures_to_down:
            return ServiceHealth(check.service, "DOWN", now, failures, down_since), "down"
        return ServiceHealth(check.service, before, since, failures, down_since), None
    after: HealthState = "DEGRADED" if outcome == "slow" else "UP"
    if after == before:
        kept = stored.alert_key if stored is not None else None
        return ServiceHealth(check.service, after, since, 0, None, kept), None
    changed = ServiceHealth(check.service, after, now, 0, None)
    if before in ("DOWN", "DEGRADED"):
        return changed, "recovered"
    return changed, "degraded" if after == "DEGRADED" else None


def _transition(
    check: Check,
    spec: ServiceCheck,
    stored: ServiceHealth | None,
    new: ServiceHealth,
    severity: Severity,
    *,
    now: datetime,
) -> Transition:
    before: HealthState = stored.state if stored is not None else "UNKNOWN"
    lasted: float | None = None
    down_since = new.down_since
    if severity == "recovered" and stored is not None:
        down_since = stored.down_since if before == "DOWN" else None
        began = down_since or stored.since
        lasted = (now - began).total_seconds()
    return Transition(
        service=check.service,
        severity=severity,
        before=before,
        after=new.state,
        previous_since=stored.since if stored is not None else None,
        status_code=check.status_code,
        latency_ms=check.latency_ms,
        threshold_ms=spec.latency_ms,
        reason=check.reason,
        failures=new.failures,
        down_since=down_since,
        lasted_seconds=lasted,
        timeout_seconds=spec.timeout_seconds,
    )


def alert_digest(severity: Severity, transitions: Sequence[Transition]) -> str:
    """A digest of one severity's alert, the same on every re-run until the states are saved.

    Each change is (service, before, after, start of the episode it ends): a re-run after a
    failed delivery reads the same stored states and rebuilds the same lines; a later change of
    the same service starts from a newer stored `since`.
    """
    lines = sorted(
        "\t".join(
            (
                item.service,
                item.before,
                item.after,
                item.previous_since.isoformat() if item.previous_since else "",
            )
        )
        for item in transitions
    )
    text = severity + "\n" + "\n".join(lines)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]

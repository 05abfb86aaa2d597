"""What changed since the last health run: each check's status against the stored one."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from moltbot.doctor import STATUSES, Check, Status
from moltbot.state.service_health import HealthState, ServiceHealth

# Each check is kept as one row of the service-health store: ok, warn and fail are its UP,
# DEGRADED and DOWN, `since` when it entered that status.
STATE_OF: dict[Status, HealthState] = {"ok": "UP", "warn": "DEGRADED", "fail": "DOWN"}
STATUS_OF: dict[str, Status] = {state: status for status, state in STATE_OF.items()}


@dataclass(frozen=True)
class Change:
    """One check whose status is not the stored one.

    Attributes:
        name: the check's name.
        before: its stored status (`ok` for a check never stored: news only when it is not ok).
        after: its status now (`ok` for a stored check no longer made, e.g. a deleted block).
        detail: its finding now, in the locale (empty for a check no longer made).
        action: what to do now, if anything.
        before_since: when it entered `before` (None when never stored): keys two changes of
            the same check apart.
    """

    name: str
    before: Status
    after: Status
    detail: str
    action: str | None
    before_since: datetime | None


@dataclass(frozen=True)
class HealthPlan:
    """The changes to announce and the states to save once they are delivered."""

    changes: tuple[Change, ...]
    writes: tuple[ServiceHealth, ...]

    def key_digest(self) -> str:
        """16 hex digits naming this set of changes: the same changes from the same stored
        states (a re-run after a crash) give the same digest, a later change another one."""
        items = sorted(
            (c.name, c.before, c.after, c.before_since.isoformat() if c.before_since else None)
            for c in self.changes
        )
        return hashlib.sha256(json.dumps(items).encode()).hexdigest()[:16]


def plan_changes(
    checks: Sequence[Check], previous: Mapping[str, ServiceHealth], *, now: datetime
) -> HealthPlan:
    """Compare `checks` with the stored statuses (`previous`, by check name).

    A check never stored counts as having been ok, so a first run announces only what is not
    ok; a stored check no longer made counts as ok now. Only changed checks are written.
    """
    changes: list[Change] = []
    writes: list[ServiceHealth] = []
    made = {check.name for check in checks}
    for check in checks:
        stored = previous.get(check.name)
        before = STATUS_OF.get(stored.state, "ok") if stored else "ok"
        if before == check.status:
            continue
        changes.append(
            Change(check.name, before, check.status, check.detail, check.action,
                   stored.since if stored else None)
        )  # fmt: skip
        writes.append(_state(check.name, check.status, now))
    for name, stored in sorted(previous.items()):
        if name not in made and STATUS_OF.get(stored.state, "ok") != "ok":
            changes.append(Change(name, STATUS_OF[stored.state], "ok", "", None, stored.since))
            writes.append(_state(name, "ok", now))
    return HealthPlan(tuple(changes), tuple(writes))


def _state(name: str, status: Status, now: datetime) -> ServiceHealth:
    return ServiceHealth(
        service=name, state=STATE_OF[status], since=now, failures=int(status == "fail")
    )


def counts(checks: Sequence[Check]) -> dict[str, int]:
    """How many checks have each status, every status present."""
    return {status: sum(1 for check in checks if check.status == status) for status in STATUSES}

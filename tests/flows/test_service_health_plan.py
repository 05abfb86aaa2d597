"""Service-health decisions on small hand-checked sequences of checks (no I/O)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from flows.service_health.plan import (
    HealthPlan,
    alert_digest,
    classify,
    plan_health,
)
from moltbot.config.monitoring import ServiceCheck
from moltbot.state.service_health import ServiceHealth

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
SPEC = ServiceCheck(url="http://127.0.0.1/api", latency_ms=200)


@dataclass(frozen=True)
class Check:
    service: str
    ok: bool
    status_code: int | None
    latency_ms: float | None
    reason: str | None = None


OK = Check("api", True, 200, 50.0)
SLOW = Check("api", True, 200, 400.0)
FAIL = Check("api", False, 503, 12.0, "status")


def run_sequence(checks: list[Check], spec: ServiceCheck = SPEC) -> list[HealthPlan]:
    """One run a minute; every state is saved after the run, as when delivery succeeds."""
    stored: dict[str, ServiceHealth] = {}
    plans = []
    for minute, check in enumerate(checks):
        plan = plan_health([check], stored, {"api": spec}, now=T0 + minute * MINUTE)
        for state, _ in plan.writes:
            stored[state.service] = state
        plans.append(plan)
    return plans


def news(plans: list[HealthPlan]) -> list[list[tuple[str, str, str]]]:
    """Per run: (severity, from, to) of every change alerted."""
    return [
        [(t.severity, t.before, t.after) for items in plan.alerts.values() for t in items]
        for plan in plans
    ]


@pytest.mark.parametrize(
    ("checks", "expected"),
    [
        # 1st and 2nd failures say nothing; the 3rd is DOWN, once; more failures say nothing.
        (
            [OK, FAIL, FAIL, FAIL, FAIL, FAIL],
            [[], [], [], [("down", "UP", "DOWN")], [], []],
        ),
        # Back: one recovery, then silence.
        (
            [OK, FAIL, FAIL, FAIL, OK, OK],
            [[], [], [], [("down", "UP", "DOWN")], [("recovered", "DOWN", "UP")], []],
        ),
        # Slow, still slow, fast again.
        (
            [OK, SLOW, SLOW, OK],
            [[], [("degraded", "UP", "DEGRADED")], [], [("recovered", "DEGRADED", "UP")]],
        ),
        # A first check that is slow alerts; one that is fine does not.
        ([SLOW], [[("degraded", "UNKNOWN", "DEGRADED")]]),
        ([OK], [[]]),
        # A new service failing: DOWN at its 3rd failure too.
        ([FAIL, FAIL, FAIL], [[], [], [("down", "UNKNOWN", "DOWN")]]),
        # Flapping under K: each success ends the streak, so nothing is ever said.
        ([OK, FAIL, FAIL, OK, FAIL, FAIL, OK, FAIL], [[], [], [], [], [], [], [], []]),
        # Down, back (slow), fast again.
        (
            [FAIL, FAIL, FAIL, SLOW, OK],
            [
                [],
                [],
                [("down", "UNKNOWN", "DOWN")],
                [("recovered", "DOWN", "DEGRADED")],
                [("recovered", "DEGRADED", "UP")],
            ],
        ),
        # A slow service that fails K times goes DOWN from DEGRADED.
        (
            [SLOW, FAIL, FAIL, FAIL],
            [[("degraded", "UNKNOWN", "DEGRADED")], [], [], [("down", "DEGRADED", "DOWN")]],
        ),
        # Down, back, down again: each episode alerts once.
        (
            [FAIL, FAIL, FAIL, OK, FAIL, FAIL, FAIL],
            [
                [],
                [],
                [("down", "UNKNOWN", "DOWN")],
                [("recovered", "DOWN", "UP")],
                [],
                [],
                [("down", "UP", "DOWN")],
            ],
        ),
    ],
    ids=[
        "down-at-third-failure",
        "recovery",
        "degraded-and-back",
        "first-check-slow",
        "first-check-fine",
        "new-service-down",
        "flapping",
        "down-slow-fast",
        "degraded-then-down",
        "two-episodes",
    ],
)
def test_transitions(checks: list[Check], expected: list[list[tuple[str, str, str]]]) -> None:
    assert news(run_sequence(checks)) == expected


def test_failures_to_down_is_per_service() -> None:
    plans = run_sequence([FAIL], ServiceCheck(url="http://x/", failures_to_down=1))

    assert news(plans) == [[("down", "UNKNOWN", "DOWN")]]


def test_recovery_says_how_long_from_the_first_failed_check() -> None:
    # Failures at minutes 1, 2, 3 (DOWN at 3), back at minute 10: down for 9 minutes.
    plans = run_sequence([OK, FAIL, FAIL, FAIL, *[FAIL] * 6, OK])

    [recovery] = plans[-1].alerts["recovered"]
    assert recovery.lasted_seconds == 9 * 60
    assert recovery.down_since == T0 + MINUTE
    [down] = plans[3].alerts["down"]
    assert (down.failures, down.down_since, down.reason, down.status_code) == (
        3,
        T0 + MINUTE,
        "status",
        503,
    )


def test_degraded_recovery_says_how_long_it_was_slow() -> None:
    plans = run_sequence([OK, SLOW, SLOW, SLOW, OK])

    [recovery] = plans[-1].alerts["recovered"]
    assert recovery.lasted_seconds == 3 * 60
    assert recovery.down_since is None


def test_nothing_is_written_while_nothing_changes() -> None:
    plans = run_sequence([OK, OK, OK])

    assert [len(plan.writes) for plan in plans] == [1, 0, 0]


def test_silent_failure_counts_are_written_without_a_severity() -> None:
    first, second, third = run_sequence([FAIL, FAIL, FAIL])

    assert [(s.state, s.failures, sev) for s, sev in first.writes] == [("UNKNOWN", 1, None)]
    assert [(s.state, s.failures, sev) for s, sev in second.writes] == [("UNKNOWN", 2, None)]
    assert [(s.state, s.failures, sev) for s, sev in third.writes] == [("DOWN", 3, "down")]


def test_an_unsaved_down_is_found_again_with_the_same_key() -> None:
    """A failed delivery keeps the old state: the next run rebuilds the same digest."""
    stored = {"api": ServiceHealth("api", "UP", T0, failures=2, down_since=T0 + MINUTE)}
    services = {"api": SPEC}

    first = plan_health([FAIL], stored, services, now=T0 + 3 * MINUTE)
    retried = plan_health([FAIL], stored, services, now=T0 + 4 * MINUTE)

    assert alert_digest("down", first.alerts["down"]) == alert_digest(
        "down", retried.alerts["down"]
    )
    later = {"api": ServiceHealth("api", "UP", T0 + 9 * MINUTE, failures=2)}
    other = plan_health([FAIL], later, services, now=T0 + 12 * MINUTE)
    assert alert_digest("down", other.alerts["down"]) != alert_digest("down", first.alerts["down"])


def test_several_services_share_one_message_per_severity_and_rows_keep_check_order() -> None:
    services = {name: SPEC for name in ("web", "api", "db")}
    stored = {
        "web": ServiceHealth("web", "UP", T0, failures=2, down_since=T0),
        "api": ServiceHealth("api", "UP", T0, failures=2, down_since=T0),
        "db": ServiceHealth("db", "DOWN", T0, failures=5, down_since=T0),
    }
    checks = [
        Check("web", False, None, None, "timeout"),
        Check("api", False, None, None, "refused"),
        Check("db", True, 200, 10.0),
    ]

    plan = plan_health(checks, stored, services, now=T0 + 5 * MINUTE)

    assert [t.service for t in plan.alerts["down"]] == ["web", "api"]
    assert [t.service for t in plan.alerts["recovered"]] == ["db"]
    assert list(plan.alerts) == ["down", "recovered"]
    assert [(row.service, row.state, row.reason) for row in plan.rows] == [
        ("web", "DOWN", "timeout"),
        ("api", "DOWN", "refused"),
        ("db", "UP", None),
    ]
    assert plan.counts() == {"UP": 1, "DEGRADED": 0, "DOWN": 2, "UNKNOWN": 0}


@pytest.mark.parametrize(
    ("check", "threshold", "expected"),
    [
        (Check("api", True, 200, 200.0), 200, "ok"),  # at the threshold is not above it
        (Check("api", True, 200, 200.1), 200, "slow"),
        (Check("api", True, 200, 5000.0), None, "ok"),  # no threshold, never slow
        (Check("api", False, None, None, "timeout"), 200, "failed"),
    ],
)
def test_classify(check: Check, threshold: float | None, expected: str) -> None:
    assert classify(check, ServiceCheck(url="http://x/", latency_ms=threshold)) == expected

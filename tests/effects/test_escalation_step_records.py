"""Where a performed escalation step goes, as a plain function (no ledger, no Prefect)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from moltbot.effects.escalation import StepRecord, record_of_step
from moltbot.state.escalations import Escalation, EscalationStatus

NOW = datetime(2026, 12, 4, 3, 0, tzinfo=UTC)


def escalation(route: tuple[str, ...] = ("slack", "email", "sms"), step: int = 0) -> Escalation:
    return Escalation(
        key="inventory-alert:out:sku-1",
        token_id="t1",
        automation="inventory-alert",
        route=route,
        status=EscalationStatus.OPEN,
        step=step,
        next_at=NOW,
        expires_at=NOW + timedelta(hours=24),
        payload="{}",
        steps=(),
    )


@pytest.mark.parametrize("status", ["done", "already_done"])
def test_a_step_delivered_before_the_last_link_sets_the_next_one_after_the_minutes(
    status: str,
) -> None:
    record = record_of_step(escalation(), status, "email", after=15, now=NOW)
    assert record == StepRecord(1, "email", status, NOW + timedelta(minutes=15))


def test_a_step_delivered_on_the_last_link_ends_the_route() -> None:
    assert record_of_step(escalation(), "done", "sms", after=15, now=NOW) == StepRecord(
        2, "sms", "done", None
    )


def test_a_dead_step_ends_the_escalation_without_a_link() -> None:
    assert record_of_step(escalation(), "dead", None, after=15, now=NOW) == StepRecord(
        None, None, "dead", None
    )


@pytest.mark.parametrize(
    ("status", "via"),
    [("failed", None), ("in_doubt", "email"), ("done", "pager"), ("queued", "email")],
)
def test_a_step_not_settled_on_a_link_of_the_route_is_left_for_the_next_run(
    status: str, via: str | None
) -> None:
    assert record_of_step(escalation(), status, via, after=15, now=NOW) is None

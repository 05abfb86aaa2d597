"""Tests of the dispatcher against the test Prefect API with real deployments: exactly-once runs."""

from __future__ import annotations

import logging
import socket
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.deployments import run_deployment
from prefect.events.filters import EventFilter, EventIDFilter, EventOccurredFilter
from prefect.settings import PREFECT_API_URL
from prefect.settings.context import temporary_settings

from moltbot.state.audit import AuditTrail
from moltbot.state.inbox import Inbox, InboxStatus
from moltbot.state.ledger import Ledger
from moltbot.webhooks.config import DeploymentTarget, EventTarget, GatewayConfig
from moltbot.webhooks.dispatcher import (
    RUN_TAGS,
    DispatchCounts,
    Dispatcher,
    batch_idempotency_key,
    idempotency_key,
    prefect_event_id,
)
from tests.moltbot.dispatching import passes_at_once

T0 = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)


@flow(name="webhook-test-sink")
def sink(events: list[dict[str, Any]], mapping: str = "events") -> int:
    """Stands in for ticket-creation: same parameter names and types."""
    return len(events)


class Clock:
    """A settable UTC clock."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def event(event_id: str, event_type: str = "payment.failed") -> dict[str, Any]:
    return {
        "id": event_id,
        "type": event_type,
        "occurred_at": "2026-11-24T06:00:00+00:00",
        "payload": {"object": {"customer": "김민수", "memo": "카드 한도 초과 — 결제 실패"}},
    }


@pytest.fixture
def inbox(tmp_path: Path) -> Iterator[Inbox]:
    with Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite3'}") as ledger:
        yield Inbox(ledger)


@pytest.fixture
def deployment(prefect_api: str) -> str:
    """A fresh deployment of the sink flow; its `flow/deployment` name."""
    name = f"d-{uuid.uuid4().hex[:10]}"
    sink.to_deployment(name=name).apply()
    return f"webhook-test-sink/{name}"


def config_for(deployment: str, **extra: Any) -> GatewayConfig:
    route = {"deployment": deployment, "parameters": {"events": ["{{ event }}"]}}
    return GatewayConfig.from_table({"routes": {"payment.failed": [route]}, **extra})


def runs_of(deployment: str) -> list[Any]:
    with get_client(sync_client=True) as client:
        found = client.read_deployment_by_name(deployment)
        return client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[found.id]))
        )


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/api"


def test_pending_entries_become_one_run_each_with_the_event_in_korean(
    inbox: Inbox, deployment: str
) -> None:
    entries = [inbox.accept("stripe", event(f"evt_{i}"), received_at=T0)[0] for i in range(3)]
    dispatcher = Dispatcher(inbox, config_for(deployment))

    counts = dispatcher.dispatch_pending()

    assert counts == DispatchCounts(dispatched=3)
    runs = {str(run.id): run for run in runs_of(deployment)}
    assert len(runs) == 3
    for sent in entries:
        entry = inbox.get(sent.id)
        assert entry.status == InboxStatus.DISPATCHED
        assert entry.attempts == 1
        assert entry.results == [{"target": f"deployment {deployment}", "id": entry.flow_run_id}]
        run = runs[entry.flow_run_id]
        assert run.parameters == {"events": [sent.event]}
        assert (
            run.parameters["events"][0]["payload"]["object"]["memo"] == "카드 한도 초과 — 결제 실패"
        )
        assert run.idempotency_key == f"{entry.id}:{deployment}"
        assert {*RUN_TAGS, "webhook", "webhook:stripe"} <= set(run.tags)
    # Nothing is due any more: a second pass creates nothing.
    assert dispatcher.dispatch_pending() == DispatchCounts()
    assert len(runs_of(deployment)) == 3
    audited = AuditTrail(inbox).rows()
    assert [(row.actor, row.action, row.outcome) for row in audited] == [
        ("webhook:stripe", "webhook", "dispatched")
    ] * 3
    assert {row.target for row in audited} == {
        f"inbox entry {sent.id} (payment.failed) -> flow run {inbox.get(sent.id).flow_run_id}"
        for sent in entries
    }


def test_two_concurrent_passes_create_each_run_exactly_once(inbox: Inbox, deployment: str) -> None:
    for i in range(12):
        inbox.accept("stripe", event(f"evt_{i}"), received_at=T0)
    dispatcher = Dispatcher(inbox, config_for(deployment))
    other = Dispatcher(inbox, config_for(deployment))
    results = passes_at_once([dispatcher, other])

    assert sum(counts.dispatched for counts in results) == 12
    assert inbox.counts()["dispatched"] == 12
    assert all(entry.attempts == 1 for entry in inbox.entries())
    runs = runs_of(deployment)
    assert len(runs) == 12
    assert {str(run.id) for run in runs} == {entry.flow_run_id for entry in inbox.entries()}


def test_a_run_created_before_a_crash_is_found_again_not_duplicated(
    inbox: Inbox, deployment: str
) -> None:
    entry, _ = inbox.accept("stripe", event("evt_1"), received_at=T0)
    config = config_for(deployment)
    clock = Clock(T0)
    dispatcher = Dispatcher(inbox, config, clock=clock)
    # The crashed dispatcher claimed the entry and created the run, then died before marking it.
    inbox.claim(entry, now=T0, lease=dispatcher.lease)
    [target] = config.targets_for("payment.failed")
    created = run_deployment(
        deployment,
        parameters=target.render_parameters(entry.event, "stripe"),
        idempotency_key=idempotency_key(entry.id, target),
        timeout=0,
        as_subflow=False,
    )

    # Within its lease nobody touches it; after, the next dispatcher takes it over.
    assert dispatcher.dispatch_pending() == DispatchCounts()
    clock.now = T0 + dispatcher.lease
    assert dispatcher.dispatch_pending() == DispatchCounts(dispatched=1)

    done = inbox.get(entry.id)
    assert (done.status, done.attempts) == (InboxStatus.DISPATCHED, 2)
    assert done.flow_run_id == str(created.id)
    assert [str(run.id) for run in runs_of(deployment)] == [str(created.id)]


@pytest.mark.slow
def test_with_the_api_unreachable_entries_stay_pending_and_back_off_then_dispatch(
    inbox: Inbox, deployment: str
) -> None:
    first, _ = inbox.accept("stripe", event("evt_1"), received_at=T0)
    second, _ = inbox.accept("stripe", event("evt_2"), received_at=T0 + timedelta(seconds=1))
    clock = Clock(T0 + timedelta(seconds=1))
    dispatcher = Dispatcher(inbox, config_for(deployment), clock=clock)

    with temporary_settings(updates={PREFECT_API_URL: closed_port_url()}):
        assert dispatcher.dispatch_pending() == DispatchCounts(retrying=1)
        once = inbox.get(first.id)
        clock.now += timedelta(seconds=1)
        assert dispatcher.dispatch_pending() == DispatchCounts(retrying=1)
        twice = inbox.get(first.id)

    assert (once.status, once.attempts) == (InboxStatus.PENDING, 1)
    assert once.next_attempt_at == T0 + timedelta(seconds=2)
    assert once.error == (f"deployment {deployment}: Prefect API unreachable (ConnectError)")
    assert (twice.status, twice.attempts) == (InboxStatus.PENDING, 2)
    assert twice.next_attempt_at == T0 + timedelta(seconds=4)
    # Each pass stopped at the first failure: the second entry waited, untouched.
    assert inbox.get(second.id).attempts == 0
    assert runs_of(deployment) == []

    # The API is back: once due, both are dispatched, each exactly once.
    clock.now = T0 + timedelta(seconds=4)
    assert dispatcher.dispatch_pending() == DispatchCounts(dispatched=2)
    assert len(runs_of(deployment)) == 2
    assert inbox.get(first.id).error is None
    assert (inbox.get(first.id).attempts, inbox.get(second.id).attempts) == (3, 1)


def test_backoff_doubles_from_one_second_to_thirty(inbox: Inbox) -> None:
    dispatcher = Dispatcher(inbox, GatewayConfig.from_table(None))

    waits = [dispatcher.backoff(attempts).total_seconds() for attempts in range(1, 8)]

    assert waits == [1, 2, 4, 8, 16, 30, 30]


def test_an_unknown_deployment_fails_the_entry_after_eight_attempts(
    inbox: Inbox, prefect_api: str, caplog: pytest.LogCaptureFixture
) -> None:
    entry, _ = inbox.accept("stripe", event("evt_1"), received_at=T0)
    clock = Clock(T0)
    dispatcher = Dispatcher(inbox, config_for("ticket-creation/nope"), clock=clock)

    outcomes = []
    with caplog.at_level(logging.ERROR, logger="moltbot.webhooks"):
        for _ in range(8):
            outcomes.append(dispatcher.dispatch_pending())
            clock.now += timedelta(seconds=30)

    assert outcomes == [DispatchCounts(retrying=1)] * 7 + [DispatchCounts(failed=1)]
    failed = inbox.get(entry.id)
    assert (failed.status, failed.attempts, failed.next_attempt_at) == (InboxStatus.FAILED, 8, None)
    assert failed.error == "deployment ticket-creation/nope: not found in the Prefect API"
    assert "failed after 8 attempts" in caplog.text
    assert "김민수" not in caplog.text
    assert dispatcher.dispatch_pending() == DispatchCounts()


def test_parameters_the_flow_refuses_fail_the_entry_with_a_masked_reason(
    inbox: Inbox, deployment: str
) -> None:
    route = {"deployment": deployment, "parameters": {"events": "{{ event.payload }}"}}
    config = GatewayConfig.from_table({"routes": {"payment.failed": route}})
    entry, _ = inbox.accept("stripe", event("evt_1"), received_at=T0)
    dispatcher = Dispatcher(inbox, config, max_attempts=1)

    assert dispatcher.dispatch_pending() == DispatchCounts(failed=1)

    failed = inbox.get(entry.id)
    assert failed.error.startswith(f"deployment {deployment}: the Prefect API refused it (409)")
    assert runs_of(deployment) == []


@pytest.mark.slow
def test_an_event_target_posts_a_prefect_event_with_a_stable_id(
    inbox: Inbox, deployment: str
) -> None:
    config = GatewayConfig.from_table(
        {
            "routes": {
                "payment.failed": [
                    {"deployment": deployment, "parameters": {"events": ["{{ event }}"]}},
                    {"event": "moltbot.alert.{type}"},
                ]
            }
        }
    )
    entry, _ = inbox.accept("stripe", event("evt_1"), received_at=T0)

    assert Dispatcher(inbox, config).dispatch_pending() == DispatchCounts(dispatched=1)

    done = inbox.get(entry.id)
    alert = EventTarget(event="moltbot.alert.{type}")
    [run] = runs_of(deployment)
    assert done.flow_run_id == str(run.id)
    assert done.results == [
        {"target": f"deployment {deployment}", "id": str(run.id)},
        {"target": "event moltbot.alert.{type}", "id": str(prefect_event_id(entry.id, alert))},
    ]
    stored = stored_event(prefect_event_id(entry.id, alert))
    assert stored.event == "moltbot.alert.payment.failed"
    assert stored.resource.id == "moltbot.webhook.stripe.evt_1"
    assert stored.payload == entry.event


def stored_event(event_id: uuid.UUID) -> Any:
    """The event with this id, read back from the API (the server stores events shortly after)."""
    window = EventOccurredFilter(since=T0 - timedelta(days=1), until=T0 + timedelta(days=1))
    query = EventFilter(id=EventIDFilter(id=[event_id]), occurred=window)
    deadline = time.monotonic() + 10
    with get_client(sync_client=True) as client:
        while True:
            page = client.read_events(filter=query, limit=10)
            if page.events or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    [found] = page.events
    return found


def test_a_type_without_targets_at_dispatch_time_is_ignored(inbox: Inbox) -> None:
    entry, _ = inbox.accept("stripe", event("evt_1", "customer.created"), received_at=T0)
    dispatcher = Dispatcher(inbox, GatewayConfig.from_table({"default": "ignore"}))

    assert dispatcher.dispatch_pending() == DispatchCounts(ignored=1)
    assert inbox.get(entry.id).status == InboxStatus.IGNORED


def test_the_idempotency_key_names_the_entry_and_the_deployment() -> None:
    target = DeploymentTarget(deployment="ticket-creation/default")

    assert idempotency_key("0b6c…", target) == "0b6c…:ticket-creation/default"
    assert (
        batch_idempotency_key("5f1e…", "payment-failures/default")
        == "batch-5f1e…:payment-failures/default"
    )


def crash(run_id: str) -> None:
    """Mark a run Crashed, as the crashed-run detector does when its process died."""
    from prefect.states import Crashed

    with get_client(sync_client=True) as client:
        client.set_flow_run_state(uuid.UUID(run_id), Crashed(message="no heartbeat"), force=True)


def test_an_entry_whose_run_crashed_is_dispatched_again_then_given_up(
    inbox: Inbox, deployment: str
) -> None:
    sent, _ = inbox.accept("stripe", event("evt_crash"), received_at=T0)
    dispatcher = Dispatcher(inbox, config_for(deployment), max_redispatches=2)
    dispatcher.dispatch_pending()
    first = inbox.get(sent.id).flow_run_id

    assert dispatcher.redispatch_crashed() == (0, 0)  # nothing crashed yet
    crash(first)
    assert dispatcher.redispatch_crashed() == (1, 0)
    assert inbox.get(sent.id).status == InboxStatus.PENDING
    assert dispatcher.dispatch_pending() == DispatchCounts(dispatched=1)
    second = inbox.get(sent.id)

    assert second.flow_run_id != first
    assert second.crashed_runs == [first]
    runs = {str(run.id): run for run in runs_of(deployment)}
    assert runs[second.flow_run_id].idempotency_key == f"{sent.id}:{deployment}:redispatch-1"
    assert dispatcher.redispatch_crashed() == (0, 0)  # its new run is fine

    crash(second.flow_run_id)
    assert dispatcher.redispatch_crashed() == (1, 0)
    dispatcher.dispatch_pending()
    crash(inbox.get(sent.id).flow_run_id)
    assert dispatcher.redispatch_crashed() == (0, 1)
    given_up = inbox.get(sent.id)
    assert given_up.status == InboxStatus.FAILED and "crashed 3 times" in given_up.error
    assert len(runs_of(deployment)) == 3

"""Tests of coalesced dispatch: one flow run per batch of inbox entries, exactly once, against
the test Prefect API with real deployments; the inbox on SQLite and on PostgreSQL."""

from __future__ import annotations

import socket
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.client.schemas.objects import StateType
from prefect.settings import PREFECT_API_URL
from prefect.settings.context import temporary_settings
from prefect.states import Completed, Crashed, Failed

from moltbot.errors import InputError
from moltbot.state.audit import AuditTrail
from moltbot.state.inbox import Inbox, InboxStatus
from moltbot.state.ledger import Ledger
from moltbot.webhooks import dispatcher as dispatcher_module
from moltbot.webhooks.config import DeploymentTarget, GatewayConfig
from moltbot.webhooks.dispatcher import (
    RUN_TAGS,
    DispatchCounts,
    Dispatcher,
    batch_idempotency_key,
    idempotency_key,
)
from tests.moltbot.dispatching import passes_at_once

T0 = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)


@flow(name="webhook-batch-sink")
def batch_sink(inbox_ids: list[str]) -> int:
    """Stands in for payment-failures: takes a batch of inbox ids."""
    return len(inbox_ids)


@flow(name="webhook-batch-events-sink")
def events_sink(events: list[dict[str, Any]]) -> int:
    """Stands in for a flow that takes the event itself (custom parameters)."""
    return len(events)


class Clock:
    """A settable UTC clock."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(params=["sqlite", "postgresql"])
def inbox(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Inbox]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres_database_url")
    with Ledger(url) as ledger:
        yield Inbox(ledger)


def deploy(sink: Any) -> str:
    name = f"d-{uuid.uuid4().hex[:10]}"
    sink.to_deployment(name=name).apply()
    return f"{sink.name}/{name}"


@pytest.fixture
def deployment(prefect_api: str) -> str:
    """A fresh deployment of the batch sink; its `flow/deployment` name."""
    return deploy(batch_sink)


def config_for(*targets: dict[str, Any]) -> GatewayConfig:
    return GatewayConfig.from_table({"routes": {"payment.failed": list(targets)}})


def event(event_id: str, event_type: str = "payment.failed") -> dict[str, Any]:
    return {
        "id": event_id,
        "type": event_type,
        "occurred_at": "2026-11-24T06:00:00+00:00",
        "payload": {"object": {"customer": "김민수", "memo": "카드 한도 초과"}},
    }


def accept(inbox: Inbox, count: int, *, at: datetime = T0, prefix: str = "evt") -> list[str]:
    """`count` payment events received one millisecond apart from `at`; their inbox ids."""
    return [
        inbox.accept(
            "stripe", event(f"{prefix}_{i:04d}"), received_at=at + timedelta(milliseconds=i)
        )[0].id
        for i in range(count)
    ]


def runs_of(deployment: str) -> list[Any]:
    """The deployment's flow runs, oldest first."""
    with get_client(sync_client=True) as client:
        found = client.read_deployment_by_name(deployment)
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[found.id]))
        )
    return sorted(runs, key=lambda run: run.created)


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/api"


def assert_partition(runs: list[Any], ids: list[str]) -> None:
    """Every id is in exactly one run's `inbox_ids`, and the runs hold nothing else."""
    listed = [entry_id for run in runs for entry_id in run.parameters["inbox_ids"]]
    assert Counter(listed) == Counter(ids)


def test_250_pending_entries_become_runs_of_100_100_and_50_that_partition_them(
    inbox: Inbox, deployment: str
) -> None:
    ids = accept(inbox, 250)
    clock = Clock(T0 + timedelta(milliseconds=250))
    route = {"deployment": deployment, "batch_size": 100}
    dispatcher = Dispatcher(inbox, config_for(route), clock=clock)

    # Two full batches go at once; the last 50 wait for more, a burst being on.
    assert dispatcher.dispatch_pending() == DispatchCounts(dispatched=200, held=50)
    assert [len(run.parameters["inbox_ids"]) for run in runs_of(deployment)] == [100, 100]
    # Their window ends 1 s after the oldest of them (received at T0 + 200 ms) became due.
    clock.now = T0 + timedelta(milliseconds=1199)
    assert dispatcher.dispatch_pending() == DispatchCounts(held=50)
    clock.now = T0 + timedelta(milliseconds=1200)
    assert dispatcher.dispatch_pending() == DispatchCounts(dispatched=50)

    runs = runs_of(deployment)
    assert [run.parameters["inbox_ids"] for run in runs] == [ids[:100], ids[100:200], ids[200:]]
    assert_partition(runs, ids)
    by_id = {str(run.id): run for run in runs}
    for entry_id in ids:
        entry = inbox.get(entry_id)
        assert (entry.status, entry.attempts, entry.next_attempt_at) == (
            InboxStatus.DISPATCHED,
            1,
            None,
        )
        [result] = entry.results
        run = by_id[entry.flow_run_id]
        assert result == {"target": f"deployment {deployment}", "id": str(run.id),
                          "batch": result["batch"]}  # fmt: skip
        assert entry_id in run.parameters["inbox_ids"]
        assert run.idempotency_key == batch_idempotency_key(result["batch"], deployment)
        assert {*RUN_TAGS, "webhook-batch-sink", "webhook", "webhook:stripe"} <= set(run.tags)
    # Nothing is due any more; one audit entry per batch run.
    assert dispatcher.dispatch_pending() == DispatchCounts()
    assert len(runs_of(deployment)) == 3
    audited = AuditTrail(inbox).rows()
    assert [(row.actor, row.outcome) for row in audited] == [("webhook:stripe", "dispatched")] * 3
    assert [row.target.split(" ")[:4] for row in audited] == [
        ["100", "inbox", "entries", "(payment.failed)"],
        ["100", "inbox", "entries", "(payment.failed)"],
        ["50", "inbox", "entries", "(payment.failed)"],
    ]
    assert [row.target.rsplit(" ", 1)[1] for row in audited] == [str(run.id) for run in runs]


def test_a_crash_after_creating_the_runs_gets_the_same_runs_back_and_no_new_one(
    inbox: Inbox, deployment: str
) -> None:
    ids = accept(inbox, 250)
    clock = Clock(T0 + timedelta(seconds=1))
    dispatcher = Dispatcher(inbox, config_for({"deployment": deployment}), clock=clock)
    target = DeploymentTarget(deployment=deployment)
    # The dispatcher that crashed stored its batches (with their entries) and created their
    # runs, then was killed before recording any run with its entries.
    batches = [
        inbox.open_batch(
            deployment, ids[start : start + 100], now=clock.now, lease=dispatcher.lease,
            settled_ids=ids[start : start + 100],
        )
        for start in range(0, 250, 100)
    ]  # fmt: skip
    created = [dispatcher_module._run_batch(target, batch, ["stripe"]) for batch in batches]
    assert inbox.counts()["pending"] == 250

    # Within their lease nobody touches them; after it, the next pass asks again for the same
    # batches and gets the same runs back.
    assert dispatcher.dispatch_pending() == DispatchCounts()
    clock.now += dispatcher.lease
    assert dispatcher.dispatch_pending() == DispatchCounts(dispatched=250)

    runs = runs_of(deployment)
    assert [str(run.id) for run in runs] == created
    assert_partition(runs, ids)
    for batch, run_id in zip(batches, created, strict=True):
        for entry_id in batch.entry_ids:
            entry = inbox.get(entry_id)
            assert (entry.status, entry.flow_run_id, entry.attempts) == (
                InboxStatus.DISPATCHED,
                run_id,
                2,
            )
            assert entry.results[0]["batch"] == batch.key
    assert {b.key: b.flow_run_id for b in inbox.started_batches(limit=10)} == {
        batch.key: run_id for batch, run_id in zip(batches, created, strict=True)
    }
    # A third pass finds nothing; still three runs.
    assert dispatcher.dispatch_pending() == DispatchCounts()
    assert len(runs_of(deployment)) == 3


def test_during_a_prefect_outage_every_entry_stays_pending_then_each_is_dispatched_once(
    inbox: Inbox, deployment: str
) -> None:
    ids = accept(inbox, 30)
    clock = Clock(T0 + timedelta(seconds=1))
    dispatcher = Dispatcher(inbox, config_for({"deployment": deployment}), clock=clock)

    with temporary_settings(updates={PREFECT_API_URL: closed_port_url()}):
        assert dispatcher.dispatch_pending() == DispatchCounts(retrying=30)
        [batch] = inbox.due_batches(T0 + timedelta(days=1), limit=10)

    assert batch.entry_ids == tuple(ids)
    assert (batch.attempts, batch.next_attempt_at) == (1, clock.now + timedelta(seconds=1))
    assert batch.error == f"deployment {deployment}: Prefect API unreachable (ConnectError)"
    assert inbox.counts() == {"pending": 30, "dispatched": 0, "failed": 0, "ignored": 0}
    for entry_id in ids:
        entry = inbox.get(entry_id)
        assert (entry.attempts, entry.error) == (1, batch.error)
        assert entry.results == []
    assert runs_of(deployment) == []

    # The API is back: once the backoff is over, the same batch gets its one run.
    clock.now += timedelta(seconds=1)
    assert dispatcher.dispatch_pending() == DispatchCounts(dispatched=30)
    [run] = runs_of(deployment)
    assert run.parameters["inbox_ids"] == ids
    assert run.idempotency_key == batch_idempotency_key(batch.key, deployment)
    assert all(inbox.get(entry_id).error is None for entry_id in ids)
    assert inbox.counts()["dispatched"] == 30


def end_runs(deployment: str, failing: set[str], state: Any = Failed) -> None:
    """End every scheduled run of `deployment`: `state` when its batch holds an entry of
    `failing` (as a bad event would make the flow fail), else Completed."""
    with get_client(sync_client=True) as client:
        for run in runs_of(deployment):
            if run.state.type != StateType.SCHEDULED:
                continue
            bad = failing & set(run.parameters["inbox_ids"])
            ending = state(message="a bad event") if bad else Completed()
            client.set_flow_run_state(run.id, ending, force=True)


def test_a_failed_batch_is_split_in_halves_until_the_bad_entry_is_alone_then_given_up(
    inbox: Inbox, deployment: str
) -> None:
    ids = accept(inbox, 8)
    bad = ids[5]
    clock = Clock(T0 + timedelta(seconds=1))
    config = config_for({"deployment": deployment, "batch_size": 8})
    dispatcher = Dispatcher(inbox, config, clock=clock, max_redispatches=3)

    outcomes = []
    for _ in range(10):
        dispatcher.dispatch_pending()
        end_runs(deployment, {bad})
        outcomes.append(dispatcher.redispatch_crashed())
        if inbox.get(bad).status == InboxStatus.FAILED:
            break

    runs = runs_of(deployment)
    with_bad = [run.parameters["inbox_ids"] for run in runs if bad in run.parameters["inbox_ids"]]
    assert with_bad == [ids, ids[4:], ids[4:6], [bad], [bad], [bad], [bad]]
    # Each split retried every entry of the failed run; the fourth run of it alone gave it up.
    assert outcomes == [(8, 0), (4, 0), (2, 0), (1, 0), (1, 0), (1, 0), (0, 1)]
    given_up = inbox.get(bad)
    assert given_up.status == InboxStatus.FAILED
    assert given_up.error == "4 runs of it alone failed or crashed"
    assert [r.get("state") for r in given_up.results] == ["failed"] * 7
    # The other seven were each in one completed run, and are dispatched to it.
    completed = [run for run in runs if run.state.type == StateType.COMPLETED]
    good = [entry_id for entry_id in ids if entry_id != bad]
    assert_partition(completed, good)
    by_id = {str(run.id): run for run in completed}
    for entry_id in good:
        entry = inbox.get(entry_id)
        assert entry.status == InboxStatus.DISPATCHED
        assert entry_id in by_id[entry.flow_run_id].parameters["inbox_ids"]
    assert len(runs) == 10
    assert inbox.started_batches(limit=10) == []


def test_a_crashed_batch_run_is_split_and_its_halves_complete(
    inbox: Inbox, deployment: str
) -> None:
    ids = accept(inbox, 3)
    clock = Clock(T0 + timedelta(seconds=1))
    dispatcher = Dispatcher(inbox, config_for({"deployment": deployment}), clock=clock)
    dispatcher.dispatch_pending()
    end_runs(deployment, set(ids), state=Crashed)

    assert dispatcher.redispatch_crashed() == (3, 0)
    assert [inbox.get(entry_id).status for entry_id in ids] == [InboxStatus.PENDING] * 3
    assert dispatcher.dispatch_pending() == DispatchCounts(dispatched=3)
    end_runs(deployment, set())
    assert dispatcher.redispatch_crashed() == (0, 0)

    first, *halves = runs_of(deployment)
    assert first.state.type == StateType.CRASHED
    halves.sort(key=lambda run: len(run.parameters["inbox_ids"]), reverse=True)
    assert [run.parameters["inbox_ids"] for run in halves] == [ids[:2], ids[2:]]
    assert [run.state.type for run in halves] == [StateType.COMPLETED] * 2
    entry = inbox.get(ids[0])
    assert entry.flow_run_id == str(halves[0].id)
    assert [(r["id"], r.get("crashed"), r.get("state")) for r in entry.results] == [
        (str(first.id), "true", "crashed"),
        (str(halves[0].id), None, None),
    ]
    # Completed runs settle their batches: nothing left to watch.
    assert inbox.started_batches(limit=10) == []


def test_the_window_holds_a_partial_batch_until_the_clock_passes_it(
    inbox: Inbox, deployment: str
) -> None:
    route = {"deployment": deployment, "batch_size": 10, "batch_window_seconds": 2}
    clock = Clock(T0)
    dispatcher = Dispatcher(inbox, config_for(route), clock=clock)
    # After a quiet spell a lone entry goes at once: there is no burst to wait for.
    [lone] = accept(inbox, 1, prefix="lone")
    assert dispatcher.dispatch_pending() == DispatchCounts(dispatched=1)

    # A burst is on (a batch went 0.5 s ago): three entries wait for more, until the window
    # after that batch is over.
    late = accept(inbox, 3, at=T0 + timedelta(milliseconds=500), prefix="late")
    clock.now = T0 + timedelta(milliseconds=510)
    assert dispatcher.dispatch_pending() == DispatchCounts(held=3)
    clock.now = T0 + timedelta(milliseconds=1999)
    assert dispatcher.dispatch_pending() == DispatchCounts(held=3)
    assert [run.parameters["inbox_ids"] for run in runs_of(deployment)] == [[lone]]
    clock.now = T0 + timedelta(seconds=2)
    assert dispatcher.dispatch_pending() == DispatchCounts(dispatched=3)

    assert [run.parameters["inbox_ids"] for run in runs_of(deployment)] == [[lone], late]


def test_a_batch_that_fills_up_goes_without_waiting_for_the_window(
    inbox: Inbox, deployment: str
) -> None:
    route = {"deployment": deployment, "batch_size": 4, "batch_window_seconds": 60}
    clock = Clock(T0 + timedelta(milliseconds=10))
    dispatcher = Dispatcher(inbox, config_for(route), clock=clock)
    accept(inbox, 4, prefix="first")
    assert dispatcher.dispatch_pending() == DispatchCounts(dispatched=4)
    held = accept(inbox, 3, at=T0 + timedelta(seconds=1), prefix="more")
    clock.now = T0 + timedelta(milliseconds=1010)
    assert dispatcher.dispatch_pending() == DispatchCounts(held=3)

    filling = accept(inbox, 2, at=clock.now, prefix="fill")
    clock.now += timedelta(milliseconds=10)
    assert dispatcher.dispatch_pending() == DispatchCounts(dispatched=4, held=1)

    assert runs_of(deployment)[-1].parameters["inbox_ids"] == [*held, filling[0]]


def test_a_deployment_at_its_concurrency_limit_gets_its_next_batch_when_its_run_ends(
    inbox: Inbox, prefect_api: str
) -> None:
    # One run at a time, as the registry's automations: a second run asked for now would only
    # wait in Prefect for the slot; the entries wait in the inbox and go together after.
    name = f"d-{uuid.uuid4().hex[:10]}"
    batch_sink.to_deployment(name=name, concurrency_limit=1).apply()
    deployment = f"{batch_sink.name}/{name}"
    other = deploy(batch_sink)
    route = {"deployment": deployment, "batch_size": 3, "batch_window_seconds": 0}
    config = GatewayConfig.from_table(
        {"routes": {"payment.failed": [route], "charge.failed": [{"deployment": other}]}}
    )
    ids = accept(inbox, 7)
    charges = [
        inbox.accept("stripe", event(f"ch_{i}", "charge.failed"), received_at=T0)[0].id
        for i in range(2)
    ]
    clock = Clock(T0 + timedelta(seconds=1))
    dispatcher = Dispatcher(inbox, config, clock=clock)

    # One batch of the limited deployment, and the other deployment's entries all the same.
    assert dispatcher.dispatch_pending() == DispatchCounts(dispatched=5, held=4)
    assert [run.parameters["inbox_ids"] for run in runs_of(deployment)] == [ids[:3]]
    assert [sorted(run.parameters["inbox_ids"]) for run in runs_of(other)] == [sorted(charges)]
    # The held entries step aside until the next look, one poll interval later.
    assert inbox.due(clock.now, limit=10) == []
    clock.now += timedelta(seconds=1)
    assert dispatcher.dispatch_pending() == DispatchCounts(held=4)

    end_runs(deployment, set())
    clock.now += timedelta(seconds=1)
    assert dispatcher.dispatch_pending() == DispatchCounts(dispatched=3, held=1)
    end_runs(deployment, set())
    clock.now += timedelta(seconds=1)
    assert dispatcher.dispatch_pending() == DispatchCounts(dispatched=1)

    runs = runs_of(deployment)
    assert [run.parameters["inbox_ids"] for run in runs] == [ids[:3], ids[3:6], ids[6:]]
    assert_partition(runs, ids)


def test_custom_parameter_targets_still_get_one_run_per_entry(
    inbox: Inbox, prefect_api: str
) -> None:
    deployment = deploy(events_sink)
    ids = accept(inbox, 4)
    dispatcher = Dispatcher(
        inbox, config_for({"deployment": deployment, "parameters": {"events": ["{{ event }}"]}})
    )

    assert dispatcher.dispatch_pending() == DispatchCounts(dispatched=4)

    runs = runs_of(deployment)
    assert len(runs) == 4
    assert sorted(run.idempotency_key for run in runs) == sorted(
        idempotency_key(entry_id, DeploymentTarget(deployment=deployment)) for entry_id in ids
    )
    assert sorted(run.parameters["events"][0]["id"] for run in runs) == [
        f"evt_{i:04d}" for i in range(4)
    ]
    assert inbox.started_batches(limit=10) == []
    assert inbox.due_batches(T0 + timedelta(days=1), limit=10) == []


def test_an_entry_routed_to_several_targets_gets_every_one_of_them(
    inbox: Inbox, deployment: str
) -> None:
    other = deploy(batch_sink)
    each = deploy(events_sink)
    config = config_for(
        {"deployment": deployment},
        {"deployment": each, "parameters": {"events": ["{{ event }}"]}},
        {"deployment": other},
        {"event": "moltbot.alert.{type}"},
    )
    ids = accept(inbox, 5)
    clock = Clock(T0 + timedelta(seconds=1))

    assert Dispatcher(inbox, config, clock=clock).dispatch_pending() == DispatchCounts(dispatched=5)

    [batch_run] = runs_of(deployment)
    [other_run] = runs_of(other)
    assert batch_run.parameters["inbox_ids"] == ids
    assert other_run.parameters["inbox_ids"] == ids
    per_entry = {run.parameters["events"][0]["id"]: run for run in runs_of(each)}
    assert len(per_entry) == 5
    for number, entry_id in enumerate(ids):
        entry = inbox.get(entry_id)
        assert entry.status == InboxStatus.DISPATCHED
        # The first deployment target's run is the entry's run.
        assert entry.flow_run_id == str(batch_run.id)
        assert entry.live_results == {
            f"deployment {deployment}": str(batch_run.id),
            f"deployment {each}": str(per_entry[f"evt_{number:04d}"].id),
            f"deployment {other}": str(other_run.id),
            "event moltbot.alert.{type}": entry.live_results["event moltbot.alert.{type}"],
        }


def test_a_batch_stored_before_the_routes_changed_still_gets_its_run(
    inbox: Inbox, deployment: str
) -> None:
    ids = accept(inbox, 2)
    clock = Clock(T0 + timedelta(seconds=1))
    batch = inbox.open_batch(deployment, ids, now=clock.now, lease=timedelta(seconds=60))
    clock.now += timedelta(seconds=60)

    counts = Dispatcher(inbox, config_for({"event": "moltbot.x"}), clock=clock).dispatch_pending()

    [run] = runs_of(deployment)
    assert run.parameters["inbox_ids"] == ids
    assert run.idempotency_key == batch_idempotency_key(batch.key, deployment)
    # The entries still need their route's event: they went on to get it in the same pass.
    assert counts == DispatchCounts(dispatched=2)


def test_an_unknown_batched_deployment_fails_its_entries_after_eight_attempts(
    inbox: Inbox, prefect_api: str
) -> None:
    ids = accept(inbox, 3)
    clock = Clock(T0 + timedelta(seconds=1))
    dispatcher = Dispatcher(inbox, config_for({"deployment": "webhook-batch-sink/nope"}),
                            clock=clock)  # fmt: skip

    outcomes = []
    for _ in range(8):
        outcomes.append(dispatcher.dispatch_pending())
        clock.now += timedelta(seconds=30)

    assert outcomes == [DispatchCounts(retrying=3)] * 7 + [DispatchCounts(failed=3)]
    for entry_id in ids:
        entry = inbox.get(entry_id)
        assert (entry.status, entry.attempts) == (InboxStatus.FAILED, 8)
        assert entry.error == "deployment webhook-batch-sink/nope: not found in the Prefect API"
    assert inbox.due_batches(T0 + timedelta(days=1), limit=10) == []
    assert dispatcher.dispatch_pending() == DispatchCounts()


def test_two_dispatchers_at_once_put_each_entry_in_exactly_one_run(
    inbox: Inbox, deployment: str
) -> None:

    ids = accept(inbox, 120)
    clock = Clock(T0 + timedelta(seconds=5))
    config = config_for({"deployment": deployment, "batch_size": 40})
    dispatchers = [Dispatcher(inbox, config, clock=clock) for _ in range(2)]
    results = passes_at_once(dispatchers)

    assert sum(counts.dispatched for counts in results) == 120
    runs = runs_of(deployment)
    assert_partition(runs, ids)
    assert len(runs) == 3
    assert {entry.flow_run_id for entry in inbox.entries()} == {str(run.id) for run in runs}


@pytest.mark.parametrize(
    ("route", "problem"),
    [
        (
            {"deployment": "a/b", "parameters": {"events": ["{{ event }}"]}, "batch_size": 10},
            "batch_size applies only to a target with the default parameters",
        ),
        ({"deployment": "a/b", "batch_size": 0}, "batch_size: Input should be greater than"),
        ({"deployment": "a/b", "batch_size": 5001}, "batch_size: Input should be less than"),
        ({"deployment": "a/b", "batch_window_seconds": -1}, "batch_window_seconds: Input"),
    ],
)
def test_batch_settings_are_checked(route: dict[str, Any], problem: str) -> None:
    with pytest.raises(InputError) as raised:
        GatewayConfig.from_table({"routes": {"payment.failed": route}})

    assert problem in str(raised.value)
    assert str(raised.value).startswith('[webhooks] config: routes."payment.failed"[0]')


def test_default_targets_are_batched_with_2000_ids_and_a_one_second_window() -> None:
    config = GatewayConfig.from_table(None)

    [payments, _alert] = config.targets_for("payment.failed")

    assert isinstance(payments, DeploymentTarget) and payments.batched
    assert (payments.batch_size, payments.batch_window_seconds) == (2000, 1.0)
    assert not DeploymentTarget(deployment="a/b", parameters={"inbox_ids": ["x"]}).batched

"""Tests of the inbox's group commit (`accept_many`, `AcceptQueue`) and of the turn-taking of
SQLite writers in one process; SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import Engine, event, insert
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError

from moltbot.state.inbox import (
    AcceptQueue,
    AcceptRequest,
    Inbox,
    InboxEntry,
    InboxStatus,
    inbox_table,
)
from moltbot.state.ledger import Ledger, _WriteGate
from moltbot.webhooks.app import SourceVerifier, create_gateway_app
from moltbot.webhooks.config import GatewayConfig
from moltbot.webhooks.signatures import sign_stripe

T0 = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
# Only a guard against a hang: every wait below ends as soon as what it waits for happens.
HANG_GUARD_SECONDS = 30.0
SECRET = "whsec_group_commit_test_51"
NOW = 1_795_000_000


def event_of(event_id: str, event_type: str = "payment.failed") -> dict[str, Any]:
    return {
        "id": event_id,
        "type": event_type,
        "occurred_at": "2026-11-24T06:00:00+00:00",
        "payload": {"customer": "김민수", "memo": "카드 한도 초과"},
    }


def request_of(event_id: str, *, ignored: bool = False) -> AcceptRequest:
    return AcceptRequest("stripe", event_of(event_id), T0, ignored=ignored)


@pytest.fixture(params=["sqlite", "postgresql"])
def inbox(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Inbox]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state' / 'ledger.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres_database_url")
    with Ledger(url) as ledger:
        yield Inbox(ledger)


class Commits:
    """Counts the transactions committed on an engine."""

    def __init__(self, engine: Engine) -> None:
        self.count = 0
        event.listen(engine, "commit", self._committed)

    def _committed(self, _conn: Any) -> None:
        self.count += 1


class HeldInsert:
    """Holds the next insert into the inbox inside its (uncommitted) transaction until
    released, so a test can look at the queue while a commit is under way."""

    def __init__(self, engine: Engine) -> None:
        self.reached = threading.Event()
        self.release = threading.Event()
        event.listen(engine, "before_cursor_execute", self._before)

    def _before(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if self.reached.is_set():
            return
        if statement.lstrip().upper().startswith("INSERT INTO WEBHOOK_INBOX"):
            self.reached.set()
            assert self.release.wait(HANG_GUARD_SECONDS)


def wait_for(check: Any) -> None:
    """Spin until `check()` holds (a hang guard, not a timing assertion)."""
    guard = threading.Event()
    timer = threading.Timer(HANG_GUARD_SECONDS, guard.set)
    timer.start()
    try:
        while not check():
            assert not guard.wait(0.001), "waited too long"
    finally:
        timer.cancel()


def test_accept_many_commits_every_request_in_one_transaction(inbox: Inbox) -> None:
    commits = Commits(inbox.engine)

    accepted = inbox.accept_many([request_of(f"evt_{n}") for n in range(20)])

    assert commits.count == 1
    assert [entry.event_id for entry, _ in accepted] == [f"evt_{n}" for n in range(20)]
    assert all(created for _, created in accepted)
    # What it answers is what a read gives back.
    assert {entry.id: entry for entry, _ in accepted} == inbox.get_many(
        entry.id for entry, _ in accepted
    )
    assert len(inbox.entries(InboxStatus.PENDING)) == 20


def test_accept_many_finds_duplicates_stored_before_and_within_the_group(inbox: Inbox) -> None:
    earlier, _ = inbox.accept("stripe", event_of("evt_old"), received_at=T0)

    accepted = inbox.accept_many(
        [request_of("evt_new"), request_of("evt_old"), request_of("evt_new"),
         request_of("evt_ignored", ignored=True)]
    )  # fmt: skip

    [(new, created), (old, old_created), (new_again, again_created), (ignored, _)] = accepted
    assert (created, old_created, again_created) == (True, False, False)
    assert old == inbox.get(earlier.id)
    assert new_again.id == new.id
    assert ignored.status == InboxStatus.IGNORED
    assert len(inbox.entries()) == 3


def test_concurrent_accepts_are_committed_together_and_answered_only_after_the_commit(
    inbox: Inbox,
) -> None:
    commits = Commits(inbox.engine)
    held = HeldInsert(inbox.engine)
    queue = AcceptQueue(inbox)
    try:
        first = queue.submit(request_of("evt_first"))
        assert held.reached.wait(HANG_GUARD_SECONDS)
        # While the first transaction is open, eight more requests arrive.
        more = [queue.submit(request_of(f"evt_{n}")) for n in range(8)]

        assert not first.done() and not any(future.done() for future in more)
        assert inbox.entries() == []  # nothing is committed, so nothing is answered

        held.release.set()
        answers = [future.result(HANG_GUARD_SECONDS) for future in [first, *more]]
    finally:
        held.release.set()
        queue.close()

    assert all(created for _, created in answers)
    assert len(inbox.entries()) == 9
    assert {entry.id for entry, _ in answers} == {entry.id for entry in inbox.entries()}
    # The first request's transaction, then one for the eight that waited behind it.
    assert commits.count == 2


def test_a_failed_commit_answers_the_error_and_stores_nothing(inbox: Inbox) -> None:
    def refuse(_conn: Any) -> None:
        raise OperationalError("COMMIT", {}, Exception("disk I/O error"))

    queue = AcceptQueue(inbox)
    event.listen(inbox.engine, "commit", refuse)
    try:
        futures = [queue.submit(request_of(f"evt_{n}")) for n in range(5)]
        errors = [future.exception(HANG_GUARD_SECONDS) for future in futures]
    finally:
        event.remove(inbox.engine, "commit", refuse)
    try:
        assert all(isinstance(error, SQLAlchemyError) for error in errors)
        assert inbox.entries() == []
        # The queue keeps working once the database does.
        entry, created = queue.submit(request_of("evt_later")).result(HANG_GUARD_SECONDS)
    finally:
        queue.close()
    assert created and inbox.get(entry.id) == entry


def test_a_request_the_database_refuses_fails_alone(postgres_database_url: str) -> None:
    with Ledger(postgres_database_url) as ledger:
        inbox = Inbox(ledger)
        held = HeldInsert(inbox.engine)
        queue = AcceptQueue(inbox)
        try:
            first = queue.submit(request_of("evt_first"))
            assert held.reached.wait(HANG_GUARD_SECONDS)
            # Queued together behind the first: the middle one's id is longer than the column.
            good = queue.submit(request_of("evt_good"))
            bad = queue.submit(request_of("evt_" + "x" * 300))
            also_good = queue.submit(request_of("evt_also_good"))
            held.release.set()

            assert first.result(HANG_GUARD_SECONDS)[1]
            assert good.result(HANG_GUARD_SECONDS)[1]
            assert isinstance(bad.exception(HANG_GUARD_SECONDS), DBAPIError)
            assert also_good.result(HANG_GUARD_SECONDS)[1]
        finally:
            held.release.set()
            queue.close()
        assert sorted(entry.event_id for entry in inbox.entries()) == [
            "evt_also_good", "evt_first", "evt_good"
        ]  # fmt: skip


def test_close_commits_what_is_queued_and_a_later_request_starts_the_writer_again(
    inbox: Inbox,
) -> None:
    queue = AcceptQueue(inbox)
    futures = [queue.submit(request_of(f"evt_{n}")) for n in range(3)]

    queue.close()

    assert all(future.done() for future in futures)
    assert len(inbox.entries()) == 3
    entry, created = queue.submit(request_of("evt_after")).result(HANG_GUARD_SECONDS)
    queue.close()
    assert created and inbox.get(entry.id) == entry


def test_a_request_given_up_before_its_turn_is_not_written(inbox: Inbox) -> None:
    held = HeldInsert(inbox.engine)
    queue = AcceptQueue(inbox)
    try:
        first = queue.submit(request_of("evt_first"))
        assert held.reached.wait(HANG_GUARD_SECONDS)
        gone: Future[tuple[InboxEntry, bool]] = queue.submit(request_of("evt_gone"))
        assert gone.cancel()
        held.release.set()
        first.result(HANG_GUARD_SECONDS)
    finally:
        held.release.set()
        queue.close()

    assert [entry.event_id for entry in inbox.entries()] == ["evt_first"]


def test_concurrent_posts_are_each_acknowledged_with_their_own_committed_entry(
    inbox: Inbox,
) -> None:
    verifiers = {"stripe": SourceVerifier(scheme="stripe", secret=SecretStr(SECRET))}
    app = create_gateway_app(GatewayConfig.from_table(None), inbox, verifiers, clock=lambda: NOW)

    async def post_all() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:

            async def post(n: int) -> httpx.Response:
                body = json.dumps(
                    {"id": f"evt_{n}", "type": "payment.failed", "created": NOW, "data": {}}
                ).encode()
                headers = {"Stripe-Signature": sign_stripe(body, SECRET, NOW)}
                return await client.post("/hooks/stripe", content=body, headers=headers)

            return await asyncio.gather(*(post(n) for n in range(25)))

    answers = asyncio.run(post_all())

    assert [answer.status_code for answer in answers] == [202] * 25
    stored = {entry.id: entry.event_id for entry in inbox.entries()}
    assert {answer.json()["id"]: f"evt_{n}" for n, answer in enumerate(answers)} == stored


def test_a_failed_commit_is_answered_503_and_nothing_is_stored(inbox: Inbox) -> None:
    verifiers = {"stripe": SourceVerifier(scheme="stripe", secret=SecretStr(SECRET))}
    app = create_gateway_app(GatewayConfig.from_table(None), inbox, verifiers, clock=lambda: NOW)
    body = json.dumps({"id": "evt_1", "type": "payment.failed", "created": NOW}).encode()
    headers = {"Stripe-Signature": sign_stripe(body, SECRET, NOW)}

    def refuse(_conn: Any) -> None:
        raise OperationalError("COMMIT", {}, Exception("disk I/O error"))

    async def post() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            return await client.post("/hooks/stripe", content=body, headers=headers)

    event.listen(inbox.engine, "commit", refuse)
    try:
        answer = asyncio.run(post())
    finally:
        event.remove(inbox.engine, "commit", refuse)

    assert answer.status_code == 503
    assert inbox.entries() == []
    assert asyncio.run(post()).status_code == 202  # the sender's retry


def test_sqlite_writers_of_one_process_take_turns_instead_of_meeting_a_locked_database(
    tmp_path: Path,
) -> None:
    with Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite3'}") as ledger:
        inbox = Inbox(ledger)

        # No busy handler at all: a write meeting SQLite's lock would fail at once.
        def no_busy_wait(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.execute("PRAGMA busy_timeout = 0")

        event.listen(ledger.engine, "connect", no_busy_wait)
        ledger.engine.dispose()
        gate = _gate_of(ledger.engine)
        holding, release = threading.Event(), threading.Event()

        def long_writer() -> None:
            with ledger.engine.begin() as conn:
                conn.execute(
                    insert(inbox_table).values(
                        id="held", source="stripe", event_id="evt_held", type="t",
                        received_at=T0, event="{}", status="ignored", attempts=0,
                        updated_at=T0,
                    )
                )  # fmt: skip
                holding.set()
                assert release.wait(HANG_GUARD_SECONDS)

        writer = threading.Thread(target=long_writer)
        writer.start()
        assert holding.wait(HANG_GUARD_SECONDS)
        queue = AcceptQueue(inbox)
        try:
            accepted = queue.submit(request_of("evt_waiting"))
            wait_for(lambda: gate.waiting == 1)  # the accept waits its turn, not on SQLite
            release.set()
            writer.join(HANG_GUARD_SECONDS)
            entry, created = accepted.result(HANG_GUARD_SECONDS)
        finally:
            release.set()
            queue.close()
        assert created and inbox.get(entry.id) == entry
        assert len(inbox.entries()) == 2


def _gate_of(engine: Engine) -> _WriteGate:
    from moltbot.state.ledger import _WRITE_GATES

    return _WRITE_GATES[engine]


def test_the_write_gate_lets_its_holder_in_again_and_anyone_hand_it_on() -> None:
    gate = _WriteGate(timeout=HANG_GUARD_SECONDS)
    assert gate.enter() and gate.enter()  # a second connection of the same thread
    gate.leave()
    entered: list[bool] = []
    other = threading.Thread(target=lambda: entered.append(gate.enter()))
    other.start()
    wait_for(lambda: gate.waiting == 1)
    assert not entered
    # The last hold is given up by another thread (a connection closed elsewhere).
    threading.Thread(target=gate.leave).start()
    other.join(HANG_GUARD_SECONDS)
    assert entered == [True]


def test_a_writer_that_waited_the_busy_timeout_goes_ahead_without_the_gate() -> None:
    gate = _WriteGate(timeout=0)
    assert gate.enter()
    outcome: list[bool] = []
    other = threading.Thread(target=lambda: outcome.append(gate.enter()))
    other.start()
    other.join(HANG_GUARD_SECONDS)
    assert outcome == [False]

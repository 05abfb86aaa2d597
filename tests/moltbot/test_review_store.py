"""Review requests in the ledger: asked once, the first decision holds, a timeout re-asks."""

from __future__ import annotations

from pathlib import Path

import pytest

from moltbot.state.ledger import Ledger
from moltbot.state.reviews import APPROVED, REJECTED, TIMED_OUT, WAITING, ReviewStore

KEY = "ticket-creation:review:abc"


@pytest.fixture
def store(tmp_path: Path) -> ReviewStore:
    with Ledger(f"sqlite:///{tmp_path / 'ledger.db'}") as ledger:
        yield ReviewStore(ledger)


def ask(store: ReviewStore, run: str) -> object:
    return store.ask(KEY, automation="ticket-creation", requester="user:alice", flow_run_id=run)


def test_a_decision_is_returned_to_every_later_ask(store: ReviewStore) -> None:
    assert ask(store, "run-1").status == WAITING
    store.decide(KEY, status=APPROVED, reviewer="kim", reason="ok", decision={"reject": ["d2"]})

    again = ask(store, "run-2")

    assert again.decided and again.status == APPROVED
    assert (again.reviewer, again.decision, again.flow_run_id) == (
        "kim",
        {"reject": ["d2"]},
        "run-1",
    )


def test_the_first_decision_holds_against_a_later_one(store: ReviewStore) -> None:
    ask(store, "run-1")
    first = store.decide(KEY, status=APPROVED, reviewer="kim", reason=None, decision={"a": 1})
    second = store.decide(KEY, status=REJECTED, reviewer="lee", reason=None, decision={"a": 2})

    assert first == second and second.reviewer == "kim" and second.status == APPROVED


def test_a_timed_out_request_is_asked_again_by_the_next_run(store: ReviewStore) -> None:
    ask(store, "run-1")
    store.decide(KEY, status=TIMED_OUT, reviewer=None, reason=None, decision=None)

    again = ask(store, "run-2")

    assert again.status == WAITING and again.flow_run_id == "run-2"


def test_a_review_ends_only_approved_rejected_or_timed_out(store: ReviewStore) -> None:
    ask(store, "run-1")
    with pytest.raises(ValueError, match="approved, rejected or timed_out"):
        store.decide(KEY, status=WAITING, reviewer=None, reason=None, decision=None)

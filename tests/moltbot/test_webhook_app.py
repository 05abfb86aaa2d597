"""Tests of the gateway's HTTP surface (ASGI, no Prefect): rejections, inbox commits, healthz."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from moltbot.state.audit import AuditTrail
from moltbot.state.inbox import Inbox, InboxStatus
from moltbot.state.ledger import Ledger
from moltbot.webhooks.app import MAX_BODY_BYTES, SourceVerifier, create_gateway_app
from moltbot.webhooks.config import GatewayConfig
from moltbot.webhooks.signatures import sign_github, sign_stripe

STRIPE_SECRET = "whsec_app_test_8c1f2e"
GITHUB_SECRET = "gh-secret-app-test-77"
NOW = 1_795_000_000
VERIFIERS = {
    "stripe": SourceVerifier(scheme="stripe", secret=SecretStr(STRIPE_SECRET)),
    "github": SourceVerifier(scheme="github", secret=SecretStr(GITHUB_SECRET)),
}
PAYMENT = {
    "id": "evt_1",
    "type": "payment.failed",
    "created": NOW - 10,
    "data": {"object": {"customer": "김민수", "memo": "카드 한도 초과"}},
}


class Clock:
    """A settable Unix clock."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def inbox(tmp_path: Path) -> Iterator[Inbox]:
    with Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite3'}") as ledger:
        yield Inbox(ledger)


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def app(inbox: Inbox, clock: Clock) -> FastAPI:
    return create_gateway_app(GatewayConfig.from_table(None), inbox, VERIFIERS, clock=clock)


def body_of(document: object) -> bytes:
    return json.dumps(document, ensure_ascii=False).encode()


def stripe_headers(body: bytes, *, at: int = NOW, secret: str = STRIPE_SECRET) -> dict[str, str]:
    return {"Stripe-Signature": sign_stripe(body, secret, at), "Content-Type": "application/json"}


def call(app: FastAPI, method: str, path: str, **kwargs: object) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(go())


def test_an_accepted_event_is_committed_before_the_202_and_a_redelivery_answers_200(
    app: FastAPI, inbox: Inbox
) -> None:
    body = body_of(PAYMENT)

    first = call(app, "POST", "/hooks/stripe", content=body, headers=stripe_headers(body))

    assert first.status_code == 202
    assert first.json() == {"id": first.json()["id"], "status": "accepted"}
    [entry] = inbox.entries()
    assert entry.id == first.json()["id"]
    assert entry.status == InboxStatus.PENDING
    assert entry.event == {
        "id": "evt_1",
        "type": "payment.failed",
        "occurred_at": "2026-11-18T11:06:30+00:00",
        "payload": {"object": {"customer": "김민수", "memo": "카드 한도 초과"}},
    }

    again = call(app, "POST", "/hooks/stripe", content=body, headers=stripe_headers(body))

    assert again.status_code == 200
    assert again.json() == {"id": entry.id, "status": "duplicate"}
    assert len(inbox.entries()) == 1


def test_a_github_delivery_is_accepted(app: FastAPI, inbox: Inbox) -> None:
    body = body_of({"action": "opened", "issue": {"title": "로그인 오류"}})
    headers = {
        "X-Hub-Signature-256": sign_github(body, GITHUB_SECRET),
        "X-GitHub-Delivery": "72d3162e-cc78-11e3",
        "X-GitHub-Event": "issues",
    }

    response = call(app, "POST", "/hooks/github", content=body, headers=headers)

    assert response.status_code == 202
    [entry] = inbox.entries()
    assert (entry.source, entry.event_id, entry.type) == ("github", "72d3162e-cc78-11e3",
                                                          "issues.opened")  # fmt: skip
    assert entry.event["payload"]["issue"]["title"] == "로그인 오류"


def _rejections() -> list[tuple[str, str, bytes, dict[str, str], int, str]]:
    good = body_of(PAYMENT)
    no_id = body_of({k: v for k, v in PAYMENT.items() if k != "id"})
    no_type = body_of({k: v for k, v in PAYMENT.items() if k != "type"})
    not_json = b'{"id": "evt_1", "type": '
    a_list = b"[1, 2, 3]"
    gh_body = body_of({"action": "opened"})
    return [
        ("unknown-source", "/hooks/shopify", good, stripe_headers(good), 404, "unknown source"),
        ("no-signature", "/hooks/stripe", good, {}, 401, "missing Stripe-Signature"),
        ("wrong-secret", "/hooks/stripe", good, stripe_headers(good, secret="whsec_x"), 401,
         "does not match"),
        ("tampered", "/hooks/stripe", good + b" ", stripe_headers(good), 401, "does not match"),
        ("old", "/hooks/stripe", good, stripe_headers(good, at=NOW - 301), 401, "300 seconds"),
        ("future", "/hooks/stripe", good, stripe_headers(good, at=NOW + 301), 401, "300 seconds"),
        ("invalid-json", "/hooks/stripe", not_json, stripe_headers(not_json), 400,
         "body is not valid JSON"),
        ("not-an-object", "/hooks/stripe", a_list, stripe_headers(a_list), 400,
         "body must be a JSON object"),
        ("no-id", "/hooks/stripe", no_id, stripe_headers(no_id), 400, "missing event id"),
        ("no-type", "/hooks/stripe", no_type, stripe_headers(no_type), 400, "missing event type"),
        ("github-no-delivery", "/hooks/github", gh_body,
         {"X-Hub-Signature-256": sign_github(gh_body, GITHUB_SECRET), "X-GitHub-Event": "issues"},
         400, "missing event id (X-GitHub-Delivery header)"),
        ("too-large", "/hooks/stripe", b"x" * (MAX_BODY_BYTES + 1), {}, 413, "body larger than"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "reason"),
    [case[1:] for case in _rejections()],
    ids=[case[0] for case in _rejections()],
)
def test_each_rejection_answers_its_code_and_creates_nothing(
    app: FastAPI, inbox: Inbox, path: str, body: bytes, headers: dict, status: int, reason: str
) -> None:
    response = call(app, "POST", path, content=body, headers=headers)

    assert response.status_code == status
    assert reason in response.json()["error"]
    # Short, and never the secret or the payload.
    assert len(response.text) < 200
    assert STRIPE_SECRET not in response.text
    assert "김민수" not in response.text
    assert inbox.entries() == []
    assert inbox.counts() == {"pending": 0, "dispatched": 0, "failed": 0, "ignored": 0}


class CountingBody:
    """A request body streamed in 64 KiB chunks that counts how many the server pulled."""

    CHUNK = b"x" * 65536

    def __init__(self, total: int) -> None:
        self.chunks = total // len(self.CHUNK)
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.chunks):
            self.pulled += 1
            yield self.CHUNK


@pytest.mark.parametrize(
    "declared", [None, "100"], ids=["chunked-without-length", "lying-content-length"]
)
def test_a_2_mib_body_is_refused_after_reading_just_over_1_mib(
    app: FastAPI, inbox: Inbox, declared: str | None
) -> None:
    body = CountingBody(2 * 1024 * 1024)
    headers = stripe_headers(b"irrelevant")
    if declared is not None:
        headers["Content-Length"] = declared

    response = call(app, "POST", "/hooks/stripe", content=body, headers=headers)

    assert response.status_code == 413
    # 16 chunks are exactly 1 MiB; the 17th goes over and reading stops there, of 32.
    assert body.pulled == 17
    assert inbox.entries() == []


def test_a_declared_2_mib_body_is_refused_before_reading_any_of_it(
    app: FastAPI, inbox: Inbox
) -> None:
    body = CountingBody(2 * 1024 * 1024)
    headers = stripe_headers(b"irrelevant") | {"Content-Length": str(2 * 1024 * 1024)}

    response = call(app, "POST", "/hooks/stripe", content=body, headers=headers)

    assert response.status_code == 413
    assert body.pulled == 0
    assert inbox.entries() == []


def test_an_unrouted_type_is_accepted_and_ignored_when_there_is_no_default(
    inbox: Inbox, clock: Clock
) -> None:
    config = GatewayConfig.from_table({"default": "ignore"})
    app = create_gateway_app(config, inbox, VERIFIERS, clock=clock)
    body = body_of(PAYMENT | {"id": "evt_2", "type": "customer.created"})

    response = call(app, "POST", "/hooks/stripe", content=body, headers=stripe_headers(body))

    assert response.status_code == 202
    assert [entry.status for entry in inbox.entries()] == [InboxStatus.IGNORED]
    health = call(app, "GET", "/healthz").json()
    assert health["inbox"] == {"pending": 0, "dispatched": 0, "failed": 0, "ignored": 1}


def test_healthz_reports_counts_and_the_oldest_pending_age(
    app: FastAPI, inbox: Inbox, clock: Clock
) -> None:
    assert call(app, "GET", "/healthz").json() == {
        "status": "ok",
        "inbox": {"pending": 0, "dispatched": 0, "failed": 0, "ignored": 0},
        "oldest_pending_seconds": None,
        "dispatcher": "off",
    }
    for index in range(3):
        body = body_of(PAYMENT | {"id": f"evt_{index}"})
        call(app, "POST", "/hooks/stripe", content=body, headers=stripe_headers(body))
        clock.now += 10
    first, second, _ = inbox.entries()
    inbox.mark_dispatched(first.id, flow_run_id=None, results=[])
    inbox.mark_failed(second.id, error="deployment x/y: not found in the Prefect API")

    health = call(app, "GET", "/healthz").json()

    assert health["inbox"] == {"pending": 1, "dispatched": 1, "failed": 1, "ignored": 0}
    # The third was received at NOW + 20 and the clock reads NOW + 30.
    assert health["oldest_pending_seconds"] == 10.0


def test_no_interactive_docs_and_only_post_on_hooks(app: FastAPI) -> None:
    assert call(app, "GET", "/docs").status_code == 404
    assert call(app, "GET", "/openapi.json").status_code == 404
    assert call(app, "GET", "/hooks/stripe").status_code == 405


def test_behind_a_proxy_the_identity_it_passes_is_audited_per_accepted_webhook(
    inbox: Inbox, clock: Clock
) -> None:
    config = GatewayConfig.from_table({"identity_header": "X-Forwarded-User"})
    app = create_gateway_app(config, inbox, VERIFIERS, clock=clock)
    body = body_of(PAYMENT)
    headers = {**stripe_headers(body), "X-Forwarded-User": "billing-bot"}

    first = call(app, "POST", "/hooks/stripe", content=body, headers=headers)
    again = call(app, "POST", "/hooks/stripe", content=body, headers=headers)

    assert (first.status_code, again.status_code) == (202, 200)
    [row] = AuditTrail(inbox).rows()  # the duplicate adds nothing
    assert (row.actor, row.action, row.outcome) == (
        "webhook:stripe via billing-bot",
        "webhook",
        "accepted",
    )
    assert row.target == f"inbox entry {first.json()['id']} (payment.failed)"


def test_without_an_identity_header_configured_nothing_is_audited_at_the_door(
    app: FastAPI, inbox: Inbox
) -> None:
    body = body_of(PAYMENT)
    headers = {**stripe_headers(body), "X-Forwarded-User": "someone"}

    assert call(app, "POST", "/hooks/stripe", content=body, headers=headers).status_code == 202
    assert AuditTrail(inbox).rows() == []

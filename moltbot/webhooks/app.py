"""The gateway's HTTP surface: `POST /hooks/{source}` into the inbox, `GET /healthz`, and the
acknowledgement pages of escalating alerts."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import SecretStr
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from moltbot.masking import mask_text
from moltbot.state.audit import AuditAction, AuditTrail
from moltbot.state.inbox import AcceptQueue, AcceptRequest, Inbox, InboxEntry
from moltbot.webhooks.acks import AckDesk, add_ack_routes
from moltbot.webhooks.config import GatewayConfig
from moltbot.webhooks.deadlines import CallLater, deadline, loop_call_later
from moltbot.webhooks.dispatcher import Dispatcher
from moltbot.webhooks.events import EventError, normalize_event, parse_json_object
from moltbot.webhooks.signatures import Scheme, SignatureError, verify_signature

MAX_BODY_BYTES = 1024 * 1024
"""Largest request body accepted (1 MiB); Stripe and GitHub send far less."""
# Webhook senders post small bodies at once; a body still arriving after this is a slow client
# holding a connection (and a worker of the event loop's attention) open.
BODY_TIMEOUT_SECONDS = 10.0

logger = logging.getLogger("moltbot.webhooks")


@dataclass(frozen=True)
class SourceVerifier:
    """What the gateway needs to verify one source's requests, loaded once at start-up.

    Attributes:
        scheme: `stripe` or `github`.
        secret: the signing secret.
        tolerance_seconds: allowed clock distance of a Stripe-style timestamp.
    """

    scheme: Scheme
    secret: SecretStr
    tolerance_seconds: int = 300


def create_gateway_app(
    config: GatewayConfig,
    inbox: Inbox,
    verifiers: Mapping[str, SourceVerifier],
    *,
    dispatcher: Dispatcher | None = None,
    on_shutdown: Callable[[], None] | None = None,
    clock: Callable[[], float] = time.time,
    max_body_bytes: int = MAX_BODY_BYTES,
    body_timeout_seconds: float = BODY_TIMEOUT_SECONDS,
    call_later: CallLater = loop_call_later,
    acks: AckDesk | None = None,
) -> FastAPI:
    """The gateway as an ASGI app.

    `POST /hooks/{source}` answers, in this order: 404 unknown source; 413 a body over
    `max_body_bytes` (by its Content-Length, and by counting while reading, so neither a lying
    header nor a chunked body gets further); 401 a missing, wrong or stale signature; 400 a body
    that is not a JSON object or lacks an event id or type. None of these touches the inbox.
    Otherwise the event is committed to the inbox and the answer is `202 {"id", "status":
    "accepted"}`, or `200 {"id", "status": "duplicate"}` for an event id the source already
    sent. Requests arriving together share one transaction (`AcceptQueue`, a group commit);
    each is answered once that transaction has committed. The answer never waits for the
    Prefect API: the dispatcher is only woken.
    `GET /healthz` reports the inbox counts and the age of the oldest pending entry.

    Args:
        config: routes (to know whether an event type is routed at all).
        inbox: where accepted requests are committed.
        verifiers: per source name, its scheme and secret.
        dispatcher: started with the app and stopped when it shuts down; None: no dispatching
            in this process.
        on_shutdown: called last when the app shuts down (e.g. to close the ledger).
        clock: the current Unix time (for the Stripe timestamp check and `received_at`).
        max_body_bytes: the body limit.
        body_timeout_seconds: how long the whole body may take to arrive; a client that
            trickles it gets 408 and its connection is closed.
        call_later: the timer of the body deadline (tests pass one they fire themselves).
        acks: serves the acknowledgement links of escalating alerts (`/ack/{token}`, see
            `add_ack_routes`); None: no such pages.
    """
    accepts = AcceptQueue(inbox)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if dispatcher is not None:
            dispatcher.start()
        try:
            yield
        finally:
            # uvicorn finished the requests in flight: their commits are done.
            await run_in_threadpool(accepts.close)
            if dispatcher is not None:
                await run_in_threadpool(dispatcher.stop)
            if on_shutdown is not None:
                on_shutdown()

    # No interactive docs: the gateway faces the internet and has nothing to browse.
    app = FastAPI(
        title="moltbot webhook gateway",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )

    @app.post("/hooks/{source}")
    async def receive(source: str, request: Request) -> JSONResponse:
        verifier = verifiers.get(source)
        if verifier is None:
            return _error(404, "unknown source")
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                return _error(400, "invalid Content-Length")
            if int(declared) > max_body_bytes:
                return _error(413, f"body larger than {max_body_bytes} bytes")
        body = bytearray()
        try:
            async with deadline(body_timeout_seconds, call_later):
                async for chunk in request.stream():
                    body += chunk
                    if len(body) > max_body_bytes:
                        return _error(413, f"body larger than {max_body_bytes} bytes")
        except TimeoutError:
            # The rest of the body may still come: the connection cannot serve another request.
            return _error(
                408,
                f"body not received within {body_timeout_seconds:g} s",
                headers={"Connection": "close"},
            )
        except ClientDisconnect:
            # The sender went away mid-body: nothing to store and nobody to answer.
            return _error(400, "client disconnected")
        now = clock()
        try:
            verify_signature(
                verifier.scheme,
                dict(request.headers),
                bytes(body),
                verifier.secret.get_secret_value(),
                now=now,
                tolerance_seconds=verifier.tolerance_seconds,
            )
        except SignatureError as exc:
            return _error(401, str(exc))
        received_at = datetime.fromtimestamp(now, UTC)
        try:
            document = parse_json_object(bytes(body))
            event = normalize_event(
                verifier.scheme, document, dict(request.headers), received_at=received_at
            )
        except EventError as exc:
            return _error(400, str(exc))
        routed = bool(config.targets_for(event["type"]))
        request_to_commit = AcceptRequest(source, event, received_at, ignored=not routed)
        try:
            entry, created = await asyncio.wrap_future(accepts.submit(request_to_commit))
        except SQLAlchemyError as exc:
            # Not accepted: the sender retries on a 5xx, and nothing was promised.
            logger.error("webhook inbox unavailable: %s", mask_text(str(exc)))
            return _error(503, "inbox unavailable, retry later")
        if not created:
            return JSONResponse({"id": entry.id, "status": "duplicate"}, status_code=200)
        identity = request.headers.get(config.identity_header) if config.identity_header else None
        if identity:
            await run_in_threadpool(_audit_accepted, inbox, entry, source, identity)
        if routed and dispatcher is not None:
            dispatcher.wake()
        return JSONResponse({"id": entry.id, "status": "accepted"}, status_code=202)

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        try:
            counts = inbox.counts()
            oldest = inbox.oldest_pending_received_at()
        except SQLAlchemyError as exc:
            logger.error("webhook inbox unavailable: %s", mask_text(str(exc)))
            return _error(503, "inbox unavailable")
        age = None
        if oldest is not None:
            age = round(max(clock() - oldest.timestamp(), 0.0), 3)
        document: dict[str, Any] = {
            "status": "ok",
            "inbox": counts,
            "oldest_pending_seconds": age,
            "dispatcher": _dispatcher_state(dispatcher),
        }
        return JSONResponse(document)

    if acks is not None:
        add_ack_routes(app, acks)
    return app


def _audit_accepted(inbox: Inbox, entry: InboxEntry, source: str, identity: str) -> None:
    """Record who (as the reverse proxy says) sent an accepted webhook."""
    try:
        AuditTrail(inbox).record(
            AuditAction.WEBHOOK,
            f"inbox entry {entry.id} ({entry.type})",
            actor=f"webhook:{source} via {identity}",
            outcome="accepted",
        )
    except SQLAlchemyError as exc:
        # The entry is stored and will be dispatched (and audited then); the sender is answered.
        logger.error("webhook inbox %s: no audit entry: %s", entry.id, type(exc).__name__)


def _dispatcher_state(dispatcher: Dispatcher | None) -> str:
    if dispatcher is None:
        return "off"
    return "running" if dispatcher.running else "stopped"


def _error(status: int, reason: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    # Short and fixed: never the body, a header or a secret.
    return JSONResponse({"error": reason}, status_code=status, headers=headers)

"""JANDI incoming-webhook emulator: wire format, registered webhooks, post log, faults, limit.

It follows support.jandi.com/en/articles/6352697 (Accept header, POST only, ``body``
required, ``connectColor``, ``connectInfo[]``) and /6352712 (the team webhook's ``email``).
JANDI documents no answers, error bodies or limits; what this emulator answers there is an
assumption (see docs/sandbox.md):

- success: ``200`` with ``{}``;
- errors: JSON ``{"code": <status>, "msg": <text>}``;
- a missing or other Accept header: ``406``; a body that is not a JSON object, or one
  without a non-empty string ``body``: ``400``;
- an unknown team/token (a webhook never made or removed): ``404``;
- at most `DEFAULT_POSTS_PER_MINUTE` posts a minute per webhook, then ``429`` without a
  ``Retry-After`` (JANDI names no wait).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from moltbot.sandbox.kit import (
    CONTROL_PREFIX,
    EmulatorCore,
    FaultKind,
    RouteFault,
    SlidingWindowLimiter,
    install_emulator,
)
from moltbot.sandbox.recording import RequestJournal

JANDI_ACCEPT = "application/vnd.tosslab.jandi-v2+json"
SANDBOX_TEAM_ID = "20000001"
DEFAULT_POSTS_PER_MINUTE = 60
"""The emulator's per-webhook limit (an assumption: JANDI publishes none)."""

_WEBHOOK_ROUTE = "/connect-api/webhook/"
_RECORDED_HEADERS = ("accept", "content-type", "user-agent")
_ERROR_TEXTS = {
    400: "Bad Request",
    404: "Not Found: the webhook does not exist",
    406: "Not Acceptable: send Accept: " + JANDI_ACCEPT,
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


@dataclass(frozen=True)
class ReceivedPost:
    """A webhook post the emulator accepted (also used by the Dooray! emulator).

    Attributes:
        path: the webhook path below the emulator's mount (``/connect-api/webhook/T/TOKEN``).
        payload: the decoded JSON object, exactly as received.
        received_at: when it arrived (UTC).
        headers: the recorded request headers (lower-case names), never credentials.
    """

    path: str
    payload: dict[str, Any]
    received_at: datetime
    headers: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as served by ``GET <prefix>/_sandbox/posts``."""
        return {
            "path": self.path,
            "payload": self.payload,
            "received_at": self.received_at.isoformat(),
            "headers": self.headers,
        }


@dataclass(frozen=True)
class RefusedPost:
    """A webhook request the emulator refused for what it was (not an injected fault).

    Attributes:
        path: the webhook path.
        status: the status answered.
        error: the error text answered.
        body: the raw request body.
        received_at: when it arrived (UTC).
    """

    path: str
    status: int
    error: str
    body: bytes
    received_at: datetime

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as served by ``GET <prefix>/_sandbox/rejected``."""
        return {
            "path": self.path,
            "status": self.status,
            "error": self.error,
            "body": self.body.decode("utf-8", errors="replace"),
            "received_at": self.received_at.isoformat(),
        }


def token_for(name: str) -> str:
    """The deterministic token of webhook `name` (same name, same URL, every run)."""
    return hashlib.sha256(f"jandi:{name}".encode()).hexdigest()[:32]


def webhook_path(name: str) -> str:
    """The webhook path of `name` below the ``/jandi`` mount."""
    return f"/connect-api/webhook/{SANDBOX_TEAM_ID}/{token_for(name)}"


def relative_webhook_path(path_or_url: str, mount: str, route: str) -> str:
    """A webhook URL or path reduced to the path below `mount` starting with `route`."""
    path = urlsplit(path_or_url).path if "://" in path_or_url else path_or_url
    if path.startswith(mount + "/"):
        path = path[len(mount) :]
    if not path.startswith(route):
        raise ValueError(f"not a webhook path under {mount}{route}")
    return path


class HookState:
    """Shared state of a webhook emulator: registered paths, accepted and refused posts,
    faults, and a per-webhook sliding-window limit with a replaceable clock.

    Every accessor returns a snapshot taken under a lock (uvicorn's thread records while the
    test thread reads).

    Args:
        name: the service name (``jandi``).
        mount: where the app is mounted (``/jandi``).
        route: the webhook paths' prefix below the mount (``/connect-api/webhook/``).
        messages: the error text per status for faults given none.
        posts_per_minute: the per-webhook limit; None for none.
    """

    def __init__(
        self,
        name: str,
        mount: str,
        route: str,
        messages: dict[int, str],
        posts_per_minute: int | None,
    ) -> None:
        self.core = EmulatorCore(name, messages=messages)
        self._mount = mount
        self._route = route
        self._default_limit = posts_per_minute
        self._lock = threading.Lock()
        self._journal: RequestJournal[ReceivedPost, RefusedPost, None] = RequestJournal()
        self._webhooks: set[str] = set()
        self.limiter = SlidingWindowLimiter(posts_per_minute, 60.0)

    @property
    def posts(self) -> list[ReceivedPost]:
        """Accepted posts, oldest first."""
        return self._journal.accepted

    @property
    def rejected(self) -> list[RefusedPost]:
        """Posts refused for what they were (bad header or body, unknown webhook, the limit)."""
        return self._journal.rejected

    @property
    def attempts(self) -> int:
        """Webhook requests received: accepted, refused or faulted."""
        return self.core.count(path=f"^{re.escape(self._route)}")

    @property
    def pending_faults(self) -> list[RouteFault]:
        return self.core.pending_faults

    def _path(self, path_or_url: str) -> str:
        return relative_webhook_path(path_or_url, self._mount, self._route)

    def posts_to(self, path_or_url: str) -> list[ReceivedPost]:
        """Accepted posts to one webhook (its URL or path)."""
        path = self._path(path_or_url)
        return [post for post in self.posts if post.path == path]

    def register(self, path: str) -> str:
        """Accept posts to `path` (below the mount) from now on; return it."""
        path = self._path(path)
        with self._lock:
            self._webhooks.add(path)
        return path

    def unregister(self, path_or_url: str) -> None:
        """Stop accepting a webhook, as when it is removed in the messenger."""
        path = self._path(path_or_url)
        with self._lock:
            self._webhooks.discard(path)

    def set_rate_limit(
        self, posts_per_minute: int | None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        """Replace the per-webhook limit (None: no limit), counted on `clock`."""
        self.limiter = SlidingWindowLimiter(posts_per_minute, 60.0, clock=clock)

    def inject_fault(
        self,
        status: int = 500,
        *,
        kind: FaultKind = "status",
        count: int | None = 1,
        retry_after: int | None = None,
        after_apply: bool = False,
    ) -> RouteFault:
        """Make the next `count` webhook posts fail (see `EmulatorCore.inject_fault`): a
        status (a 429 always names a wait), a ``drop``ped connection, a ``hang``. Use the rate
        limit (`set_rate_limit`) for a 429 that names none."""
        return self.core.inject_fault(
            status,
            kind=kind,
            count=count,
            retry_after=retry_after,
            after_apply=after_apply,
            path=f"^{re.escape(self._route)}",
        )

    def clear_faults(self) -> None:
        """Drop all pending faults."""
        self.core.clear_faults()

    def reset(self) -> None:
        """Back to the start: no webhooks, posts, faults; the default limit on the real clock."""
        self._journal.clear()
        self.core.reset()
        with self._lock:
            self._webhooks.clear()
        self.limiter = SlidingWindowLimiter(self._default_limit, 60.0)

    def is_known(self, path: str) -> bool:
        with self._lock:
            return path in self._webhooks

    def record_post(self, post: ReceivedPost) -> None:
        self._journal.record_accepted(post)

    def record_refusal(self, refusal: RefusedPost) -> None:
        self._journal.record_rejected(refusal)


class JandiState(HookState):
    """In-memory state of the JANDI emulator (see `HookState`)."""

    def __init__(self) -> None:
        super().__init__("jandi", "/jandi", _WEBHOOK_ROUTE, _ERROR_TEXTS, DEFAULT_POSTS_PER_MINUTE)

    def register_webhook(self, name: str) -> str:
        """Accept posts to webhook `name` from now on; return its path below ``/jandi``."""
        return self.register(webhook_path(name))


def _jandi_error(status: int, message: str) -> Response:
    return JSONResponse({"code": status, "msg": message}, status_code=status)


def decode_object(raw: bytes) -> dict[str, Any] | None:
    """The JSON object in `raw`, or None when it is not one."""
    try:
        payload = json.loads(raw)
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None


def _body_problem(payload: dict[str, Any]) -> str | None:
    body = payload.get("body")
    if not isinstance(body, str) or not body.strip():
        return "body is required"
    info = payload.get("connectInfo")
    if "connectInfo" in payload and not (
        isinstance(info, list) and all(isinstance(entry, dict) for entry in info)
    ):
        return "connectInfo must be a list of objects"
    if "email" in payload and not isinstance(payload["email"], str):
        return "email must be a string"
    return None


def install_control_routes(app: FastAPI, state: HookState) -> None:
    """``GET/DELETE /_sandbox/posts`` and ``GET /_sandbox/rejected`` on a hook emulator."""

    @app.get(f"{CONTROL_PREFIX}/posts")
    def list_posts() -> JSONResponse:
        return JSONResponse([post.to_dict() for post in state.posts])

    @app.delete(f"{CONTROL_PREFIX}/posts")
    def clear_posts() -> JSONResponse:
        state._journal.clear_requests()
        return JSONResponse({"cleared": True})

    @app.get(f"{CONTROL_PREFIX}/rejected")
    def list_rejected() -> JSONResponse:
        return JSONResponse([refusal.to_dict() for refusal in state.rejected])


def create_jandi_app(state: JandiState) -> FastAPI:
    """Build the JANDI sub-app (mounted under ``/jandi``) serving `state`."""
    app = FastAPI(title="moltbot sandbox: JANDI incoming webhooks")

    @app.post("/connect-api/webhook/{team_id}/{token}")
    async def incoming_webhook(team_id: str, token: str, request: Request) -> Response:
        path = f"/connect-api/webhook/{team_id}/{token}"
        raw = await request.body()
        now = datetime.now(UTC)

        def refuse(status: int, error: str) -> Response:
            state.record_refusal(RefusedPost(path, status, error, raw, now))
            return _jandi_error(status, error)

        if not state.is_known(path):
            return refuse(404, _ERROR_TEXTS[404])
        if request.headers.get("accept", "").split(";")[0].strip() != JANDI_ACCEPT:
            return refuse(406, _ERROR_TEXTS[406])
        payload = decode_object(raw)
        if payload is None:
            return refuse(400, "the body must be a JSON object")
        problem = _body_problem(payload)
        if problem is not None:
            return refuse(400, problem)
        if state.limiter.acquire(path) is not None:
            return refuse(429, _ERROR_TEXTS[429])
        headers = {k: request.headers[k] for k in _RECORDED_HEADERS if k in request.headers}
        state.record_post(ReceivedPost(path, payload, now, headers))
        return JSONResponse({})

    install_emulator(app, state.core, _jandi_error)
    install_control_routes(app, state)
    return app

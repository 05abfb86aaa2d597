"""Slack emulator: incoming webhooks (wire format, post log, faults) and the bot Web API."""

from __future__ import annotations

import hashlib
import json
import secrets
import string
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from moltbot.sandbox.kit import CONTROL_PREFIX, EmulatorCore, RouteFault, install_emulator
from moltbot.sandbox.recording import RequestJournal
from moltbot.sandbox.slack_web import SlackWebState, install_web_api

SANDBOX_TEAM = "T0SANDBOX"
SANDBOX_BOT = "B0SANDBOX"
# The fixed webhook of the saved `sandbox-slack` block, so scripts can post without setup.
SANDBOX_WEBHOOK_PATH = "/services/T0000/B0000/sandbox"
# The ops channel's webhook (failure alerts), apart from the business channels' one.
SANDBOX_OPS_WEBHOOK_PATH = "/services/T0000/B0000/ops"

# Plain-text bodies Slack answers with (Slack changelog 2016-05-17, INTEGRATIONS.md section 4);
# 429 and 503 are not in that table but are what a client must be ready for.
DEFAULT_ERROR_BODIES: dict[int, str] = {
    400: "invalid_payload",
    403: "action_prohibited",
    404: "channel_not_found",
    410: "channel_is_archived",
    429: "rate_limited",
    500: "rollup_error",
    503: "service_unavailable",
}

# Faults injected through `SlackState.inject_fault` hit webhook posts, not the inspection routes.
_WEBHOOK_ROUTE = r"^/services/"
# Only these request headers are kept: enough to check what a client sends, never credentials.
_RECORDED_HEADERS = ("content-type", "user-agent")
_TOKEN_ALPHABET = string.ascii_letters + string.digits


def webhook_path(name: str) -> str:
    """Return the deterministic webhook path for ``name`` (same name, same path, every run)."""
    token = hashlib.sha256(name.encode("utf-8")).hexdigest()[:24]
    return f"/services/{SANDBOX_TEAM}/{SANDBOX_BOT}/{token}"


def normalize_webhook_path(path_or_url: str) -> str:
    """Reduce a webhook URL or path to the Slack-relative form ``/services/T/B/TOKEN``.

    Accepts a full sandbox URL, a path under the ``/slack`` mount, or the bare Slack path, so
    callers can pass whatever they configured a block with.
    """
    path = urlsplit(path_or_url).path if "://" in path_or_url else path_or_url
    if path.startswith("/slack/"):
        path = path[len("/slack") :]
    parts = path.strip("/").split("/")
    if len(parts) != 4 or parts[0] != "services" or not all(parts[1:]):
        raise ValueError(f"not a Slack webhook path: {path_or_url!r}")
    return "/" + "/".join(parts)


@dataclass(frozen=True)
class SlackPost:
    """A webhook post the emulator accepted (answered ``200 ok``).

    Attributes:
        path: Slack-relative webhook path, ``/services/T/B/TOKEN``.
        payload: the decoded JSON object.
        received_at: when the emulator received it (UTC).
        headers: the recorded subset of request headers (lower-case names).
    """

    path: str
    payload: dict[str, Any]
    received_at: datetime
    headers: dict[str, str]

    @property
    def text(self) -> str | None:
        """The top-level ``text`` field, if any."""
        text = self.payload.get("text")
        return text if isinstance(text, str) else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as served by ``GET /slack/_sandbox/posts``."""
        return {
            "path": self.path,
            "payload": self.payload,
            "received_at": self.received_at.isoformat(),
            "headers": self.headers,
        }


@dataclass(frozen=True)
class RejectedPost:
    """A webhook request the emulator refused (a bad payload or an unknown webhook).

    Attributes:
        path: Slack-relative webhook path.
        status: the HTTP status answered.
        error: the plain-text error body answered (``invalid_payload``, ``rate_limited`` …).
        body: the raw request body.
        received_at: when the emulator received it (UTC).
    """

    path: str
    status: int
    error: str
    body: bytes
    received_at: datetime

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as served by ``GET /slack/_sandbox/rejected``."""
        return {
            "path": self.path,
            "status": self.status,
            "error": self.error,
            "body": self.body.decode("utf-8", errors="replace"),
            "received_at": self.received_at.isoformat(),
        }


class SlackState:
    """In-memory state of the Slack emulator, shared by the HTTP handlers and Python callers.

    Every accessor returns a snapshot taken under a lock, because uvicorn's thread appends
    while the test thread reads; mutate through the methods (`clear_posts`, `reset` …).

    Attributes:
        posts: snapshot of accepted posts, oldest first.
        rejected: snapshot of requests refused for what they were (a bad payload, an unknown
            webhook); injected faults are in `core.requests` with their `fault`.
        attempts: number of webhook requests received, accepted, refused or faulted.
        webhooks: the webhook paths it accepts; others answer ``404 no_service``. At first
            only the fixed `SANDBOX_WEBHOOK_PATH` and `SANDBOX_OPS_WEBHOOK_PATH`;
            `register_webhook` adds more.
        pending_faults: faults not yet used up, in the order they are tried.
        core: the request log and route faults every emulator shares; `inject_fault` is the
            Slack-shaped shortcut to it.
        web: the Web API side (bot tokens, channels, messages under ``/api/``).
    """

    def __init__(self) -> None:
        self.core = EmulatorCore("slack", messages=DEFAULT_ERROR_BODIES)
        self._lock = threading.Lock()
        self._journal: RequestJournal[SlackPost, RejectedPost, None] = RequestJournal()
        self._webhooks: set[str] = {SANDBOX_WEBHOOK_PATH, SANDBOX_OPS_WEBHOOK_PATH}
        self.web = SlackWebState(self.core)

    @property
    def posts(self) -> list[SlackPost]:
        return self._journal.accepted

    @property
    def rejected(self) -> list[RejectedPost]:
        return self._journal.rejected

    @property
    def attempts(self) -> int:
        return self.core.count(path=r"^/services/")

    @property
    def webhooks(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._webhooks)

    @property
    def pending_faults(self) -> list[RouteFault]:
        return self.core.pending_faults

    def messages_for(self, path_or_url: str) -> list[SlackPost]:
        """Accepted posts sent to one webhook (URL or path, see `normalize_webhook_path`)."""
        path = normalize_webhook_path(path_or_url)
        return [post for post in self.posts if post.path == path]

    def register_webhook(self, path_or_url: str | None = None) -> str:
        """Accept posts to a webhook path from now on and return it; a fresh random token when
        none is given. Posts to paths never registered answer ``404 no_service``, as Slack does.
        """
        if path_or_url is None:
            token = "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(24))
            path = f"/services/{SANDBOX_TEAM}/{SANDBOX_BOT}/{token}"
        else:
            path = normalize_webhook_path(path_or_url)
        with self._lock:
            self._webhooks.add(path)
        return path

    def unregister_webhook(self, path_or_url: str) -> None:
        """Stop accepting a webhook, as when it is removed in Slack (its posts then get 404)."""
        path = normalize_webhook_path(path_or_url)
        with self._lock:
            self._webhooks.discard(path)

    def inject_fault(
        self,
        status: int,
        count: int = 1,
        *,
        retry_after: int | None = None,
        body: str | None = None,
        delay_seconds: float = 0.0,
    ) -> RouteFault:
        """Make the next ``count`` webhook requests answer ``status`` instead of being accepted.

        The answer is Slack's plain-text error for the status (``rate_limited`` …) unless `body`
        is given. Faults queue up: a second call applies after the first is used up.
        ``status=200`` with ``delay_seconds`` gives slow but successful responses. A 429
        without ``retry_after`` sends ``Retry-After: 1``, as Slack always names a wait.

        Raises:
            ValueError: a status other than 200 or 4xx/5xx, a negative delay, or a delay with
                an error status.
        """
        if delay_seconds < 0:
            raise ValueError(f"delay_seconds must not be negative, got {delay_seconds}")
        if status == 200:
            return self.core.inject_fault(
                kind="slow", count=count, seconds=delay_seconds, path=_WEBHOOK_ROUTE
            )
        if delay_seconds:
            raise ValueError("delay_seconds goes with status 200 (a slow success) only")
        return self.core.inject_fault(
            status, count=count, retry_after=retry_after, message=body, path=_WEBHOOK_ROUTE
        )

    def clear_faults(self) -> None:
        """Drop all pending faults."""
        self.core.clear_faults()

    def clear_posts(self) -> None:
        """Forget accepted and rejected requests (registered webhooks and faults stay)."""
        self._journal.clear_requests()

    def reset(self) -> None:
        """Back to the start: no posts, rejections or faults; only the fixed webhooks accepted."""
        self._journal.clear()
        self.core.reset()
        self.web.reset()
        with self._lock:
            self._webhooks = {SANDBOX_WEBHOOK_PATH, SANDBOX_OPS_WEBHOOK_PATH}

    def _is_known(self, path: str) -> bool:
        with self._lock:
            return path in self._webhooks

    def _record_post(self, post: SlackPost) -> None:
        self._journal.record_accepted(post)

    def _record_rejection(self, rejection: RejectedPost) -> None:
        self._journal.record_rejected(rejection)


def _decode_payload(raw: bytes, content_type: str) -> dict[str, Any]:
    # Slack also accepts the legacy form encoding `payload=<json>`; some older clients use it.
    if content_type.startswith("application/x-www-form-urlencoded"):
        fields = parse_qs(raw.decode("utf-8", errors="replace"))
        if "payload" not in fields:
            raise ValueError("invalid_payload")
        raw = fields["payload"][0].encode("utf-8")
    try:
        payload = json.loads(raw)
    except ValueError:  # includes UnicodeDecodeError
        raise ValueError("invalid_payload") from None
    if not isinstance(payload, dict):
        raise ValueError("invalid_payload")
    return payload


def validate_payload(payload: dict[str, Any]) -> None:
    """Raise ``ValueError(<slack error>)`` when Slack would refuse ``payload``."""
    blocks = payload.get("blocks")
    if "blocks" in payload and not (
        isinstance(blocks, list)
        and all(isinstance(b, dict) and isinstance(b.get("type"), str) for b in blocks)
    ):
        raise ValueError("invalid_blocks")
    attachments = payload.get("attachments")
    if "attachments" in payload and not (
        isinstance(attachments, list) and all(isinstance(a, dict) for a in attachments)
    ):
        raise ValueError("invalid_payload")
    text = payload.get("text")
    if "text" in payload and not isinstance(text, str):
        raise ValueError("invalid_payload")
    # apprise posts attachments without any top-level text, and Slack accepts that.
    if not (text or blocks or attachments):
        raise ValueError("invalid_payload")


def _error_response(status: int, message: str) -> Response:
    # Slack answers errors in plain text (its words per status are the core's default messages).
    return PlainTextResponse(message, status_code=status)


def create_slack_app(state: SlackState) -> FastAPI:
    """Build the Slack sub-app (mounted under ``/slack``) serving ``state``."""
    app = FastAPI(title="moltbot sandbox: Slack incoming webhooks and Web API")

    @app.post("/services/{team}/{bot}/{token}")
    async def incoming_webhook(team: str, bot: str, token: str, request: Request) -> Response:
        path = f"/services/{team}/{bot}/{token}"
        raw = await request.body()
        now = datetime.now(UTC)

        def reject(status: int, error: str) -> None:
            state._record_rejection(RejectedPost(path, status, error, raw, now))

        if not state._is_known(path):
            reject(404, "no_service")
            return PlainTextResponse("no_service", status_code=404)
        try:
            payload = _decode_payload(raw, request.headers.get("content-type", ""))
            validate_payload(payload)
        except ValueError as exc:
            reject(400, str(exc))
            return PlainTextResponse(str(exc), status_code=400)

        headers = {k: request.headers[k] for k in _RECORDED_HEADERS if k in request.headers}
        state._record_post(SlackPost(path, payload, now, headers))
        return PlainTextResponse("ok")

    install_web_api(app, state.web)
    install_emulator(app, state.core, _error_response)

    @app.get(f"{CONTROL_PREFIX}/posts")
    def list_posts() -> JSONResponse:
        return JSONResponse([post.to_dict() for post in state.posts])

    @app.delete(f"{CONTROL_PREFIX}/posts")
    def clear_posts() -> JSONResponse:
        state.clear_posts()
        return JSONResponse({"cleared": True})

    @app.get(f"{CONTROL_PREFIX}/rejected")
    def list_rejected() -> JSONResponse:
        return JSONResponse([r.to_dict() for r in state.rejected])

    return app

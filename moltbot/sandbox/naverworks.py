"""NAVER WORKS API 2.0 emulator (mounted at /naverworks): the token endpoint that verifies the
service-account JWT, bot messages to channels and users, and the 240-a-minute rate limit."""

from __future__ import annotations

import math
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any
from urllib.parse import parse_qs, unquote

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from moltbot.sandbox.kit import EmulatorCore, RouteFault, SlidingWindowLimiter, install_emulator

JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TOKEN_PATH = "/oauth2/v2.0/token"
API_PREFIX = "/v1.0"

SANDBOX_CLIENT_ID = "sandboxClientId0001"
SANDBOX_CLIENT_SECRET = "sandbox-naverworks-client-secret"
SANDBOX_SERVICE_ACCOUNT = "sandbox.serviceaccount@moltbot.test"
SANDBOX_BOT_ID = "6800001"
SANDBOX_CHANNEL_ID = "sandbox-channel-0001"
SANDBOX_USER_ID = "ops@moltbot.test"

# Access tokens last 24 hours here (the server issues 1 h or 24 h ones, developers.worksmobile.
# com/jp/docs/auth-jwt); an assertion may be valid for at most an hour.
TOKEN_LIFETIME_SECONDS = 86400
MAX_ASSERTION_SECONDS = 3600
# developers.worksmobile.com/en/docs/rate-limits: 240 requests a minute per API (paid plans).
RATE_LIMIT_PER_MINUTE = 240
TEXT_LIMIT = 2000
CONTENT_TEXT_LIMIT = 1000
MAX_BUTTONS = 10

# {"code", "description"} as the rate-limit page shows for 429; the other codes are ASSUMED.
ERROR_CODES: dict[int, str] = {
    400: "INVALID_PARAMETER",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    429: "TOO_MANY_REQUESTS",
    500: "INTERNAL_SERVER_ERROR",
    502: "BAD_GATEWAY",
    503: "SERVICE_UNAVAILABLE",
    504: "GATEWAY_TIMEOUT",
}
_MESSAGE_ROUTE = r"^/v1\.0/bots/[^/]+/(channels|users)/[^/]+/messages$"


class WorksError(Exception):
    """An API error in NAVER WORKS's shape (``{"code", "description"}``)."""

    def __init__(self, status: int, description: str, code: str | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.code = code or ERROR_CODES.get(status, "ERROR")
        self.description = description


class OAuthError(Exception):
    """A token endpoint error in OAuth's shape (``{"error", "error_description"}``)."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description


def error_response(status: int, description: str, code: str | None = None) -> JSONResponse:
    """NAVER WORKS's error body: ``{"code": "TOO_MANY_REQUESTS", "description": "…"}``."""
    return JSONResponse(
        {"code": code or ERROR_CODES.get(status, "ERROR"), "description": description},
        status_code=status,
    )


def generate_private_key_pem() -> str:
    """A fresh RSA private key in PEM (PKCS#8), like the key file the Developer Console issues."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")


def public_key_pem(private_pem: str) -> str:
    """The public half of `private_pem`, what the server keeps to verify assertions."""
    private_key = serialization.load_pem_private_key(private_pem.encode("ascii"), password=None)
    return (
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


@cache
def _sandbox_private_key() -> str:
    # Generated once per process (about 0.1 s).
    return generate_private_key_pem()


@cache
def _sandbox_public_key() -> str:
    # Parsed once per process: every `reset` (twice a test) would otherwise spend ~30 ms on it.
    return public_key_pem(_sandbox_private_key())


def sandbox_naverworks_fields(base_url: str) -> dict[str, str]:
    """The fields of a `NaverWorksBot` on the sandbox at `base_url` with its registered app.

    Args:
        base_url: the sandbox root, ``http://127.0.0.1:PORT``.
    """
    return {
        "client_id": SANDBOX_CLIENT_ID,
        "client_secret": SANDBOX_CLIENT_SECRET,
        "service_account": SANDBOX_SERVICE_ACCOUNT,
        "private_key": _sandbox_private_key(),
        "bot_id": SANDBOX_BOT_ID,
        "channel_id": SANDBOX_CHANNEL_ID,
        "auth_url": f"{base_url}/naverworks{TOKEN_PATH}",
        "api_base": f"{base_url}/naverworks{API_PREFIX}",
    }


@dataclass(frozen=True)
class _App:
    client_secret: str
    service_account: str
    public_pem: str


@dataclass(frozen=True)
class _Grant:
    client_id: str
    scopes: frozenset[str]
    expires_at: float


@dataclass(frozen=True)
class WorksMessage:
    """A bot message the emulator accepted.

    Attributes:
        bot_id: the bot that sent it.
        channel_id: the room it went to (None for a user message).
        user_id: the user it went to (None for a room message).
        content: the message's ``content`` object.
        received_at: when it arrived (UTC).
    """

    bot_id: str
    channel_id: str | None
    user_id: str | None
    content: dict[str, Any]
    received_at: datetime

    @property
    def text(self) -> str:
        """The message's text (``text``, or ``contentText`` of a link or button template)."""
        return str(self.content.get("text") or self.content.get("contentText") or "")


@dataclass(frozen=True)
class TokenRequest:
    """One request to the token endpoint and how it was answered.

    Attributes:
        client_id: the client id it named.
        grant_type: the grant type as received (once or twice URL-encoded).
        status: the status answered.
        error: the OAuth error answered, None for a token.
    """

    client_id: str
    grant_type: str
    status: int
    error: str | None


class NaverWorksState:
    """In-memory state of the NAVER WORKS emulator: apps and their public keys, issued tokens,
    bots, rooms, users, messages, the rate limit and faults.

    Args:
        clock: seconds since the epoch for token and assertion expiry; tests pass their own.

    Attributes:
        core: the request log and route faults (`inject_fault` is the shortcut).
        limiter: 240 requests a minute per app and API (`set_rate_limit` changes it).
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.core = EmulatorCore("naverworks")
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Back to the sandbox app, bot, room and user; no tokens, messages or faults."""
        self.core.reset()
        with self._lock:
            self._apps = {
                SANDBOX_CLIENT_ID: _App(
                    SANDBOX_CLIENT_SECRET,
                    SANDBOX_SERVICE_ACCOUNT,
                    _sandbox_public_key(),
                )
            }
            self._grants: dict[str, _Grant] = {}
            self._bots = {SANDBOX_BOT_ID}
            self._channels = {SANDBOX_CHANNEL_ID}
            self._users = {SANDBOX_USER_ID}
            self._messages: list[WorksMessage] = []
            self._token_requests: list[TokenRequest] = []
        self.limiter = SlidingWindowLimiter(RATE_LIMIT_PER_MINUTE, 60.0, clock=self.clock)

    def set_clock(self, clock: Callable[[], float]) -> None:
        """Judge expiry and count the rate limit by `clock` from now on."""
        self.clock = clock
        self.limiter = SlidingWindowLimiter(self.limiter.limit, 60.0, clock=clock)

    def set_rate_limit(self, per_minute: int | None = RATE_LIMIT_PER_MINUTE) -> None:
        """Requests a minute per app and API (60 models the free plan); None turns it off."""
        self.limiter = SlidingWindowLimiter(per_minute, 60.0, clock=self.clock)

    def register_app(
        self, client_id: str, client_secret: str, service_account: str, public_pem: str
    ) -> None:
        """Accept assertions of `service_account` signed by the key whose public half is given."""
        with self._lock:
            self._apps[client_id] = _App(client_secret, service_account, public_pem)

    def revoke_tokens(self) -> None:
        """Forget every issued access token (a client's cached token then gets 401)."""
        with self._lock:
            self._grants.clear()

    def add_channel(self, channel_id: str) -> None:
        """Put the sandbox bot into another message room."""
        with self._lock:
            self._channels.add(channel_id)

    @property
    def messages(self) -> list[WorksMessage]:
        """Accepted messages, oldest first."""
        with self._lock:
            return list(self._messages)

    @property
    def token_requests(self) -> list[TokenRequest]:
        """Every token request, oldest first."""
        with self._lock:
            return list(self._token_requests)

    @property
    def tokens_issued(self) -> int:
        """How many access tokens were issued."""
        return sum(1 for r in self.token_requests if r.error is None)

    def inject_fault(
        self,
        status: int = 500,
        *,
        kind: str = "status",
        count: int | None = 1,
        token_endpoint: bool = False,
        retry_after: int | None = None,
        after_apply: bool = False,
    ) -> RouteFault:
        """Fault the next `count` message posts (or token requests, with `token_endpoint`).

        A 429 without `retry_after` sends ``Retry-After: 1``; `kind` ``drop`` closes the
        connection without an answer (`after_apply`: after the message was taken).
        """
        return self.core.inject_fault(
            status,
            kind=kind,  # type: ignore[arg-type]
            count=count,
            method="POST",
            path=f"^{re.escape(TOKEN_PATH)}$" if token_endpoint else _MESSAGE_ROUTE,
            retry_after=retry_after,
            after_apply=after_apply,
        )

    def clear_faults(self) -> None:
        """Drop every pending fault."""
        self.core.clear_faults()

    # -- what the handlers do ------------------------------------------------------------------

    def _issue_token(self, form: dict[str, str]) -> tuple[str, _Grant]:
        client_id = form.get("client_id", "")
        grant_type = form.get("grant_type", "")
        try:
            token, grant = self._check_grant(form, client_id, grant_type)
        except OAuthError as refused:
            self._log_token(TokenRequest(client_id, grant_type, refused.status, refused.error))
            raise
        self._log_token(TokenRequest(client_id, grant_type, 200, None))
        return token, grant

    def _log_token(self, request: TokenRequest) -> None:
        with self._lock:
            self._token_requests.append(request)

    def _check_grant(
        self, form: dict[str, str], client_id: str, grant_type: str
    ) -> tuple[str, _Grant]:
        # The official sample URL-encodes grant_type before the form encoding does it again.
        if unquote(grant_type) != JWT_BEARER_GRANT:
            raise OAuthError(400, "unsupported_grant_type", "grant_type is not supported")
        with self._lock:
            app = self._apps.get(client_id)
        if app is None or not secrets.compare_digest(
            form.get("client_secret", ""), app.client_secret
        ):
            raise OAuthError(401, "invalid_client", "client authentication failed")
        assertion = form.get("assertion", "")
        try:
            # Expiry is judged below by the emulator's clock, not the wall clock.
            claims = jwt.decode(
                assertion,
                app.public_pem,
                algorithms=["RS256"],
                options={"verify_exp": False, "verify_iat": False, "require": ["exp", "iat"]},
            )
        except jwt.PyJWTError:
            raise OAuthError(400, "invalid_grant", "assertion signature is invalid") from None
        if claims.get("iss") != client_id or claims.get("sub") != app.service_account:
            raise OAuthError(400, "invalid_grant", "assertion iss or sub does not match")
        now = self.clock()
        issued, expires = float(claims["iat"]), float(claims["exp"])
        if expires <= now or expires - issued > MAX_ASSERTION_SECONDS or issued > now + 60:
            raise OAuthError(400, "invalid_grant", "assertion is expired or not yet valid")
        scopes = frozenset(form.get("scope", "").replace(",", " ").split())
        if not scopes & {"bot", "bot.message"}:
            raise OAuthError(400, "invalid_scope", "scope bot is required")
        token = "sandbox-works-" + secrets.token_urlsafe(24)
        grant = _Grant(client_id, scopes, now + TOKEN_LIFETIME_SECONDS)
        with self._lock:
            self._grants[token] = grant
        return token, grant

    def _authorize(self, request: Request, api: str) -> _Grant:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        with self._lock:
            grant = self._grants.get(token) if scheme.lower() == "bearer" else None
        if grant is None or grant.expires_at <= self.clock():
            raise WorksError(401, "Authentication failed", "UNAUTHORIZED")
        if not grant.scopes & {"bot", "bot.message"}:
            raise WorksError(403, "The scope is not allowed", "FORBIDDEN")
        wait = self.limiter.acquire(f"{grant.client_id}:{api}")
        if wait is not None:
            raise _RateLimited(max(1, math.ceil(wait)))
        return grant

    def _post_message(
        self, bot_id: str, channel_id: str | None, user_id: str | None, body: object
    ) -> None:
        content = body.get("content") if isinstance(body, dict) else None
        _validate_content(content)
        with self._lock:
            if bot_id not in self._bots:
                raise WorksError(404, "Bot not found", "NOT_FOUND")
            if channel_id is not None and channel_id not in self._channels:
                raise WorksError(404, "Channel not found", "NOT_FOUND")
            if user_id is not None and user_id not in self._users:
                raise WorksError(404, "User not found", "NOT_FOUND")
            self._messages.append(
                WorksMessage(bot_id, channel_id, user_id, dict(content), datetime.now(UTC))  # type: ignore[arg-type]
            )


def _validate_content(content: object) -> None:
    def invalid(description: str) -> WorksError:
        return WorksError(400, description, "INVALID_PARAMETER")

    if not isinstance(content, dict):
        raise invalid("content is required")
    kind = content.get("type")
    if kind == "text":
        text = content.get("text")
        if not isinstance(text, str) or not text or len(text) > TEXT_LIMIT:
            raise invalid(f"content.text must be 1 to {TEXT_LIMIT} characters")
        return
    if kind not in ("link", "button_template"):
        raise invalid("content.type is not supported by the sandbox")
    text = content.get("contentText")
    if not isinstance(text, str) or not text or len(text) > CONTENT_TEXT_LIMIT:
        raise invalid(f"content.contentText must be 1 to {CONTENT_TEXT_LIMIT} characters")
    if kind == "link":
        if not content.get("linkText") or not str(content.get("link", "")).startswith("http"):
            raise invalid("content.linkText and content.link are required")
        return
    actions = content.get("actions")
    if not isinstance(actions, list) or not 1 <= len(actions) <= MAX_BUTTONS:
        raise invalid(f"content.actions must hold 1 to {MAX_BUTTONS} actions")
    for action in actions:
        if not isinstance(action, dict) or not action.get("label"):
            raise invalid("content.actions[].label is required")
        if action.get("type") == "uri" and not str(action.get("uri", "")).startswith("http"):
            raise invalid("content.actions[].uri is required")


class _RateLimited(Exception):
    def __init__(self, reset_seconds: int) -> None:
        super().__init__(f"rate limited for {reset_seconds}s")
        self.reset_seconds = reset_seconds


def create_naverworks_app(state: NaverWorksState) -> FastAPI:
    """Build the NAVER WORKS sub-app (mounted under ``/naverworks``) serving `state`.

    Routes: ``POST /oauth2/v2.0/token`` (form: JWT bearer grant), ``POST
    /v1.0/bots/{botId}/channels/{channelId}/messages`` and ``…/users/{userId}/messages``
    (``Authorization: Bearer <access token>``, answer 201 without a body).
    """
    app = FastAPI(title="moltbot sandbox: NAVER WORKS", docs_url=None, redoc_url=None)

    @app.exception_handler(WorksError)
    async def works_error(request: Request, exc: WorksError) -> Response:
        return error_response(exc.status, exc.description, exc.code)

    @app.exception_handler(OAuthError)
    async def oauth_error(request: Request, exc: OAuthError) -> Response:
        return JSONResponse(
            {"error": exc.error, "error_description": exc.description}, status_code=exc.status
        )

    @app.exception_handler(_RateLimited)
    async def rate_limited(request: Request, exc: _RateLimited) -> Response:
        response = error_response(429, "API rate limit exceeded", "TOO_MANY_REQUESTS")
        limit = state.limiter.limit or 0
        response.headers["rateLimit-limit"] = str(limit)
        response.headers["rateLimit-remaining"] = "0"
        response.headers["rateLimit-reset"] = str(exc.reset_seconds)
        return response

    @app.post(TOKEN_PATH)
    async def token(request: Request) -> Response:
        if not request.headers.get("content-type", "").startswith(
            "application/x-www-form-urlencoded"
        ):
            raise OAuthError(400, "invalid_request", "the token request must be a form")
        raw = (await request.body()).decode("utf-8", errors="replace")
        form = {key: values[-1] for key, values in parse_qs(raw).items()}
        access_token, grant = state._issue_token(form)
        return JSONResponse(
            {
                "access_token": access_token,
                "refresh_token": "sandbox-refresh-" + secrets.token_urlsafe(16),
                "token_type": "Bearer",
                # The server answers it as a string.
                "expires_in": str(TOKEN_LIFETIME_SECONDS),
                "scope": " ".join(sorted(grant.scopes)),
            }
        )

    async def _body(request: Request) -> object:
        try:
            return await request.json()
        except ValueError:
            raise WorksError(400, "Request body is not JSON", "INVALID_PARAMETER") from None

    @app.post(f"{API_PREFIX}/bots/{{bot_id}}/channels/{{channel_id}}/messages")
    async def channel_message(bot_id: str, channel_id: str, request: Request) -> Response:
        state._authorize(request, "channel-messages")
        state._post_message(bot_id, channel_id, None, await _body(request))
        return Response(status_code=201)

    @app.post(f"{API_PREFIX}/bots/{{bot_id}}/users/{{user_id}}/messages")
    async def user_message(bot_id: str, user_id: str, request: Request) -> Response:
        state._authorize(request, "user-messages")
        state._post_message(bot_id, None, user_id, await _body(request))
        return Response(status_code=201)

    install_emulator(app, state.core, error_response)
    return app

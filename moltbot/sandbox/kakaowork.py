"""KakaoWork Web API emulator (mounted at /kakaowork): users.find_by_email, conversations.open
and .list, messages.send with Block Kit checks, the app-key check, and an assumed rate limit."""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from moltbot.sandbox.kit import EmulatorCore, RouteFault, TokenBucketLimiter, install_emulator

SANDBOX_KAKAOWORK_APP_KEY = "sandbox.kakaowork-app-key"
# The seeded group room the bot is in, and the people the sandbox knows.
SANDBOX_KAKAOWORK_CONVERSATION = "20001"
SANDBOX_KAKAOWORK_USERS: tuple[tuple[str, str], ...] = (
    ("ops@moltbot.test", "김운영"),
    ("oncall@moltbot.test", "박당번"),
)
# A 1:1 room's id follows from its user's, so a room a client remembers survives a reset.
_DIRECT_ROOM_OFFSET = 10000
_FIRST_USER_ID = 2601

# KakaoWork publishes no limit ("excessive use may be limited without notice",
# docs.kakaoi.ai/kakao_work/webapireference/commonguide/). ASSUMED: 10 requests a second per
# app key with bursts of 20, so a loop that ignores 429s meets one quickly.
ASSUMED_RATE = 10.0
ASSUMED_BURST = 20

# Block Kit checks (docs.kakaoi.ai/kakao_work/blockkit/…, and the numbers the community client
# skyoo2003/kakaowork-py validates): header and button text at most 20 characters, a text
# block at most 500, a description term at most 10.
_TEXT_LIMITS = {"header": 20, "button": 20, "text": 500}
_TERM_LIMIT = 10
BLOCK_TYPES = (
    "text",
    "image_link",
    "button",
    "divider",
    "header",
    "action",
    "description",
    "section",
    "context",
)
_HEADER_STYLES = ("blue", "red", "yellow")
_BUTTON_STYLES = ("default", "primary", "danger")

# Error codes (community client kakaowork-py `models.py`); the HTTP statuses that carry them
# are not documented: these are ASSUMED.
ERROR_CODES: dict[int, str] = {
    400: "invalid_parameter",
    401: "invalid_authentication",
    404: "not_found",
    429: "too_many_requests",
    500: "internal_server_error",
    502: "internal_server_error",
    503: "service_unavailable",
    504: "internal_server_error",
}


class KakaoWorkError(Exception):
    """An error answer in KakaoWork's shape, raised by the handlers."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def error_response(status: int, message: str, code: str | None = None) -> JSONResponse:
    """KakaoWork's failure shape: ``{"success": false, "error": {"code", "message"}}``."""
    return JSONResponse(
        {
            "success": False,
            "error": {"code": code or ERROR_CODES.get(status, "unknown_error"), "message": message},
        },
        status_code=status,
    )


@dataclass(frozen=True)
class KakaoWorkMessage:
    """A message the emulator accepted.

    Attributes:
        id: the message id answered.
        conversation_id: the room it went to.
        text: the top-level (push) text.
        blocks: the Block Kit blocks.
        received_at: when it arrived (UTC).
    """

    id: str
    conversation_id: str
    text: str
    blocks: list[dict[str, Any]]
    received_at: datetime

    def block_texts(self) -> list[str]:
        """The texts of its header and text blocks, in order."""
        return [str(b["text"]) for b in self.blocks if b.get("type") in ("header", "text")]


@dataclass
class _Conversation:
    id: str
    type: str
    name: str
    user_ids: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "name": self.name,
            "users_count": len(self.user_ids) + 1,
            "avatar_url": None,
        }


class KakaoWorkState:
    """In-memory state of the KakaoWork emulator: app keys, users, rooms, messages, faults.

    Attributes:
        core: the request log and route faults (`inject_fault` is the shortcut).
        limiter: the assumed rate limit per app key (`set_rate_limit` changes it).
    """

    def __init__(self) -> None:
        self.core = EmulatorCore("kakaowork")
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Back to the seeded users and room, the sandbox app key, no messages or faults."""
        self.core.reset()
        with self._lock:
            self._app_keys = {SANDBOX_KAKAOWORK_APP_KEY}
            self._users: dict[str, dict[str, Any]] = {}
            self._ids = itertools.count(_FIRST_USER_ID)
            self._conversations: dict[str, _Conversation] = {
                SANDBOX_KAKAOWORK_CONVERSATION: _Conversation(
                    SANDBOX_KAKAOWORK_CONVERSATION, "group", "moltbot 알림"
                )
            }
            self._messages: list[KakaoWorkMessage] = []
            self._message_ids = itertools.count(1)
        for email, name in SANDBOX_KAKAOWORK_USERS:
            self.add_user(email, name)
        self.limiter = TokenBucketLimiter(ASSUMED_RATE, ASSUMED_BURST)

    def set_rate_limit(
        self,
        rate: float | None = ASSUMED_RATE,
        burst: int = ASSUMED_BURST,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Change the (assumed) limit: `rate` requests a second per app key, bursts of `burst`,
        counted by `clock` (tests move their own); None turns it off."""
        self.limiter = TokenBucketLimiter(rate, burst, clock=clock)

    def add_user(self, email: str, name: str) -> int:
        """Make `email` a member of the workspace; return its user id."""
        with self._lock:
            user_id = next(self._ids)
            self._users[email.lower()] = {
                "id": str(user_id),
                "name": name,
                "emails": [email],
                "work_status": "work",
            }
            return user_id

    def add_app_key(self, key: str) -> None:
        """Accept another app key (a second bot)."""
        with self._lock:
            self._app_keys.add(key)

    def revoke_app_key(self, key: str = SANDBOX_KAKAOWORK_APP_KEY) -> None:
        """Stop accepting `key`, as when the bot is deleted or its key reissued."""
        with self._lock:
            self._app_keys.discard(key)

    @property
    def messages(self) -> list[KakaoWorkMessage]:
        """Accepted messages, oldest first."""
        with self._lock:
            return list(self._messages)

    def messages_to(self, conversation_id: str) -> list[KakaoWorkMessage]:
        """Accepted messages in one room."""
        return [m for m in self.messages if m.conversation_id == conversation_id]

    def direct_conversation_of(self, email: str) -> str:
        """The id of the bot's 1:1 room with `email` (opened or not)."""
        with self._lock:
            user = self._users[email.lower()]
        return str(_DIRECT_ROOM_OFFSET + int(user["id"]))

    def inject_fault(
        self,
        status: int = 500,
        *,
        kind: str = "status",
        count: int | None = 1,
        method: str = "messages.send",
        retry_after: int | None = None,
        after_apply: bool = False,
    ) -> RouteFault:
        """Fault the next `count` calls of Web API `method` (``messages.send`` by default).

        A 429 without `retry_after` sends ``Retry-After: 1``; `kind` ``drop`` closes the
        connection without an answer (`after_apply`: after the message was taken).
        """
        return self.core.inject_fault(
            status,
            kind=kind,  # type: ignore[arg-type]
            count=count,
            path=f"^/v1/{re.escape(method)}$",
            retry_after=retry_after,
            message=None,
            after_apply=after_apply,
        )

    def clear_faults(self) -> None:
        """Drop every pending fault."""
        self.core.clear_faults()

    # -- what the handlers do ------------------------------------------------------------------

    def _authorize(self, request: Request) -> str:
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        with self._lock:
            known = scheme.lower() == "bearer" and key in self._app_keys
        if not known:
            raise KakaoWorkError(401, "invalid_authentication", "invalid app key")
        if self.limiter.acquire(key) is not None:
            raise _RateLimited()
        return key

    def _find_user(self, email: str) -> dict[str, Any]:
        with self._lock:
            user = self._users.get(email.strip().lower())
        if user is None:
            raise KakaoWorkError(404, "user_not_found", "user not found")
        return dict(user)

    def _open(self, body: dict[str, Any]) -> _Conversation:
        if "user_id" in body:
            user_id = _int_param(body["user_id"], "user_id")
            self._known_user(user_id)
            room_id = str(_DIRECT_ROOM_OFFSET + user_id)
            with self._lock:
                return self._conversations.setdefault(
                    room_id, _Conversation(room_id, "dm", "", [user_id])
                )
        user_ids = body.get("user_ids")
        if isinstance(user_ids, list) and user_ids:
            ids = [_int_param(value, "user_ids") for value in user_ids]
            for user_id in ids:
                self._known_user(user_id)
            with self._lock:
                room_id = str(30000 + len(self._conversations))
                room = _Conversation(room_id, "group", str(body.get("conversation_name", "")), ids)
                self._conversations[room_id] = room
                return room
        raise KakaoWorkError(400, "invalid_parameter", "user_id or user_ids is required")

    def _known_user(self, user_id: int) -> None:
        with self._lock:
            known = any(int(u["id"]) == user_id for u in self._users.values())
        if not known:
            raise KakaoWorkError(404, "user_not_found", "user not found")

    def _send(self, body: dict[str, Any]) -> KakaoWorkMessage:
        conversation_id = str(body.get("conversation_id", ""))
        text = body.get("text")
        if not conversation_id:
            raise KakaoWorkError(400, "invalid_parameter", "conversation_id is required")
        if not isinstance(text, str) or not text:
            raise KakaoWorkError(400, "invalid_parameter", "text is required")
        blocks = body.get("blocks", [])
        _validate_blocks(blocks)
        with self._lock:
            if conversation_id not in self._conversations:
                raise KakaoWorkError(404, "conversation_not_found", "conversation not found")
            message = KakaoWorkMessage(
                str(next(self._message_ids)), conversation_id, text, blocks, datetime.now(UTC)
            )
            self._messages.append(message)
        return message

    def _conversation_list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [room.to_dict() for room in self._conversations.values()]


def _int_param(value: object, name: str) -> int:
    try:
        return int(str(value))
    except ValueError:
        raise KakaoWorkError(400, "invalid_parameter", f"{name} is invalid") from None


def _validate_blocks(blocks: object) -> None:
    if not isinstance(blocks, list):
        raise KakaoWorkError(400, "invalid_parameter", "blocks must be an array")
    for index, block in enumerate(blocks):
        where = f"blocks[{index}]"
        if not isinstance(block, dict) or block.get("type") not in BLOCK_TYPES:
            raise KakaoWorkError(400, "invalid_parameter", f"{where}.type is invalid")
        kind = block["type"]
        limit = _TEXT_LIMITS.get(kind)
        if limit is not None:
            text = block.get("text")
            if not isinstance(text, str) or not text or len(text) > limit:
                raise KakaoWorkError(
                    400, "invalid_parameter", f"{where}.text must be 1 to {limit} characters"
                )
        if kind == "header" and block.get("style", "blue") not in _HEADER_STYLES:
            raise KakaoWorkError(400, "invalid_parameter", f"{where}.style is invalid")
        if kind == "button":
            if block.get("style", "default") not in _BUTTON_STYLES:
                raise KakaoWorkError(400, "invalid_parameter", f"{where}.style is invalid")
            # The standard format since KakaoWork 1.11 nests the action; the older one is flat.
            action = block.get("action") or {
                "type": block.get("action_type"),
                "value": block.get("value"),
            }
            if action.get("type") in ("open_system_browser", "open_inapp_browser") and not (
                isinstance(action.get("value"), str) and action["value"]
            ):
                raise KakaoWorkError(400, "invalid_parameter", f"{where}.action.value is required")
        if kind == "description":
            term, content = block.get("term"), block.get("content")
            if not isinstance(term, str) or not term or len(term) > _TERM_LIMIT:
                raise KakaoWorkError(
                    400, "invalid_parameter", f"{where}.term must be 1 to {_TERM_LIMIT} characters"
                )
            if not isinstance(content, dict) or content.get("type") != "text":
                raise KakaoWorkError(400, "invalid_parameter", f"{where}.content is invalid")


class _RateLimited(Exception):
    """The assumed rate limit was hit."""


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/x-www-form-urlencoded"):
        return {key: values[-1] for key, values in parse_qs(raw.decode("utf-8")).items()}
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        raise KakaoWorkError(400, "invalid_parameter", "request body is not JSON") from None
    if not isinstance(body, dict):
        raise KakaoWorkError(400, "invalid_parameter", "request body is not an object")
    return body


def create_kakaowork_app(state: KakaoWorkState) -> FastAPI:
    """Build the KakaoWork sub-app (mounted under ``/kakaowork``) serving `state`.

    Routes (each needs ``Authorization: Bearer <app key>``): ``GET /v1/users.find_by_email``,
    ``POST /v1/conversations.open``, ``GET /v1/conversations.list``, ``POST
    /v1/messages.send`` (JSON only, as KakaoWork requires for the Messages API).
    """
    app = FastAPI(title="moltbot sandbox: KakaoWork", docs_url=None, redoc_url=None)

    @app.exception_handler(KakaoWorkError)
    async def kakaowork_error(request: Request, exc: KakaoWorkError) -> Response:
        return error_response(exc.status, exc.message, exc.code)

    @app.exception_handler(_RateLimited)
    async def rate_limited(request: Request, exc: _RateLimited) -> Response:
        # KakaoWork documents no Retry-After: the assumed limit sends none, so clients back off.
        return error_response(429, "too many requests", "too_many_requests")

    @app.get("/v1/users.find_by_email")
    async def find_by_email(request: Request, email: str = "") -> Response:
        state._authorize(request)
        if not email:
            raise KakaoWorkError(400, "invalid_parameter", "email is required")
        return JSONResponse({"success": True, "user": state._find_user(email)})

    @app.post("/v1/conversations.open")
    async def open_conversation(request: Request) -> Response:
        state._authorize(request)
        room = state._open(await _json_body(request))
        return JSONResponse({"success": True, "conversation": room.to_dict()})

    @app.get("/v1/conversations.list")
    async def list_conversations(request: Request) -> Response:
        state._authorize(request)
        return JSONResponse(
            {"success": True, "cursor": None, "conversations": state._conversation_list()}
        )

    @app.post("/v1/messages.send")
    async def send_message(request: Request) -> Response:
        state._authorize(request)
        if not request.headers.get("content-type", "").startswith("application/json"):
            raise KakaoWorkError(400, "invalid_parameter", "messages API accepts JSON only")
        message = state._send(await _json_body(request))
        stamp = message.received_at.isoformat()
        return JSONResponse(
            {
                "success": True,
                "message": {
                    "id": message.id,
                    "text": message.text,
                    "user_id": "1",
                    "conversation_id": message.conversation_id,
                    "send_time": stamp,
                    "update_time": stamp,
                    "blocks": message.blocks,
                },
            }
        )

    install_emulator(app, state.core, error_response)
    return app

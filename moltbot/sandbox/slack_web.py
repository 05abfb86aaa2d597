"""Slack Web API emulator (bot tokens): auth.test, chat.postMessage/update, conversations.*."""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from moltbot.sandbox.kit import EmulatorCore, RouteFault, TokenBucketLimiter

SANDBOX_BOT_TOKEN = "xoxb-0000000000-0000000000-sandboxbottoken0000"
"""The bot token the sandbox accepts from the start (the saved sandbox bot block uses it)."""
SANDBOX_CHANNEL_ID = "C0SANDBOX01"
"""The channel the sandbox bot is a member of from the start (`#moltbot-alerts`)."""
SANDBOX_TEAM_ID = "T0SANDBOX"
SANDBOX_BOT_USER = "U0MOLTBOT"
SANDBOX_BOT_ID = "B0MOLTBOT"

# docs.slack.dev/apis/web-api/rate-limits: chat.postMessage "generally allows posting one
# message per second per channel, while also allowing short bursts" (burst size unstated).
POST_RATE_PER_SECOND = 1.0
POST_BURST = 3
# docs.slack.dev/reference/methods/chat.postMessage: text is truncated past 40,000 characters;
# the emulator refuses it instead, so a client that sends that much is noticed.
TEXT_LIMIT = 40_000

API_ROUTE = r"^/api/"
"""Faults injected with `SlackWebState.inject_fault` hit Web API calls only."""


@dataclass(frozen=True)
class BotMessage:
    """A message the bot posted, as the emulator stores it (its latest version).

    Attributes:
        channel: channel id.
        ts: its timestamp id, unique in the channel (a string, as Slack sends it).
        text: the top-level text.
        blocks: the Block Kit blocks, if any.
        thread_ts: the parent's ts for a reply in a thread; None for a top-level message.
        edits: how many times `chat.update` changed it.
    """

    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]] | None = None
    thread_ts: str | None = None
    edits: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The message as `conversations.replies` and the control route return it."""
        data: dict[str, Any] = {
            "type": "message",
            "user": SANDBOX_BOT_USER,
            "bot_id": SANDBOX_BOT_ID,
            "text": self.text,
            "ts": self.ts,
        }
        if self.blocks is not None:
            data["blocks"] = self.blocks
        if self.thread_ts is not None:
            data["thread_ts"] = self.thread_ts
        if self.edits:
            data["edited"] = {"user": SANDBOX_BOT_USER, "ts": self.ts}
        return data


@dataclass
class _Channel:
    id: str
    name: str
    bot_is_member: bool = True
    is_archived: bool = False
    messages: list[BotMessage] = field(default_factory=list)


class SlackApiFailure(Exception):
    """A Slack error answer: HTTP 200 with ``{"ok": false, "error": <code>}``."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class SlackWebState:
    """The Web API side of the Slack emulator: bot tokens, channels, messages, rate limit.

    Thread-safe like `SlackState` (uvicorn's thread writes while a test reads).

    Attributes:
        clock: wall-clock seconds; makes message `ts` values and drives the per-channel rate
            limit. Tests replace it to move time instead of waiting (`reset` restores it).
        names_wait: the rate limit's 429 carries ``Retry-After`` (Slack's does); False models
            a proxy in between that drops the header, so clients must back off on their own.
    """

    def __init__(self, core: EmulatorCore) -> None:
        self.core = core
        self._lock = threading.Lock()
        self.clock: Callable[[], float] = time.time
        self.names_wait = True
        self._limiter = TokenBucketLimiter(
            POST_RATE_PER_SECOND, POST_BURST, clock=lambda: self.clock()
        )
        self._tokens: dict[str, str] = {}
        self._channels: dict[str, _Channel] = {}
        self._last_ts = 0
        self._seed()

    def _seed(self) -> None:
        self._tokens = {SANDBOX_BOT_TOKEN: "active"}
        self._channels = {SANDBOX_CHANNEL_ID: _Channel(SANDBOX_CHANNEL_ID, "moltbot-alerts")}
        self._last_ts = 0

    def reset(self) -> None:
        """Back to the seeded token and channel, no messages, a full rate bucket, real time."""
        with self._lock:
            self._seed()
        self.clock = time.time
        self.names_wait = True
        self._limiter.reset()

    # -- set-up from tests and the sandbox ------------------------------------------------

    def register_token(self, token: str) -> str:
        """Accept `token` as a bot token from now on; return it."""
        with self._lock:
            self._tokens[token] = "active"
        return token

    def revoke_token(self, token: str) -> None:
        """Answer `token_revoked` to `token` from now on (as after uninstalling the app)."""
        with self._lock:
            self._tokens[token] = "revoked"

    def add_channel(self, channel_id: str, name: str, *, bot_is_member: bool = True) -> str:
        """A channel the bot can (member) or cannot (not invited: `not_in_channel`) post in."""
        with self._lock:
            self._channels[channel_id] = _Channel(channel_id, name, bot_is_member)
        return channel_id

    def inject_fault(
        self,
        status: int = 500,
        *,
        method: str | None = None,
        kind: str = "status",
        count: int = 1,
        retry_after: int | None = None,
        after_apply: bool = False,
    ) -> RouteFault:
        """Make the next `count` Web API calls (of API `method`, e.g. ``chat.postMessage``, or
        any) fail: a status (429 sends ``Retry-After: 1`` unless told), or ``kind="drop"``; with
        `after_apply` the call takes effect first and only its answer is lost."""
        path = f"^/api/{re.escape(method)}$" if method else API_ROUTE
        return self.core.inject_fault(
            status,
            kind=kind,  # type: ignore[arg-type]
            count=count,
            path=path,
            retry_after=retry_after,
            after_apply=after_apply,
        )

    # -- inspection -----------------------------------------------------------------------

    def messages_in(self, channel_id: str) -> list[BotMessage]:
        """Messages in a channel (top-level and replies), oldest first, as they are now."""
        with self._lock:
            channel = self._channels.get(channel_id)
            return list(channel.messages) if channel is not None else []

    @property
    def messages(self) -> list[BotMessage]:
        """Every message in every channel."""
        with self._lock:
            return [m for channel in self._channels.values() for m in channel.messages]

    # -- the API's behaviour --------------------------------------------------------------

    def authenticate(self, token: str | None) -> None:
        """Raise Slack's error for a missing, unknown or revoked token."""
        if not token:
            raise SlackApiFailure("not_authed")
        with self._lock:
            status = self._tokens.get(token)
        if status is None:
            raise SlackApiFailure("invalid_auth")
        if status == "revoked":
            raise SlackApiFailure("token_revoked")

    def channel_info(self, channel_id: str) -> dict[str, Any]:
        """`conversations.info`'s channel object."""
        with self._lock:
            channel = self._channel(channel_id)
            return {
                "id": channel.id,
                "name": channel.name,
                "is_channel": True,
                "is_archived": channel.is_archived,
                "is_member": channel.bot_is_member,
            }

    def post(
        self,
        channel_id: str,
        text: str,
        blocks: list[dict[str, Any]] | None,
        thread_ts: str | None,
    ) -> BotMessage:
        """Store a new message (a reply when `thread_ts` names a top-level message)."""
        with self._lock:
            channel = self._postable(channel_id)
            if thread_ts is not None:
                parent = self._find(channel, thread_ts)
                # A reply to a reply joins the parent's thread, as in Slack.
                thread_ts = parent.thread_ts or parent.ts
        wait = self._limiter.acquire(channel_id)
        if wait is not None:
            raise RateLimited(wait)
        with self._lock:
            message = BotMessage(channel_id, self._next_ts(), text, blocks, thread_ts)
            channel.messages.append(message)
            return message

    def update(
        self, channel_id: str, ts: str, text: str | None, blocks: list[dict[str, Any]] | None
    ) -> BotMessage:
        """Change a message's text and/or blocks (blocks not given are kept, as in Slack)."""
        with self._lock:
            channel = self._postable(channel_id)
            current = self._find(channel, ts)
            updated = replace(
                current,
                text=current.text if text is None else text,
                blocks=current.blocks if blocks is None else blocks,
                edits=current.edits + 1,
            )
            channel.messages[channel.messages.index(current)] = updated
            return updated

    def replies(self, channel_id: str, ts: str, limit: int | None) -> list[BotMessage]:
        """A thread: its parent first, then its replies, oldest first."""
        with self._lock:
            channel = self._channel(channel_id)
            parent = self._find(channel, ts)
            root = parent.thread_ts or parent.ts
            thread = [m for m in channel.messages if m.ts == root or m.thread_ts == root]
        return thread[:limit] if limit else thread

    def _channel(self, channel_id: str) -> _Channel:
        channel = self._channels.get(channel_id)
        if channel is None:
            raise SlackApiFailure("channel_not_found")
        return channel

    def _postable(self, channel_id: str) -> _Channel:
        channel = self._channel(channel_id)
        if not channel.bot_is_member:
            raise SlackApiFailure("not_in_channel")
        if channel.is_archived:
            raise SlackApiFailure("is_archived")
        return channel

    def _find(self, channel: _Channel, ts: str) -> BotMessage:
        for message in channel.messages:
            if message.ts == ts:
                return message
        raise SlackApiFailure("message_not_found")

    def _next_ts(self) -> str:
        # Slack's ts is epoch seconds with six digits after the point, unique per channel.
        micros = max(int(self.clock() * 1_000_000), self._last_ts + 1)
        self._last_ts = micros
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"


class RateLimited(Exception):
    """The channel's post rate is exceeded: answer 429 with Retry-After."""

    def __init__(self, wait_seconds: float) -> None:
        super().__init__(wait_seconds)
        self.retry_after = max(1, math.ceil(wait_seconds))


def _bearer(request: Request, fields: dict[str, Any]) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    # Slack also takes the token as a form field (older clients send it so).
    token_field = fields.get("token")
    return token_field if isinstance(token_field, str) and token_field else None


async def _fields(request: Request) -> dict[str, Any]:
    """The call's arguments: a JSON body, or form fields (what the sync client sends for the
    "GET" methods); form values that hold JSON (``blocks``) are decoded as Slack does."""
    raw = await request.body()
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/json"):
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            raise SlackApiFailure("invalid_json") from None
        if not isinstance(body, dict):
            raise SlackApiFailure("json_not_object")
        return body
    fields: dict[str, Any] = {
        name: values[-1] for name, values in parse_qs(raw.decode("utf-8", "replace")).items()
    }
    fields.update(request.query_params)
    if isinstance(fields.get("blocks"), str):
        try:
            fields["blocks"] = json.loads(fields["blocks"])
        except ValueError:
            raise SlackApiFailure("invalid_blocks") from None
    return fields


def _blocks(fields: dict[str, Any]) -> list[dict[str, Any]] | None:
    blocks = fields.get("blocks")
    if blocks is None:
        return None
    if not (
        isinstance(blocks, list)
        and all(isinstance(b, dict) and isinstance(b.get("type"), str) for b in blocks)
    ):
        raise SlackApiFailure("invalid_blocks")
    return blocks


def _text(fields: dict[str, Any]) -> str | None:
    text = fields.get("text")
    if text is None:
        return None
    if not isinstance(text, str):
        raise SlackApiFailure("invalid_arguments")
    if len(text) > TEXT_LIMIT:
        raise SlackApiFailure("msg_too_long")
    return text


def install_web_api(app: FastAPI, state: SlackWebState) -> None:
    """Serve the Web API methods under ``/api/<method>`` of the Slack sub-app."""

    async def handle(method: str, request: Request) -> dict[str, Any]:
        fields = await _fields(request)
        state.authenticate(_bearer(request, fields))
        if method == "auth.test":
            return {
                "url": "https://moltbot-sandbox.slack.com/",
                "team": "moltbot sandbox",
                "user": "moltbot",
                "team_id": SANDBOX_TEAM_ID,
                "user_id": SANDBOX_BOT_USER,
                "bot_id": SANDBOX_BOT_ID,
            }
        channel_id = str(fields.get("channel") or "")
        if method == "conversations.info":
            return {"channel": state.channel_info(channel_id)}
        if method == "conversations.replies":
            limit = int(fields["limit"]) if str(fields.get("limit", "")).isdigit() else None
            thread = state.replies(channel_id, str(fields.get("ts") or ""), limit)
            return {"messages": [m.to_dict() for m in thread], "has_more": False}
        text, blocks = _text(fields), _blocks(fields)
        if method == "chat.postMessage":
            if not text and not blocks:
                raise SlackApiFailure("no_text")
            thread_ts = fields.get("thread_ts")
            message = state.post(channel_id, text or "", blocks, thread_ts or None)
            return {"channel": channel_id, "ts": message.ts, "message": message.to_dict()}
        if method == "chat.update":
            if text is None and blocks is None:
                raise SlackApiFailure("no_text")
            message = state.update(channel_id, str(fields.get("ts") or ""), text, blocks)
            return {"channel": channel_id, "ts": message.ts, "text": message.text}
        raise SlackApiFailure("unknown_method")

    @app.post("/api/{method}")
    async def web_api(method: str, request: Request) -> JSONResponse:
        try:
            answer = await handle(method, request)
        except SlackApiFailure as failure:
            # Slack answers its errors with HTTP 200 and ok: false.
            return JSONResponse({"ok": False, "error": failure.code})
        except RateLimited as limited:
            headers = {"Retry-After": str(limited.retry_after)} if state.names_wait else {}
            return JSONResponse(
                {"ok": False, "error": "ratelimited"}, status_code=429, headers=headers
            )
        return JSONResponse({"ok": True, **answer})

    @app.get("/_sandbox/api/messages")
    def list_messages() -> JSONResponse:
        return JSONResponse([m.to_dict() | {"channel": m.channel} for m in state.messages])

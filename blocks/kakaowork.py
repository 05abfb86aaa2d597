"""KakaoWork bot channel: a thin httpx client of the KakaoWork Web API (users, conversations,
messages) that posts a message as KakaoWork Block Kit."""

from __future__ import annotations

import html
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from prefect.blocks.core import Block
from pydantic import Field, SecretStr, model_validator

from blocks.rotation import SecretSetAt, SecretStamped
from moltbot.errors import DeliveryError
from moltbot.messages import Message
from moltbot.ratelimits import RateLimiter, credential_fingerprint, rate_gate
from moltbot.retrying import retry_after_seconds

# Block Kit limits (docs.kakaoi.ai/kakao_work/blockkit/…): a header and a button show at most
# 20 characters, a description's term 10; a text block holds 500 (per the community client
# skyoo2003/kakaowork-py, which validates the same numbers).
HEADER_LIMIT = 20
BUTTON_LIMIT = 20
TERM_LIMIT = 10
TEXT_BLOCK_LIMIT = 500
# Buttons stacked under one message: the docs advise against four or more.
MAX_LINK_BUTTONS = 3
# Text blocks of one message (the rest of a long body is left out; e-mail carries it whole).
MAX_TEXT_BLOCKS = 20
_ERROR_TEXT_LIMIT = 200
# Conversations opened per (credential, e-mail), kept for the process: one lookup per recipient.
_CONVERSATION_CACHE_SIZE = 1024
# Conversations a message already reached in this process, so a retry of a message that went
# to some recipients and failed for another does not post it twice to the first.
_DELIVERED_CACHE_SIZE = 4096

_SLACK_LINK = re.compile(r"<((?:https?|mailto):[^|>\s]+)(?:\|([^>]*))?>")
_SLACK_BOLD = re.compile(r"(?<![\w*])\*([^*\n]+)\*(?![\w*])")

_TERMS = {
    "en": {"automation": "automation", "severity": "severity", "open": "Open"},
    "ko": {"automation": "자동화", "severity": "심각도", "open": "열기"},
}
_HEADER_STYLES = {"info": "blue", "warning": "yellow", "critical": "red"}


def chat_lines_and_links(message: Message) -> tuple[list[str], list[tuple[str, str]]]:
    """The message's chat text as plain lines, and its links as (label, url) pairs in order.

    The chat text (`Message.chat_text`) is Slack mrkdwn: a link ``<url|label>`` becomes its
    label in the line (the link itself goes into a button), ``*bold*`` loses its stars, and
    Slack's ``&amp;``/``&lt;``/``&gt;`` escapes are undone, and a first line that only
    repeats the title is left out. Korean text passes untouched.
    """
    links: list[tuple[str, str]] = []

    def link(match: re.Match[str]) -> str:
        url, label = match.group(1), (match.group(2) or "").strip()
        links.append((html.unescape(label) or url, url))
        return label or url

    lines = []
    for line in message.chat_text().splitlines():
        plain = _SLACK_BOLD.sub(r"\1", _SLACK_LINK.sub(link, line))
        lines.append(html.unescape(plain))
    # Blocks usually open with the title as their header; every channel here shows it apart.
    title = " ".join(message.title.split())
    while lines and (not lines[0].strip() or " ".join(lines[0].split()) == title):
        lines.pop(0)
    return lines, list(dict.fromkeys(links))


def shorten(text: str, limit: int) -> str:
    """`text` on one line within `limit` characters, cut at a space where there is one, with
    an ellipsis when cut (a header or a button label, never mid-word if avoidable)."""
    line = " ".join(text.split())
    if len(line) <= limit:
        return line
    cut = line[: limit - 1]
    if " " in cut:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip() + "…"


def pack_lines(lines: list[str], limit: int) -> list[str]:
    """Lines packed into as few chunks of at most `limit` characters as whole lines allow (a
    longer line is split at `limit`)."""
    chunks: list[str] = []
    current = ""
    for line in lines:
        while len(line) > limit:
            if current:
                chunks.append(current)
                current = ""
            chunks.append(line[:limit])
            line = line[limit:]
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) > limit:
            chunks.append(current)
            candidate = line
        current = candidate
    if current.strip():
        chunks.append(current)
    return chunks


def _terms() -> dict[str, str]:
    from moltbot.i18n import in_locale

    return in_locale(_TERMS)


class KakaoWorkBot(SecretStamped, Block):
    """Sends messages as a KakaoWork bot: to people by e-mail (1:1 chats) and/or one chat room.

    KakaoWork's Web API (docs.kakaoi.ai/kakao_work/webapireference/) is called with the bot's
    app key: ``users.find_by_email`` → ``conversations.open`` → ``messages.send``, with the
    message in KakaoWork Block Kit. The conversation of each e-mail is looked up once per
    process. The PyPI ``kakaowork`` client needs pydantic 1, so this is a small httpx client.

    Attributes:
        app_key: the bot's app key (KakaoWork admin site, Bot 관리); a secret.
        base_url: the Web API root; the sandbox's ``…/kakaowork`` in tests.
        emails: people to message, each in a 1:1 chat with the bot.
        conversation_id: a chat room the bot is in, messaged as well.
        timeout_seconds: connect/read timeout of one request.
    """

    _block_type_name = "KakaoWork Bot"
    _block_type_slug = "moltbot-kakaowork-bot"
    _description = "moltbot channel: a KakaoWork bot (Web API, Block Kit messages)."

    app_key: SecretStr = Field(description="The bot's app key (KakaoWork admin: Bot 관리).")
    base_url: str = Field(
        default="https://api.kakaowork.com", description="KakaoWork Web API root URL."
    )
    emails: list[str] = Field(
        default_factory=list, description="E-mail addresses of people to message (1:1 chats)."
    )
    conversation_id: str | None = Field(
        default=None, description="A chat room (conversation id) the bot is a member of."
    )
    timeout_seconds: float = Field(default=10.0, gt=0, description="Timeout of one request.")
    secret_set_at: SecretSetAt = None

    @model_validator(mode="after")
    def _has_recipient(self) -> KakaoWorkBot:
        if not self.emails and not self.conversation_id:
            raise ValueError("give at least one recipient: emails or conversation_id")
        return self

    def label(self) -> str:
        """How errors name this block: ``KakaoWork bot 'team-kakaowork'``."""
        name = getattr(self, "_block_document_name", None)
        return f"KakaoWork bot '{name}'" if name else "KakaoWork bot (unsaved block)"

    def payload(self, message: Message) -> dict[str, Any]:
        """The ``messages.send`` body for `message`, without its ``conversation_id`` (a dry run
        previews exactly this).

        A header (the title, at most 20 characters; its colour from the severity), the chat
        text in text blocks of at most 500 characters, a divider, the automation and severity
        as descriptions, and a button per link (at most three). The top-level ``text`` is what
        push notifications and old clients show: the title and the first lines.
        """
        terms = _terms()
        lines, links = chat_lines_and_links(message)
        chunks = pack_lines(lines, TEXT_BLOCK_LIMIT)[:MAX_TEXT_BLOCKS]
        header = shorten(message.title, HEADER_LIMIT)
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": header, "style": _HEADER_STYLES[message.severity]}
        ]
        if header != " ".join(message.title.split()):
            # The header was cut: the whole title opens the body.
            blocks.append({"type": "text", "text": message.title, "markdown": False})
        blocks += [{"type": "text", "text": chunk, "markdown": False} for chunk in chunks]
        blocks.append({"type": "divider"})
        for term, value in (("automation", message.automation), ("severity", message.severity)):
            blocks.append(
                {
                    "type": "description",
                    "term": shorten(terms[term], TERM_LIMIT),
                    "content": {"type": "text", "text": value, "markdown": False},
                    "accent": term == "severity" and message.severity != "info",
                }
            )
        for link_label, url in links[:MAX_LINK_BUTTONS]:
            blocks.append(
                {
                    "type": "button",
                    "text": shorten(link_label, BUTTON_LIMIT) or terms["open"],
                    "style": "primary" if message.severity == "critical" else "default",
                    "action": {"type": "open_system_browser", "value": url},
                }
            )
        notification = "\n".join([message.title, *lines])
        return {
            "text": pack_lines(notification.splitlines(), TEXT_BLOCK_LIMIT)[0],
            "blocks": blocks,
        }

    def preview_lines(self, message: Message) -> list[str]:
        """How the message reads in KakaoWork, for a dry run: recipients, then block by block."""
        recipients = [*self.emails, *([f"#{self.conversation_id}"] if self.conversation_id else [])]
        lines = [f"to: {', '.join(recipients)}"]
        for block in self.payload(message)["blocks"]:
            kind = block["type"]
            if kind in ("header", "text"):
                lines.extend(block["text"].splitlines())
            elif kind == "divider":
                lines.append("---")
            elif kind == "description":
                lines.append(f"{block['term']}: {block['content']['text']}")
            elif kind == "button":
                lines.append(f"[{block['text']}] {block['action']['value']}")
        return lines

    def send(self, message: Message, *, rate_limiter: RateLimiter | None = None) -> str | None:
        """Post `message` to every recipient; return the message ids, comma-separated.

        Every request first waits at the app key's shared rate limit (``[rate_limits.kakaowork]``).
        A recipient this process already delivered the message to is skipped, so a retry after
        one recipient failed does not post twice to the others.

        Raises:
            DeliveryError: permanent for a refused app key (``invalid_authentication``), an
                unknown e-mail or conversation, a refused payload; transient for
                ``too_many_requests`` (with the Retry-After), 5xx and connection errors;
                `maybe_applied` when ``messages.send`` got no answer or a 5xx.
        """
        key = self.app_key.get_secret_value()
        gate = rate_gate("kakaowork", key, rate_limiter)
        hooks = {"request": [gate.httpx_hook]} if gate is not None else {}
        body = self.payload(message)
        sent: list[str] = []
        with httpx.Client(
            base_url=self.base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {key}"},
            timeout=self.timeout_seconds,
            event_hooks=hooks,
        ) as client:
            api = _KakaoWorkApi(client, self.label())
            for conversation in self._conversations(api, key):
                done_key = (credential_fingerprint(key), message.key, conversation)
                delivered = _delivered.get(done_key)
                if delivered is None:
                    answer = api.call(
                        "messages.send", json={"conversation_id": conversation, **body}
                    )
                    delivered = str((answer.get("message") or {}).get("id") or "")
                    _delivered.put(done_key, delivered)
                if delivered:
                    sent.append(delivered)
        return ",".join(sent) or None

    def check(self) -> str:
        """One authenticated no-op for `moltbot blocks test`: ``users.find_by_email`` of the
        first e-mail, else ``conversations.list``; returns what KakaoWork said.

        Raises:
            DeliveryError: as `send` does.
        """
        key = self.app_key.get_secret_value()
        with httpx.Client(
            base_url=self.base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {key}"},
            timeout=self.timeout_seconds,
        ) as client:
            api = _KakaoWorkApi(client, self.label())
            if self.emails:
                user = api.call("users.find_by_email", params={"email": self.emails[0]})["user"]
                return (
                    f"KakaoWork accepted the app key and found {self.emails[0]} "
                    f"(user {user.get('id')}); nothing was sent"
                )
            answer = api.call("conversations.list", params={"limit": 1})
            count = len(answer.get("conversations") or [])
            return (
                f"KakaoWork accepted the app key ({count} conversation(s) listed); nothing was sent"
            )

    def _conversations(self, api: _KakaoWorkApi, key: str) -> Iterator[str]:
        if self.conversation_id:
            yield self.conversation_id
        fingerprint = credential_fingerprint(key)
        for email in self.emails:
            cache_key = (self.base_url, fingerprint, email.lower())
            conversation = _conversations.get(cache_key)
            if conversation is None:
                user = api.call("users.find_by_email", params={"email": email})["user"]
                opened = api.call("conversations.open", json={"user_id": user["id"]})
                conversation = str(opened["conversation"]["id"])
                _conversations.put(cache_key, conversation)
            yield conversation


class _KakaoWorkApi:
    """One Web API method call at a time, KakaoWork's failures turned into `DeliveryError`."""

    def __init__(self, client: httpx.Client, label: str) -> None:
        self.client = client
        self.label = label

    def call(
        self,
        method: str,
        *,
        params: dict[str, Any] | None = None,
        json: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        # Only messages.send changes anything remotely: a lost answer to it may have posted.
        posts = method == "messages.send"
        with self._transport_errors(method, posts):
            if json is None:
                response = self.client.get(f"/v1/{method}", params=params)
            else:
                response = self.client.post(f"/v1/{method}", json=json)
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if isinstance(answer, dict) and answer.get("success") is True and response.is_success:
            return answer
        raise self._failure(method, response, answer, posts)

    @contextmanager
    def _transport_errors(self, method: str, posts: bool) -> Iterator[None]:
        try:
            yield
        except httpx.TransportError as exc:
            never_sent = isinstance(
                exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout
            )
            what = "unreachable" if never_sent else "gave no answer"
            raise DeliveryError(
                f"{self.label}: KakaoWork {what} at {method} ({type(exc).__name__})",
                transient=True,
                maybe_applied=posts and not never_sent,
            ) from None

    def _failure(
        self, method: str, response: httpx.Response, answer: object, posts: bool
    ) -> DeliveryError:
        status = response.status_code
        error = answer.get("error") if isinstance(answer, dict) else None
        code = str(error.get("code", "")) if isinstance(error, dict) else ""
        text = str(error.get("message", "")) if isinstance(error, dict) else ""
        text = " ".join(text.split())[:_ERROR_TEXT_LIMIT]
        retry_after = retry_after_seconds(response.headers.get("Retry-After"))
        if code == "invalid_authentication" or status == 401:
            return DeliveryError(
                f"{self.label}: KakaoWork refused the app key ({code or status}); check the "
                "block's app_key",
                transient=False,
                status=status,
            )
        if code == "too_many_requests" or status == 429:
            return DeliveryError(
                f"{self.label}: KakaoWork rate limited {method} ({code or status})",
                transient=True,
                status=429,
                retry_after=retry_after,
            )
        said = f"{code}: {text}" if code and text else code or text or response.reason_phrase
        if status >= 500 or (status < 400 and not code):
            # A 5xx, or a 2xx without KakaoWork's answer: the call's outcome is unknown.
            return DeliveryError(
                f"{self.label}: KakaoWork failed {method} ({status} {said})",
                transient=True,
                status=status,
                retry_after=retry_after,
                maybe_applied=posts,
            )
        hint = {
            "user_not_found": "; check the block's emails",
            "conversation_not_found": "; check the block's conversation_id",
        }.get(code, "")
        return DeliveryError(
            f"{self.label}: KakaoWork refused {method} ({status} {said}){hint}",
            transient=False,
            status=status,
        )


class _LruMemo:
    """A small thread-safe map that forgets its oldest entries beyond `size`."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[tuple[str, ...], str] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, ...]) -> str | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: tuple[str, ...], value: str) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_conversations = _LruMemo(_CONVERSATION_CACHE_SIZE)
_delivered = _LruMemo(_DELIVERED_CACHE_SIZE)


def forget_conversations() -> None:
    """Forget the conversations and deliveries this process remembers (a sandbox reset, tests)."""
    _conversations.clear()
    _delivered.clear()

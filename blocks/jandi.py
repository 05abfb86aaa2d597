"""The JANDI incoming-webhook channel block, and the chat-text parsing it shares with Dooray!."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from blocks.rotation import SecretSetAt, SecretStamped
from moltbot.errors import DeliveryError
from moltbot.messages import Message
from moltbot.ratelimits import RateLimiter, rate_gate
from moltbot.retrying import retry_after_seconds

JANDI_ACCEPT = "application/vnd.tosslab.jandi-v2+json"
"""The Accept header every JANDI webhook post must carry (support.jandi.com/en/articles/6352697)."""

MAX_CONNECT_INFO = 10
"""connectInfo entries one post carries; JANDI states no maximum, and a longer list is a wall
of text in a chat room: the rest are counted in the body instead."""

# JANDI documents no error bodies: an answer is quoted up to this many characters.
_ERROR_BODY_LIMIT = 200
# Slack mrkdwn in the chat text: `<url|label>` links, `*bold*`, and its three escapes.
_SLACK_LINK = re.compile(r"<((?:https?|mailto):[^|>\s]+)(?:\|([^>]*))?>")
_SLACK_BOLD = re.compile(r"(?<![\w*])\*([^*\n]+)\*(?![\w*])")
_ITEM_BULLET = re.compile(r"^\s*[•◦▪‣-]\s+")
_SEVERITY_COLORS = {"warning": "#F2994A", "critical": "#EB5757"}

_TERMS = {
    "en": {"more": "…and {count} more"},
    "ko": {"more": "…외 {count}건"},
}


@dataclass(frozen=True)
class ChatParts:
    """A message's chat text split for messengers that show a text and a list of entries.

    Attributes:
        lines: the lines that are not list items (summary, footer), links already rendered.
        items: the bullet lines as (title, description): the text before the first ``: `` and
            the rest (description empty when there is no colon).
        links: every link as (label, url), in order, without repeats.
    """

    lines: list[str]
    items: list[tuple[str, str]]
    links: list[tuple[str, str]]


def chat_parts(message: Message, render_link: Callable[[str, str], str]) -> ChatParts:
    """Split `message`'s chat text (`Message.chat_text`, never the e-mail text) into lines,
    items and links.

    With Slack blocks the chat text is mrkdwn: a link ``<url|label>`` becomes
    ``render_link(label, url)``, ``*bold*`` loses its stars and ``&amp;``/``&lt;``/``&gt;``
    are undone. A plain-text message is taken as it is. A first line equal to the title is
    dropped (the header block repeats it). Korean text passes untouched.
    """
    links: list[tuple[str, str]] = []

    def link(match: re.Match[str]) -> str:
        url, label = match.group(1), html.unescape((match.group(2) or "").strip())
        links.append((label or url, url))
        return render_link(label or url, url)

    lines: list[str] = []
    items: list[tuple[str, str]] = []
    for raw in message.chat_text().splitlines():
        line = raw
        if message.slack_blocks:
            line = html.unescape(_SLACK_BOLD.sub(r"\1", _SLACK_LINK.sub(link, raw)))
        if not line.strip():
            continue
        if not lines and not items and line.strip() == message.title.strip():
            continue
        bullet = _ITEM_BULLET.match(line)
        if bullet:
            title, _, description = line[bullet.end() :].partition(": ")
            items.append((title.strip(), description.strip()))
        else:
            lines.append(line.rstrip())
    return ChatParts(lines=lines, items=items, links=list(dict.fromkeys(links)))


def more_items_line(count: int) -> str:
    """``…and N more`` in `MOLTBOT_LOCALE`, for items a post leaves out."""
    from moltbot.i18n import in_locale

    return in_locale(_TERMS)["more"].format(count=count)


def block_label(block: Block, kind: str) -> str:
    """How errors name a channel block: ``JANDI webhook 'team-jandi'`` (never its URL)."""
    name = getattr(block, "_block_document_name", None)
    return f"{kind} '{name}'" if name else f"{kind} (unsaved block)"


def post_json(
    label: str,
    provider: str,
    url: str,
    body: dict[str, Any],
    *,
    headers: dict[str, str] | None = None,
    timeout: float,
) -> httpx.Response:
    """POST `body` to a webhook `url`; the answer when it is a success.

    Raises:
        DeliveryError: named by `label`, never with the URL (it is the credential): transient
            for 429/5xx/connection errors, permanent for other 4xx, possibly applied when the
            answer was lost.
    """
    from blocks.channels import _default_tls_context

    try:
        response = httpx.post(
            url, json=body, headers=headers, timeout=timeout, verify=_default_tls_context()
        )
    except httpx.TransportError as exc:
        # Only a connection never made is known not to have posted; after a timeout or a
        # connection closed without an answer the message may have arrived all the same.
        never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
        what = "unreachable" if never_sent else "gave no answer"
        raise DeliveryError(
            f"{label}: {provider} {what} ({type(exc).__name__})",
            transient=True,
            maybe_applied=not never_sent,
        ) from None
    if response.is_success:
        return response
    status = response.status_code
    said = " ".join(_error_text(response).split())[:_ERROR_BODY_LIMIT] or response.reason_phrase
    if status in (401, 403, 404, 410):
        said = f"{said}; the webhook URL was refused or removed, check the block's url"
    raise DeliveryError.for_status(
        f"{label}: {provider} answered {status} {said}",
        status,
        retry_after=retry_after_seconds(response.headers.get("Retry-After")),
    )


def _error_text(response: httpx.Response) -> str:
    """The error's own words: JANDI's ``msg``, Dooray!'s ``header.resultMessage``, or the body."""
    try:
        answer = response.json()
    except ValueError:
        return response.text
    if isinstance(answer, dict):
        header = answer.get("header")
        for said in (
            answer.get("msg"),
            answer.get("message"),
            header.get("resultMessage") if isinstance(header, dict) else None,
        ):
            if isinstance(said, str) and said.strip():
                return said
    return response.text


class JandiIncomingWebhook(SecretStamped, Block):
    """Posts messages to a JANDI incoming webhook (a topic) or team incoming webhook (a person).

    The post follows support.jandi.com/en/articles/6352697: ``body`` (the title and the chat
    text, links as JANDI's ``[text](url)``), ``connectColor`` and ``connectInfo`` (the
    message's list items, one entry each), with JANDI's v2 Accept header. A team incoming
    webhook (support.jandi.com/en/articles/6352712) also takes the recipient's ``email``.

    Attributes:
        url: the webhook URL; it contains the credential, so it is a secret.
        recipient_email: for a team incoming webhook: the JANDI login of the person to message.
        connect_color: the colour bar of the entries (warnings and critical alerts use their own).
        timeout_seconds: connect/read timeout of one request.
    """

    _block_type_name = "JANDI Incoming Webhook"
    _block_type_slug = "moltbot-jandi-incoming-webhook"
    _description = "moltbot channel: a JANDI (team) incoming webhook (body + connectInfo JSON)."

    url: SecretStr = Field(
        description="Webhook URL (https://wh.jandi.com/connect-api/webhook/{team}/{token})."
    )
    recipient_email: str | None = Field(
        default=None, description="Team incoming webhook only: the recipient's JANDI e-mail."
    )
    connect_color: str = Field(
        default="#FAC11B", pattern=r"^#[0-9A-Fa-f]{6}$", description="Hex colour of the entries."
    )
    timeout_seconds: float = Field(default=10.0, gt=0, description="Timeout of one request.")
    secret_set_at: SecretSetAt = None

    def payload(self, message: Message) -> dict[str, Any]:
        """The JSON body `send` posts for `message` (a dry run previews exactly this).

        ``body`` is the title, then the chat text's other lines; each list item (``• name:
        figures``) is a ``connectInfo`` entry, at most `MAX_CONNECT_INFO`, the rest counted
        in the body. Never the e-mail text.
        """
        parts = chat_parts(message, lambda label, url: f"[{label}]({url})")
        lines = [message.title, *parts.lines]
        shown = parts.items[:MAX_CONNECT_INFO]
        if len(parts.items) > len(shown):
            lines.append(more_items_line(len(parts.items) - len(shown)))
        body: dict[str, Any] = {"body": "\n".join(lines)}
        if self.recipient_email:
            body["email"] = self.recipient_email
        body["connectColor"] = _SEVERITY_COLORS.get(message.severity, self.connect_color)
        if shown:
            body["connectInfo"] = [
                {"title": title, "description": description} for title, description in shown
            ]
        return body

    def preview_lines(self, message: Message) -> list[str]:
        """How the post reads in JANDI: the recipient, the body, then each entry."""
        body = self.payload(message)
        lines = [f"to: {self.recipient_email}"] if self.recipient_email else []
        lines += str(body["body"]).splitlines()
        for entry in body.get("connectInfo", []):
            lines.append(f"  ▸ {entry['title']}: {entry['description']}".rstrip(": "))
        return lines

    def send(self, message: Message, *, rate_limiter: RateLimiter | None = None) -> str | None:
        """Post `message`; return None (JANDI documents no message id in its answer).

        The post first waits for the webhook's rate limit (``[rate_limits.jandi]``).

        Raises:
            DeliveryError: named after the block, never with the URL: transient for
                429/5xx/connection errors, permanent for other 4xx.
        """
        url = self.url.get_secret_value()
        gate = rate_gate("jandi", url, rate_limiter)
        if gate is not None:
            gate.wait()
        post_json(
            block_label(self, "JANDI webhook"),
            "JANDI",
            url,
            self.payload(message),
            headers={"Accept": JANDI_ACCEPT, "Content-Type": "application/json"},
            timeout=self.timeout_seconds,
        )
        return None

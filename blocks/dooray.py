"""The Dooray! incoming-hook channel block."""

from __future__ import annotations

from typing import Any

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from blocks.jandi import MAX_CONNECT_INFO, block_label, chat_parts, more_items_line, post_json
from blocks.rotation import SecretSetAt, SecretStamped
from moltbot.messages import Message
from moltbot.ratelimits import RateLimiter, rate_gate

MAX_ATTACHMENT_LINES = MAX_CONNECT_INFO
"""List items the attachment shows; the rest are counted (Dooray! states no limit either)."""

_SEVERITY_COLORS = {"info": "#3B82F6", "warning": "#F2994A", "critical": "#EB5757"}


class DoorayIncomingHook(SecretStamped, Block):
    """Posts messages to a Dooray! messenger incoming hook.

    Dooray! publishes no specification of the hook; the body is the one public clients send
    (``botName``, ``botIconImage``, ``text``, ``attachments[]`` with ``title``, ``titleLink``,
    ``text``, ``color``). ``text`` is the title and the chat text's summary lines; one
    attachment holds the list items, titled with the message's first link when it has one.

    Attributes:
        url: the hook URL; it contains the credential, so it is a secret.
        bot_name: the sender name shown in the room.
        bot_icon_image: URL of the sender's icon (Dooray!'s default when empty).
        timeout_seconds: connect/read timeout of one request.
    """

    _block_type_name = "Dooray Incoming Hook"
    _block_type_slug = "moltbot-dooray-incoming-hook"
    _description = "moltbot channel: a Dooray! messenger incoming hook (text + attachments)."

    url: SecretStr = Field(
        description="Hook URL (https://hook.dooray.com/services/{tenant}/{hook}/{token})."
    )
    bot_name: str = Field(default="moltbot", min_length=1, description="Sender name shown.")
    bot_icon_image: str | None = Field(default=None, description="URL of the sender's icon.")
    timeout_seconds: float = Field(default=10.0, gt=0, description="Timeout of one request.")
    secret_set_at: SecretSetAt = None

    def payload(self, message: Message) -> dict[str, Any]:
        """The JSON body `send` posts for `message` (a dry run previews exactly this).

        Links in the text read ``label (url)``: no public client shows Dooray! rendering
        Markdown links in a hook's text, so the address stays visible. Never the e-mail text.
        """
        parts = chat_parts(message, lambda label, url: f"{label} ({url})")
        body: dict[str, Any] = {"botName": self.bot_name}
        if self.bot_icon_image:
            body["botIconImage"] = self.bot_icon_image
        body["text"] = "\n".join([message.title, *parts.lines])
        if parts.items:
            shown = parts.items[:MAX_ATTACHMENT_LINES]
            lines = [f"{title}: {text}" if text else title for title, text in shown]
            if len(parts.items) > len(shown):
                lines.append(more_items_line(len(parts.items) - len(shown)))
            attachment: dict[str, Any] = {"title": message.title}
            if parts.links:
                attachment["titleLink"] = parts.links[0][1]
            attachment["text"] = "\n".join(lines)
            attachment["color"] = _SEVERITY_COLORS.get(message.severity, "#3B82F6")
            body["attachments"] = [attachment]
        return body

    def preview_lines(self, message: Message) -> list[str]:
        """How the post reads in Dooray!: the sender, the text, then the attachment."""
        body = self.payload(message)
        lines = [f"from: {body['botName']}", *str(body["text"]).splitlines()]
        for attachment in body.get("attachments", []):
            lines.append(f"  ▸ {attachment['title']}")
            lines += [f"    {line}" for line in str(attachment["text"]).splitlines()]
        return lines

    def send(self, message: Message, *, rate_limiter: RateLimiter | None = None) -> str | None:
        """Post `message`; return None (the hook answers no message id).

        The post first waits for the hook's rate limit (``[rate_limits.dooray]``). Public
        clients take any 200 as delivered, and so does this one.

        Raises:
            DeliveryError: named after the block, never with the URL: transient for
                429/5xx/connection errors, permanent for other 4xx.
        """
        url = self.url.get_secret_value()
        gate = rate_gate("dooray", url, rate_limiter)
        if gate is not None:
            gate.wait()
        post_json(
            block_label(self, "Dooray! hook"),
            "Dooray!",
            url,
            self.payload(message),
            timeout=self.timeout_seconds,
        )
        return None

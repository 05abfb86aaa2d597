"""The Slack bot channel: messages through the Web API with a bot token, follow-ups in threads."""

from __future__ import annotations

import http.client
import logging
import re
import socket
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar
from urllib.error import URLError

from prefect.blocks.core import Block
from pydantic import Field, SecretStr
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.web import SlackResponse

from blocks.rotation import SecretSetAt, SecretStamped
from moltbot.errors import DeliveryError
from moltbot.messages import Message
from moltbot.ratelimits import RateLimiter, rate_gate
from moltbot.retrying import retry_after_seconds

logger = logging.getLogger("moltbot.channels")

SLACK_API_URL = "https://slack.com/api/"

# docs.slack.dev/reference/methods/chat.postMessage ("Errors") and docs.slack.dev/authentication:
# a token Slack does not take, or the app's access gone: fixing it is a person's job.
AUTH_ERRORS = frozenset({"invalid_auth", "not_authed", "account_inactive", "token_revoked"})
CHANNEL_ERRORS = frozenset({"channel_not_found", "not_in_channel", "is_archived"})
_TS = re.compile(r"^\d+\.\d+$")
RESOLVED_PREFIX = {"en": "✅ Resolved: ", "ko": "✅ 해결됨: "}
"""What the original of a resolving follow-up starts with once updated, by `MOLTBOT_LOCALE`."""

T = TypeVar("T")


class SlackBot(SecretStamped, Block):
    """Posts messages to one Slack channel as a bot (Web API, bot token).

    Unlike an incoming webhook, a bot gets each message's `ts` back, so a follow-up (a
    recovery) is posted as a reply in its alert's thread and the alert is updated to say it
    is resolved. The client is slack-sdk's `WebClient` with no retry handlers: retries,
    `Retry-After` and fallbacks belong to the effects layer, and a post whose answer was lost
    must not be sent again by the client (that is how Slack messages get duplicated).

    Attributes:
        bot_token: the app's bot token (``xoxb-…``), with the ``chat:write`` scope.
        channel: the channel id (``C0123ABCD``); the bot must be invited to it.
        base_url: the Web API root (the sandbox: ``http://127.0.0.1:PORT/slack/api/``).
        timeout_seconds: timeout of one request.
    """

    _block_type_name = "Slack Bot"
    _block_type_slug = "moltbot-slack-bot"
    _description = "moltbot channel: a Slack bot posting to a channel (Web API, threads)."

    bot_token: SecretStr = Field(description="Bot User OAuth Token (xoxb-…), chat:write scope.")
    channel: str = Field(min_length=1, description="Channel id (C…); invite the bot to it.")
    base_url: str = Field(default=SLACK_API_URL, description="Web API root URL.")
    timeout_seconds: float = Field(default=10.0, gt=0, description="Timeout of one request.")
    secret_set_at: SecretSetAt = None

    preview_kind: ClassVar[str] = "slack"
    """The kind a dry-run preview is labelled with."""

    def label(self) -> str:
        """How errors name this block: ``Slack bot 'team-slack-bot'``."""
        name = getattr(self, "_block_document_name", None)
        return f"Slack bot {name!r}" if name else "Slack bot (unsaved block)"

    def client(self) -> WebClient:
        """The official client on `base_url`, without its default retry handlers."""
        base_url = self.base_url if self.base_url.endswith("/") else f"{self.base_url}/"
        return WebClient(
            token=self.bot_token.get_secret_value(),
            base_url=base_url,
            timeout=self.timeout_seconds,  # type: ignore[arg-type]
            # The default ConnectionErrorRetryHandler re-sends a post whose answer was lost.
            retry_handlers=[],
        )

    def payload(self, message: Message, *, thread_ts: str | None = None) -> dict[str, Any]:
        """The `chat.postMessage` arguments for `message` (a dry run previews exactly this).

        The `text` is the chat form (`Message.chat_text`), never the e-mail text.
        """
        payload: dict[str, Any] = {"channel": self.channel, "text": message.chat_text()}
        if message.slack_blocks:
            payload["blocks"] = message.slack_blocks
        if thread_ts is not None:
            payload["thread_ts"] = thread_ts
        return payload

    def send(self, message: Message, *, rate_limiter: RateLimiter | None = None) -> str | None:
        """Post `message` as a new message; return its `ts` (the id a follow-up threads on).

        Waits first at the channel's client-side limit (``[rate_limits.slack]``, one a second).

        Raises:
            DeliveryError: transient for 429 (with its `Retry-After`), 5xx and connection
                errors (`maybe_applied` when the answer was lost); permanent for a bad token,
                an unknown channel or a channel the bot is not in.
        """
        return self._post(message, None, rate_limiter)

    def send_follow_up(
        self, message: Message, original_ts: str, *, rate_limiter: RateLimiter | None = None
    ) -> str | None:
        """Post `message` in the thread of the message `original_ts`; when it `resolves` it,
        update the original to say so. Return the reply's `ts`.

        An id that is not a Slack ts (the original went elsewhere) posts a normal message.
        The update is best effort: the reply is delivered either way, so a failed update is
        logged, never raised (raising would make the layer post the reply again).
        """
        if not _TS.match(original_ts):
            return self.send(message, rate_limiter=rate_limiter)
        reply_ts = self._post(message, original_ts, rate_limiter)
        if message.resolves:
            try:
                self._mark_resolved(original_ts)
            except DeliveryError as failure:
                logger.warning(
                    "%s: the original was not marked resolved: %s", self.label(), failure
                )
        return reply_ts

    def check(self) -> str:
        """`blocks test`: ``auth.test`` (the token), then ``conversations.info`` (the channel).

        Raises:
            DeliveryError: the token or the channel is refused, or Slack did not answer.
        """
        client = self.client()
        identity = self._call(lambda: client.auth_test())
        info = self._call(lambda: client.conversations_info(channel=self.channel))
        channel = info.get("channel") or {}
        member = "" if channel.get("is_member", True) else " (the bot is not a member yet)"
        return (
            f"token accepted (team {identity.get('team_id')}, bot {identity.get('bot_id')}); "
            f"channel #{channel.get('name', self.channel)} found{member}"
        )

    def _post(
        self, message: Message, thread_ts: str | None, rate_limiter: RateLimiter | None
    ) -> str | None:
        token = self.bot_token.get_secret_value()
        # Slack's limit is per channel; the token is part of the key so two workspaces'
        # channels with the same id do not share one.
        gate = rate_gate("slack", f"{token}\n{self.channel}", rate_limiter)
        if gate is not None:
            gate.wait()
        client = self.client()
        arguments = self.payload(message, thread_ts=thread_ts)
        response = self._call(lambda: client.chat_postMessage(**arguments), posting=True)
        ts = response.get("ts")
        return str(ts) if ts is not None else None

    def _mark_resolved(self, original_ts: str) -> None:
        from moltbot.i18n import in_locale

        prefix = in_locale(RESOLVED_PREFIX)
        client = self.client()
        thread = self._call(
            lambda: client.conversations_replies(channel=self.channel, ts=original_ts, limit=1)
        )
        messages = thread.get("messages") or []
        original = messages[0] if messages else {}
        text = str(original.get("text", ""))
        if text.startswith(prefix):
            return  # an earlier follow-up resolved it already
        update: dict[str, Any] = {"channel": self.channel, "ts": original_ts}
        update["text"] = f"{prefix}{text}"
        blocks = original.get("blocks")
        if blocks:
            # The blocks are what a reader sees: the mark goes on top of them.
            banner = {"type": "context", "elements": [{"type": "mrkdwn", "text": prefix.strip()}]}
            update["blocks"] = [banner, *blocks]
        self._call(lambda: client.chat_update(**update))

    def _call(self, call: Callable[[], SlackResponse], *, posting: bool = False) -> SlackResponse:
        """Run one Web API call; Slack's answers become `DeliveryError`s naming the block.

        No error text holds the token: slack-sdk's own messages carry the URL only, and are
        not used; the line is built from Slack's error code.
        """
        label = self.label()
        try:
            return call()
        except SlackApiError as exc:
            response = exc.response
            status = response.status_code
            code = str(response.get("error", "")) if isinstance(response.data, dict) else ""
            retry_after = retry_after_seconds(response.headers.get("Retry-After"))
            if status == 429 or code == "ratelimited":
                raise DeliveryError(
                    f"{label}: Slack rate limit (429 {code or 'ratelimited'})",
                    transient=True,
                    status=429,
                    retry_after=retry_after,
                ) from None
            if status != 200:
                raise DeliveryError.for_status(
                    f"{label}: Slack answered {status}", status, retry_after=retry_after
                ) from None
            if code in AUTH_ERRORS:
                raise DeliveryError(
                    f"{label}: Slack refused the bot token ({code}); save a valid xoxb- token",
                    transient=False,
                    status=status,
                ) from None
            if code in CHANNEL_ERRORS:
                raise DeliveryError(
                    f"{label}: Slack refused channel {self.channel} ({code}); "
                    "check the id and invite the bot to the channel",
                    transient=False,
                    status=status,
                ) from None
            # Other codes (invalid_blocks, msg_too_long, missing_scope …) are about the call.
            transient = code in ("internal_error", "fatal_error", "service_unavailable")
            raise DeliveryError(
                f"{label}: Slack refused the call ({code or 'no error code'})",
                transient=transient,
                status=status,
                maybe_applied=transient and posting,
            ) from None
        except (URLError, OSError, http.client.HTTPException) as exc:
            reason = exc.reason if isinstance(exc, URLError) else exc
            # Only a connection never made is known not to have posted; after a timeout or a
            # connection closed without an answer the post may have arrived all the same.
            never_sent = isinstance(reason, ConnectionRefusedError | socket.gaierror)
            kind = type(reason).__name__
            raise DeliveryError(
                f"{label}: Slack unreachable ({kind})"
                if never_sent
                else f"{label}: Slack gave no answer ({kind})",
                transient=True,
                maybe_applied=posting and not never_sent,
            ) from None

"""NAVER WORKS bot channel: a service-account JWT for the access token (cached), then Bot API
2.0 messages to a channel or a user, through httpx."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
from prefect.blocks.core import Block
from pydantic import Field, PrivateAttr, SecretStr, model_validator

from blocks.kakaowork import chat_lines_and_links, pack_lines, shorten
from blocks.rotation import SecretSetAt, SecretStamped
from moltbot.errors import DeliveryError
from moltbot.messages import Message
from moltbot.ratelimits import RateLimiter, rate_gate
from moltbot.retrying import retry_after_seconds

JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# The assertion's lifetime: the official sample signs for an hour, the most the server takes.
ASSERTION_SECONDS = 3600
# A cached access token is renewed this long before it expires (a send in flight must not
# carry a token that runs out on the way).
TOKEN_RENEW_MARGIN_SECONDS = 300
# Message limits (developers.worksmobile.com: a text holds 2,000 characters, a link or button
# template's contentText 1,000, a button template at most 10 buttons).
TEXT_LIMIT = 2000
CONTENT_TEXT_LIMIT = 1000
MAX_BUTTONS = 10
LABEL_LIMIT = 20
_ERROR_TEXT_LIMIT = 200


@dataclass(frozen=True)
class _Token:
    value: str
    expires_at: float


class AccessTokenCache:
    """Access tokens by credential, kept until shortly before they expire.

    Args:
        clock: seconds since the epoch; tests pass a settable one.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._tokens: dict[str, _Token] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> str | None:
        """The cached token for `key`, None when there is none or it is about to expire."""
        with self._lock:
            token = self._tokens.get(key)
        if token is None or token.expires_at - TOKEN_RENEW_MARGIN_SECONDS <= self.clock():
            return None
        return token.value

    def put(self, key: str, value: str, expires_in: float) -> None:
        """Keep `value` for `key` for `expires_in` seconds from now."""
        with self._lock:
            self._tokens[key] = _Token(value, self.clock() + expires_in)

    def drop(self, key: str, value: str) -> None:
        """Forget `value` (refused by the API) unless another thread already replaced it."""
        with self._lock:
            if (token := self._tokens.get(key)) is not None and token.value == value:
                del self._tokens[key]

    def clear(self) -> None:
        """Forget every token."""
        with self._lock:
            self._tokens.clear()


DEFAULT_TOKEN_CACHE = AccessTokenCache()
"""The process's token cache, shared by every NAVER WORKS block in it."""


class NaverWorksBot(SecretStamped, Block):
    """Sends messages as a NAVER WORKS bot (API 2.0) to a message room or one user.

    The access token comes from a service-account JWT (RS256, signed with the app's private
    key) exchanged at the token URL (developers.worksmobile.com/kr/docs/auth-jwt) and is cached
    until shortly before it expires; a 401 on a cached token renews it once.

    Attributes:
        client_id: the app's Client ID (Developer Console, API 2.0).
        client_secret: the app's Client Secret; a secret.
        service_account: the app's service account (``xxxxx.serviceaccount@domain``).
        private_key: the service account's private key (PEM); a secret.
        bot_id: the bot's id.
        channel_id: the message room to post in; or
        user_id: the user to message (id or login e-mail).
        auth_url: the token endpoint (``auth.worksmobile.com``; public sector:
            ``auth.gov-naverworks.com``).
        api_base: the API root (``www.worksapis.com/v1.0``; public sector: ``gov.worksapis.com``).
    """

    _block_type_name = "NAVER WORKS Bot"
    _block_type_slug = "moltbot-naverworks-bot"
    _description = "moltbot channel: a NAVER WORKS bot (API 2.0, service-account JWT)."

    client_id: str = Field(description="The app's Client ID (Developer Console > API 2.0).")
    client_secret: SecretStr = Field(description="The app's Client Secret.")
    service_account: str = Field(description="The app's service account ID.")
    private_key: SecretStr = Field(description="The service account's private key (PEM).")
    bot_id: str = Field(description="The bot's ID (Developer Console > Bot).")
    channel_id: str | None = Field(default=None, description="Message room to post in.")
    user_id: str | None = Field(default=None, description="User to message (ID or e-mail).")
    auth_url: str = Field(
        default="https://auth.worksmobile.com/oauth2/v2.0/token",
        description="Token endpoint (public sector: https://auth.gov-naverworks.com/…).",
    )
    api_base: str = Field(
        default="https://www.worksapis.com/v1.0",
        description="API root URL (public sector: https://gov.worksapis.com/v1.0).",
    )
    timeout_seconds: float = Field(default=10.0, gt=0, description="Timeout of one request.")
    secret_set_at: SecretSetAt = None

    _token_cache: AccessTokenCache = PrivateAttr(default_factory=lambda: DEFAULT_TOKEN_CACHE)

    @model_validator(mode="after")
    def _one_recipient(self) -> NaverWorksBot:
        if (self.channel_id is None) == (self.user_id is None):
            raise ValueError("give exactly one of channel_id and user_id")
        return self

    def use_token_cache(self, cache: AccessTokenCache) -> None:
        """Keep tokens in `cache` instead of the process's (tests give one with their clock)."""
        self._token_cache = cache

    def label(self) -> str:
        """How errors name this block: ``NAVER WORKS bot 'ops-works'``."""
        name = getattr(self, "_block_document_name", None)
        return f"NAVER WORKS bot '{name}'" if name else "NAVER WORKS bot (unsaved block)"

    def message_url(self) -> str:
        """Where messages are posted: the channel's or the user's messages of the bot."""
        base = f"{self.api_base.rstrip('/')}/bots/{self.bot_id}"
        if self.channel_id is not None:
            return f"{base}/channels/{self.channel_id}/messages"
        return f"{base}/users/{self.user_id}/messages"

    def payload(self, message: Message) -> dict[str, Any]:
        """The JSON body `send` posts for `message` (a dry run previews exactly this).

        Without links a ``text`` content (title and chat text, at most 2,000 characters);
        with one link a ``link`` content, with more a ``button_template`` (contentText at most
        1,000 characters, one ``uri`` button per link, at most 10).
        """
        lines, links = chat_lines_and_links(message)
        body_lines = [message.title, *lines]
        if not links:
            return {"content": {"type": "text", "text": pack_lines(body_lines, TEXT_LIMIT)[0]}}
        content_text = pack_lines(body_lines, CONTENT_TEXT_LIMIT)[0]
        if len(links) == 1:
            [(link_label, url)] = links
            content: dict[str, Any] = {
                "type": "link",
                "contentText": content_text,
                "linkText": shorten(link_label, LABEL_LIMIT),
                "link": url,
            }
        else:
            content = {
                "type": "button_template",
                "contentText": content_text,
                "actions": [
                    {"type": "uri", "label": shorten(link_label, LABEL_LIMIT), "uri": url}
                    for link_label, url in links[:MAX_BUTTONS]
                ],
            }
        return {"content": content}

    def preview_lines(self, message: Message) -> list[str]:
        """How the message reads in NAVER WORKS, for a dry run."""
        target = f"channel {self.channel_id}" if self.channel_id else f"user {self.user_id}"
        content = self.payload(message)["content"]
        lines = [f"to: {target}", *str(content.get("text") or content["contentText"]).splitlines()]
        if content["type"] == "link":
            lines.append(f"[{content['linkText']}] {content['link']}")
        for action in content.get("actions", []):
            lines.append(f"[{action['label']}] {action['uri']}")
        return lines

    def send(self, message: Message, *, rate_limiter: RateLimiter | None = None) -> str | None:
        """Post `message`; return None (NAVER WORKS answers 201 without a message id).

        Each request waits at the app's shared rate limit (``[rate_limits.naverworks]``).

        Raises:
            DeliveryError: permanent for refused credentials, an unknown bot, channel or user,
                a refused payload; transient for 429 (with Retry-After or rateLimit-reset),
                5xx and connection errors; `maybe_applied` when the post got no answer or a 5xx.
        """
        gate = rate_gate("naverworks", self.client_id, rate_limiter)
        hooks = {"request": [gate.httpx_hook]} if gate is not None else {}
        body = self.payload(message)
        with httpx.Client(timeout=self.timeout_seconds, event_hooks=hooks) as client:
            token, cached = self._access_token(client)
            response = self._post(client, token, body)
            if response.status_code == 401 and cached:
                # The cached token was revoked or the server forgot it: one fresh token.
                self._token_cache.drop(self._cache_key(), token)
                token, _ = self._access_token(client)
                response = self._post(client, token, body)
        if response.is_success:
            return None
        raise self._failure(response, "the message")

    def check(self) -> str:
        """One authenticated no-op for `moltbot blocks test`: a fresh access token.

        Raises:
            DeliveryError: the token endpoint refused the credentials or failed.
        """
        with httpx.Client(timeout=self.timeout_seconds) as client:
            token = self._request_token(client)
        return (
            f"NAVER WORKS issued a token to service account {self.service_account} "
            f"(expires in {token[1]:g}s); nothing was sent"
        )

    # -- the access token ------------------------------------------------------------------

    def _cache_key(self) -> str:
        parts = (
            self.auth_url,
            self.client_id,
            self.service_account,
            self.client_secret.get_secret_value(),
            self.private_key.get_secret_value(),
        )
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()

    def _access_token(self, client: httpx.Client) -> tuple[str, bool]:
        """A usable access token, and whether it came from the cache."""
        key = self._cache_key()
        cached = self._token_cache.get(key)
        if cached is not None:
            return cached, True
        token, expires_in = self._request_token(client)
        self._token_cache.put(key, token, expires_in)
        return token, False

    def assertion(self) -> str:
        """The signed JWT the token request carries (iss client id, sub service account)."""
        now = int(self._token_cache.clock())
        claims = {
            "iss": self.client_id,
            "sub": self.service_account,
            "iat": now,
            "exp": now + ASSERTION_SECONDS,
        }
        try:
            return jwt.encode(claims, self.private_key.get_secret_value(), algorithm="RS256")
        except (ValueError, TypeError, jwt.PyJWTError) as exc:
            # The library's text may quote the key: name the problem only.
            raise DeliveryError(
                f"{self.label()}: the private_key is not a usable RSA private key in PEM "
                f"({type(exc).__name__}); paste the whole key file the Developer Console gave",
                transient=False,
            ) from None

    def _request_token(self, client: httpx.Client) -> tuple[str, float]:
        form = {
            "assertion": self.assertion(),
            "grant_type": JWT_BEARER_GRANT,
            "client_id": self.client_id,
            "client_secret": self.client_secret.get_secret_value(),
            "scope": "bot",
        }
        try:
            response = client.post(self.auth_url, data=form)
        except httpx.TransportError as exc:
            raise DeliveryError(
                f"{self.label()}: the NAVER WORKS token endpoint "
                f"{'is unreachable' if isinstance(exc, httpx.ConnectError) else 'gave no answer'}"
                f" ({type(exc).__name__})",
                transient=True,
            ) from None
        answer = _json_object(response)
        token = answer.get("access_token")
        if response.is_success and isinstance(token, str) and token:
            try:
                expires_in = float(answer.get("expires_in") or 3600)
            except (TypeError, ValueError):
                expires_in = 3600.0
            return token, expires_in
        status = response.status_code
        said = _said(answer, "error", "error_description") or response.reason_phrase
        if status == 429 or status >= 500:
            raise DeliveryError(
                f"{self.label()}: the NAVER WORKS token endpoint answered {status} {said}",
                transient=True,
                status=status,
                retry_after=_retry_after(response),
            )
        raise DeliveryError(
            f"{self.label()}: NAVER WORKS refused the token request ({status} {said}); check "
            "the block's client_id, client_secret, service_account and private_key",
            transient=False,
            status=status,
        )

    # -- the message -------------------------------------------------------------------------

    def _post(self, client: httpx.Client, token: str, body: dict[str, Any]) -> httpx.Response:
        try:
            return client.post(
                self.message_url(), json=body, headers={"Authorization": f"Bearer {token}"}
            )
        except httpx.TransportError as exc:
            never_sent = isinstance(
                exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout
            )
            raise DeliveryError(
                f"{self.label()}: NAVER WORKS "
                f"{'unreachable' if never_sent else 'gave no answer'} ({type(exc).__name__})",
                transient=True,
                maybe_applied=not never_sent,
            ) from None

    def _failure(self, response: httpx.Response, what: str) -> DeliveryError:
        status = response.status_code
        said = _said(_json_object(response), "code", "description") or response.reason_phrase
        if status == 401:
            return DeliveryError(
                f"{self.label()}: NAVER WORKS refused the access token (401 {said}); check the "
                "block's client_id, client_secret, service_account and private_key, and that "
                "the app has the bot scope",
                transient=False,
                status=status,
            )
        hint = {
            403: "; is the bot a member of the room, and allowed for this domain?",
            404: "; check the block's bot_id and channel_id or user_id",
        }.get(status, "")
        failure = DeliveryError.for_status(
            f"{self.label()}: NAVER WORKS refused {what} ({status} {said}){hint}",
            status,
            retry_after=_retry_after(response),
        )
        return failure


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        answer = response.json()
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}


def _said(answer: dict[str, Any], code_field: str, text_field: str) -> str:
    code, text = str(answer.get(code_field) or ""), str(answer.get(text_field) or "")
    said = f"{code}: {text}" if code and text else code or text
    return " ".join(said.split())[:_ERROR_TEXT_LIMIT]


def _retry_after(response: httpx.Response) -> float | None:
    """Retry-After, else NAVER WORKS's own ``rateLimit-reset`` (seconds until the window
    resets, developers.worksmobile.com/en/docs/rate-limits)."""
    given = retry_after_seconds(response.headers.get("Retry-After"))
    if given is not None or response.status_code != 429:
        return given
    return retry_after_seconds(response.headers.get("rateLimit-reset"))

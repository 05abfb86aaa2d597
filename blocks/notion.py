"""Notion credentials block: an integration token and the API base URL."""

from __future__ import annotations

import logging

import httpx
import notion_client
from notion_client.client import RetryOptions
from prefect.blocks.core import Block
from pydantic import Field, SecretStr, field_validator

from blocks.rotation import SecretSetAt, SecretStamped
from moltbot.masking import register_model_secrets
from moltbot.ratelimits import RateLimiter, rate_gate

# The client's default console logger gains one more stream handler for every client built;
# moltbot's own logger goes through the masking handlers instead.
_CLIENT_LOGGER = logging.getLogger("moltbot.notion.client")


class NotionCredentials(SecretStamped, Block):
    """A Notion internal-integration token and the API it is meant for.

    `base_url` points at the real API by default; the sandbox saves a block pointing at itself
    (``http://127.0.0.1:PORT/notion``).

    Attributes:
        token: the internal integration secret (``ntn_…``), sent as a Bearer token.
        base_url: API root without ``/v1``.
        timeout_seconds: the longest one request may take (connect, send and read each).

    Example:
        ```python
        from blocks import NotionCredentials

        client = NotionCredentials.load("sandbox-notion").get_client()
        client.search(query="moltbot digests")
        ```
    """

    _block_type_name = "Notion Credentials"
    _block_type_slug = "moltbot-notion-credentials"
    _description = "moltbot: a Notion integration token and API base URL (the sandbox's too)."
    _documentation_url = "https://developers.notion.com/reference/intro"

    token: SecretStr = Field(description="Internal integration secret (ntn_…).")
    base_url: str = Field(
        default="https://api.notion.com",
        description="API base URL, without /v1 (the sandbox: http://127.0.0.1:PORT/notion).",
    )
    timeout_seconds: float = Field(
        default=30.0, gt=0, le=300, description="Timeout of one request, in seconds."
    )
    secret_set_at: SecretSetAt = None

    @field_validator("base_url")
    @classmethod
    def _strip_version_suffix(cls, value: str) -> str:
        # The client appends /v1 itself; a pasted ".../v1" would otherwise become "/v1/v1".
        value = value.strip().rstrip("/")
        return value.removesuffix("/v1")

    def get_client(
        self, *, retry: RetryOptions | bool = False, rate_limiter: RateLimiter | None = None
    ) -> notion_client.Client:
        """A `notion_client.Client` for this token and base URL, with a bounded timeout.

        Every request (retries too) first waits for the token's shared rate limit
        (``[rate_limits.notion]``, 3 a second by default; see `moltbot.ratelimits`). Use the
        client as it is, not in a ``with`` block: notion-client's ``__enter__`` swaps in a
        plain httpx client without the limit.

        The client's own retries are off by default: moltbot's tasks retry every call through
        `moltbot.retrying.call_with_retries`, one policy from the settings for every service,
        because notion-client never retries a connection error or a 5xx on POST/PATCH and
        cannot tell whether a failed page create happened. Pass `retry` (e.g.
        ``RetryOptions(max_retries=2)``) for scripts that call the client directly; it retries
        429 on every method and 500/503 on GET/DELETE, honouring ``Retry-After``.

        Args:
            retry: the client's retry options, or False for none.
            rate_limiter: the limiter to wait at (default: the configured one, real time).

        Returns:
            A synchronous client; close it with ``client.close()`` or let it be collected.
        """
        register_model_secrets(self)
        token = self.token.get_secret_value()
        gate = rate_gate("notion", token, rate_limiter)
        hooks = {"request": [gate.httpx_hook]} if gate is not None else {}
        return notion_client.Client(
            # notion-client sets the base URL, timeout and headers on the httpx client it is given.
            client=httpx.Client(event_hooks=hooks),
            auth=token,
            base_url=self.base_url,
            timeout_ms=int(self.timeout_seconds * 1000),
            retry=retry,
            logger=_CLIENT_LOGGER,
            # Failures come back as exceptions that callers report; the client's own warning
            # for each failed attempt would only repeat them.
            log_level=logging.ERROR,
        )

    def display_name(self, block_name: str | None = None) -> str:
        """How messages name this block: the given name, the saved name, or ``unsaved``."""
        return block_name or getattr(self, "_block_document_name", None) or "unsaved"

"""Jira Cloud credentials block: server URL, account e-mail and API token."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
from jira import JIRA, JIRAError
from prefect.blocks.core import Block
from pydantic import Field, SecretStr
from urllib3.exceptions import MaxRetryError, NewConnectionError

from blocks.rotation import SecretSetAt, SecretStamped
from moltbot.errors import ServiceError
from moltbot.masking import mask_text, register_model_secrets
from moltbot.ratelimits import RateLimitedAdapter, RateLimiter, rate_gate
from moltbot.retrying import RetryPolicy, call_with_retries, retry_after_seconds

T = TypeVar("T")


# A host that does not answer should fail fast; a slow search may take the full read timeout.
_MAX_CONNECT_TIMEOUT = 5.0
_ERROR_TEXT_LIMIT = 500


class JiraCredentials(SecretStamped, Block):
    """A Jira Cloud site, account e-mail and API token, giving a `jira.JIRA` client.

    Retries live in one layer, ours: the client's own `ResilientSession` is built with
    ``max_retries=0`` because it sleeps ``2 * Retry-After`` and 20–60 s per connection error
    (a dead server holds the constructor for minutes) and never retries a 500. Instead `call`
    retries 429, 5xx, timeouts and connection errors `max_retries` times with the shared
    backoff, waiting exactly the ``Retry-After`` Jira names; other 4xx fail at once. Each request
    has bounded connect and read timeouts, so a stopped server fails in seconds (about 7 s with
    the default 1-2-4 s backoff).

    Attributes:
        server_url: site URL, including any context path (the sandbox's is ``…/jira``).
        email: the account's e-mail address (basic-auth user name).
        api_token: the account's API token.
        timeout_seconds: read timeout of one request; the connect timeout is at most 5 s.
        max_retries: retries after the first attempt for transient failures (None: the
            project-wide ``MOLTBOT_RETRY_ATTEMPTS`` setting, 4 attempts by default).
    """

    _block_type_name = "Jira Credentials"
    _block_type_slug = "moltbot-jira-credentials"
    _description = "moltbot: a Jira Cloud site, account e-mail and API token (REST v2)."

    server_url: str = Field(description="Site URL, e.g. https://example.atlassian.net.")
    email: str = Field(description="Account e-mail address.")
    api_token: SecretStr = Field(description="API token.")
    timeout_seconds: float = Field(
        default=10.0, gt=0, le=300, description="Read timeout of one request, in seconds."
    )
    max_retries: int | None = Field(
        default=None,
        ge=0,
        le=10,
        description="Retries of a transient failure (429, 5xx, network); "
        "default: MOLTBOT_RETRY_ATTEMPTS - 1.",
    )
    secret_set_at: SecretSetAt = None

    def label(self, block_name: str | None = None) -> str:
        """How messages name this block: ``Jira block 'sandbox-jira'``."""
        name = block_name or getattr(self, "_block_document_name", None)
        if name:
            return f"Jira block '{name}'"
        return f"Jira block for {urlsplit(self.server_url).netloc or self.server_url}"

    def retry_policy(self) -> RetryPolicy:
        """The shared backoff settings (`MOLTBOT_RETRY_*`), with this block's retries if set."""
        policy = RetryPolicy.from_settings()
        if self.max_retries is None:
            return policy
        return replace(policy, attempts=self.max_retries + 1)

    def get_client(
        self, *, block_name: str | None = None, rate_limiter: RateLimiter | None = None
    ) -> JIRA:
        """A `jira.JIRA` client for the site, after one ``GET serverInfo`` (retried).

        The server info tells the client it talks to Jira Cloud, so searches use
        ``search/jql`` (the old ``search`` answers 410 on Cloud). Every request, that one
        included, first waits for the site's shared rate limit (``[rate_limits.jira]``; see
        `moltbot.ratelimits`): Jira limits per site, whichever account calls.

        Args:
            block_name: name for messages when the block was not loaded by name.
            rate_limiter: the limiter to wait at (default: the configured one, real time).

        Raises:
            ServiceError: wrong credentials (401), a server that is down or not Jira Cloud.
        """
        register_model_secrets(self)
        timeout = (min(self.timeout_seconds, _MAX_CONNECT_TIMEOUT), self.timeout_seconds)
        server = self.server_url.rstrip("/")
        gate = rate_gate("jira", server, rate_limiter)

        def connect() -> JIRA:
            if gate is not None:
                gate.wait()  # for the serverInfo request the constructor sends
            return JIRA(
                server=server,
                basic_auth=(self.email, self.api_token.get_secret_value()),
                max_retries=0,
                timeout=timeout,
                get_server_info=True,
                options={"check_update": False},
            )

        client = self.call(connect, action="connect", block_name=block_name)
        if gate is not None:
            # jira builds its session inside the constructor: limit the requests after it.
            adapter = RateLimitedAdapter(gate)
            client._session.mount("https://", adapter)
            client._session.mount("http://", adapter)
        if client.deploymentType != "Cloud":
            raise ServiceError(
                f"{self.label(block_name)}: the server reports deployment type "
                f"{client.deploymentType!r}; moltbot supports Jira Cloud only",
                transient=False,
            )
        return client

    def classify(self, exc: Exception, block_name: str | None = None) -> ServiceError | None:
        """Turn a jira/requests exception into a `ServiceError` naming this block.

        Returns None for anything else (a bug, to be re-raised). The message quotes Jira's own
        error text (masked) and never the request headers the library's `JIRAError` carries.
        """
        label = self.label(block_name)
        if isinstance(exc, JIRAError):
            status = exc.status_code
            text = _jira_error_text(exc)
            if status is None:
                return ServiceError(f"{label}: {text}", transient=False)
            if status == 401:
                text += " (check the block's e-mail and API token)"
            headers = exc.response.headers if exc.response is not None else {}
            return ServiceError.for_status(
                f"{label}: {status} {text}",
                status,
                retry_after=retry_after_seconds(headers.get("Retry-After")),
            )
        if isinstance(exc, requests.Timeout | requests.ConnectionError):
            kind = type(exc).__name__
            if isinstance(exc, requests.ReadTimeout):
                problem = f"no answer within {self.timeout_seconds:g}s ({kind})"
            else:
                problem = f"cannot reach {mask_text(self.server_url)} ({kind})"
            return ServiceError(f"{label}: {problem}", transient=True)
        if isinstance(exc, requests.exceptions.ChunkedEncodingError):
            return ServiceError(
                f"{label}: the answer was cut off ({type(exc).__name__})", transient=True
            )
        if isinstance(exc, requests.RequestException):
            return ServiceError(f"{label}: request failed ({type(exc).__name__})", transient=False)
        return None

    def call(
        self,
        operation: Callable[[], T],
        *,
        action: str,
        block_name: str | None = None,
        classify: Callable[[Exception], ServiceError | None] | None = None,
        before_retry: Callable[[ServiceError], None] | None = None,
    ) -> T:
        """Run one client call with this block's retries (see the class docstring).

        Args:
            operation: the client call.
            action: what it does, for the retry log line.
            block_name: name for messages when the block was not loaded by name.
            classify: replaces `classify` (e.g. to refuse re-sending a create).
            before_retry: called with the failure before each retry.

        Raises:
            ServiceError: the last failure, with the library's exception (and its request
                headers) dropped from the chain so no credential reaches a traceback.
        """
        try:
            return call_with_retries(
                operation,
                classify=classify or (lambda exc: self.classify(exc, block_name)),
                describe=f"{self.label(block_name)}: {action}",
                policy=self.retry_policy(),
                before_retry=before_retry,
            )
        except ServiceError as failure:
            failure.__context__ = None
            raise failure from None


def request_may_have_applied(exc: BaseException) -> bool:
    """Whether a failed request may still have taken effect on the server.

    True for a 5xx, a read timeout or a connection lost mid-answer; False for a 4xx (429
    included: Jira refuses before doing anything) and for a connection that was never made.
    """
    if isinstance(exc, JIRAError):
        return exc.status_code is not None and exc.status_code >= 500
    if isinstance(exc, requests.ConnectTimeout):
        return False
    if isinstance(exc, requests.ConnectionError):
        # Refused or unresolvable: the request never left this machine.
        reason = exc.args[0] if exc.args else None
        never_sent = isinstance(reason, MaxRetryError) and isinstance(
            reason.reason, NewConnectionError
        )
        return not never_sent
    return isinstance(exc, requests.ReadTimeout | requests.exceptions.ChunkedEncodingError)


def _jira_error_text(exc: JIRAError) -> str:
    """Jira's ``errorMessages`` and ``field: message`` errors, masked and shortened."""
    parts: list[str] = []
    body: Any = None
    if exc.response is not None:
        try:
            body = exc.response.json()
        except ValueError:
            body = None
    if isinstance(body, dict):
        messages = body.get("errorMessages") or []
        parts.extend(str(m) for m in (messages if isinstance(messages, list) else [messages]))
        errors = body.get("errors")
        if isinstance(errors, dict):
            parts.extend(f"{name}: {message}" for name, message in errors.items())
        if not parts and body.get("message"):
            parts.append(str(body["message"]))
    if not parts and exc.text:
        parts.append(str(exc.text))
    if not parts and exc.response is not None:
        parts.append(exc.response.reason or "no error text")
    text = mask_text("; ".join(parts) or "no error text")
    return text if len(text) <= _ERROR_TEXT_LIMIT else text[:_ERROR_TEXT_LIMIT] + "…"

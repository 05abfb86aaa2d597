"""Jira Cloud credentials block: server URL, account e-mail and API token."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
from jira import JIRA, JIRAError
from prefect.blocks.core import Block
from pydantic import Field, PrivateAttr, SecretStr
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
# What every Jira Cloud site reports in serverInfo's versionNumbers; the client compares it only
# in Server/Data Center code paths, so stating it saves reading serverInfo on every connect.
_CLOUD_VERSION = (1001, 0, 0)


class _ClientSlot:
    """A block's built client and what it was built from, kept for the block's lifetime.

    A cache, not part of the block's value: every slot equals every other (so two blocks with
    the same fields stay equal), and a copy or a pickled block starts empty (a live session
    cannot be copied, and a copy may change the fields the client was built from).
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.key: tuple[Any, ...] | None = None
        self.client: JIRA | None = None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _ClientSlot)

    __hash__ = None  # type: ignore[assignment]

    def __copy__(self) -> _ClientSlot:
        return _ClientSlot()

    def __deepcopy__(self, memo: dict[int, Any]) -> _ClientSlot:
        return _ClientSlot()

    def __reduce__(self) -> tuple[type[_ClientSlot], tuple[()]]:
        return (_ClientSlot, ())


class JiraCredentials(SecretStamped, Block):
    """A Jira Cloud site, account e-mail and API token, giving a `jira.JIRA` client.

    The client is built once per block instance (a flow loads its block once per run) and
    sends no request of its own: the first request of a run is the run's own work. It is
    built anew when a field it depends on changes (site, e-mail, token, timeout) or for
    another rate limiter.

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
    _client_slot: _ClientSlot = PrivateAttr(default_factory=_ClientSlot)

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
        """This block's `jira.JIRA` client for a Jira Cloud site; building it sends no request.

        The client is told it talks to Jira Cloud instead of reading ``GET serverInfo`` on
        every construction, so searches use ``search/jql`` (the old ``search`` answers 410 on
        Cloud). A Server or Data Center site is named when its first search is refused
        (`not_cloud_error`). Every request first waits for the site's shared rate limit
        (``[rate_limits.jira]``; see `moltbot.ratelimits`): Jira limits per site, whichever
        account calls. Wrong credentials surface on the first request, as a `ServiceError`
        naming the block (see `classify`).

        Repeated calls return the same client while the site, e-mail, token, timeout and
        `rate_limiter` are the same (see the class docstring); it may be shared by threads.

        Args:
            block_name: name for messages when the block was not loaded by name.
            rate_limiter: the limiter to wait at (default: the configured one, real time).
        """
        register_model_secrets(self)
        timeout = (min(self.timeout_seconds, _MAX_CONNECT_TIMEOUT), self.timeout_seconds)
        server = self.server_url.rstrip("/")
        token = self.api_token.get_secret_value()
        # The token's digest, so the key held beside the client is not a second copy of it.
        fingerprint = hashlib.sha256(token.encode("utf-8")).hexdigest()
        key = (server, self.email, fingerprint, timeout, rate_limiter)
        slot = self._client_slot
        with slot.lock:
            if slot.client is not None and slot.key == key:
                return slot.client
            client = JIRA(
                server=server,
                basic_auth=(self.email, token),
                max_retries=0,
                timeout=timeout,
                get_server_info=False,
                options={"check_update": False},
            )
            # What serverInfo would have said on Cloud: `_is_cloud` picks the Cloud endpoints
            # and the `cloud_api` methods (search/jql) that answer None otherwise.
            client.deploymentType = "Cloud"
            client._version = _CLOUD_VERSION
            gate = rate_gate("jira", server, rate_limiter)
            if gate is not None:
                # jira builds its session inside the constructor: limit every request after it.
                adapter = RateLimitedAdapter(gate)
                client._session.mount("https://", adapter)
                client._session.mount("http://", adapter)
            slot.key, slot.client = key, client
            return client

    def not_cloud_error(self, client: JIRA, block_name: str | None = None) -> ServiceError | None:
        """After a 404 from a Cloud-only endpoint: the error naming a site that is not Jira
        Cloud, from one ``GET serverInfo`` (not retried), or None (Cloud, or unreadable)."""
        try:
            info = client.server_info()
        except (JIRAError, requests.RequestException):
            return None
        deployment = info.get("deploymentType") if isinstance(info, dict) else None
        if deployment in (None, "Cloud"):
            return None
        return ServiceError(
            f"{self.label(block_name)}: the server reports deployment type "
            f"{deployment!r}; moltbot supports Jira Cloud only",
            transient=False,
        )

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

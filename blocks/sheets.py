"""Google Sheets credentials block: a service account and an optional API base URL."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from typing import Any

import gspread
from google.oauth2 import service_account
from prefect.blocks.core import Block
from prefect.blocks.fields import SecretDict
from pydantic import Field
from requests import Response

from blocks.rotation import SecretSetAt, SecretStamped
from moltbot.masking import register_model_secrets
from moltbot.ratelimits import RateGate, RateLimiter, rate_gate

# Every URL gspread builds starts with one of these (Sheets v4, Drive v3 and its upload path).
_GOOGLE_HOSTS = re.compile(r"^https://(?:sheets|www)\.googleapis\.com")
# Connecting is quick or never happens; a short connect timeout fails fast on an unreachable host.
_CONNECT_TIMEOUT_CAP = 5.0

_credentials_lock = threading.Lock()
_credentials_cache: dict[str, service_account.Credentials] = {}


class RewritingHTTPClient(gspread.HTTPClient):
    """gspread's plain HTTP client (no retries), sending Google's URLs to another base URL.

    gspread hard-codes ``https://sheets.googleapis.com`` and ``https://www.googleapis.com``;
    when `api_base_url` is set they are replaced by it (``http://127.0.0.1:8765/sheets`` for the
    sandbox), otherwise requests go to Google unchanged. The plain client is used on purpose:
    `gspread.BackOffHTTPClient` ignores ``Retry-After`` and sleeps up to 128 s, while moltbot's
    tasks retry with `moltbot.retrying.call_with_retries`, the one retry layer.

    Each request first waits at the service account's read gate (GET) or write gate (any
    other method), Google counting the two quotas apart; None lets it go at once.
    """

    api_base_url: str | None = None
    read_gate: RateGate | None = None
    write_gate: RateGate | None = None

    def request(self, method: str, endpoint: str, *args: Any, **kwargs: Any) -> Response:
        """Send one request, to `api_base_url` instead of Google when it is set."""
        gate = self.read_gate if method.upper() == "GET" else self.write_gate
        if gate is not None:
            gate.wait()
        return super().request(
            method, rewrite_google_url(endpoint, self.api_base_url), *args, **kwargs
        )


def rewrite_google_url(url: str, api_base_url: str | None) -> str:
    """`url` with its Google API origin replaced by `api_base_url`; unchanged when that is None."""
    if not api_base_url:
        return url
    return _GOOGLE_HOSTS.sub(lambda _: api_base_url.rstrip("/"), url, count=1)


class GoogleSheetsCredentials(SecretStamped, Block):
    """A Google service account for Sheets, and where the Sheets API lives.

    The service account's JSON key is kept as a secret; share each spreadsheet with its
    ``client_email``. For the sandbox, ``token_uri`` inside the key and `api_base_url` point at
    the sandbox (``moltbot sandbox`` saves such a block as ``sandbox-sheets``).

    Attributes:
        service_account_info: the service account's JSON key (type, client_email, private_key,
            token_uri, …).
        api_base_url: replaces ``https://sheets.googleapis.com`` and ``https://www.googleapis.com``
            when set; leave empty for Google.
        timeout_seconds: read timeout of one request (connecting gets at most 5 s of it).

    Example:
        ```python
        from blocks import GoogleSheetsCredentials

        client = GoogleSheetsCredentials.load("sandbox-sheets").get_client()
        client.open_by_key(spreadsheet_id).sheet1.get_all_values()
        ```
    """

    _block_type_name = "Google Sheets Credentials"
    _block_type_slug = "moltbot-google-sheets-credentials"
    _description = "moltbot: a Google service account for the Sheets API (or the sandbox)."

    service_account_info: SecretDict = Field(
        description="The service account's JSON key (share spreadsheets with its client_email)."
    )
    api_base_url: str | None = Field(
        default=None,
        description="Base URL instead of Google's (the sandbox: http://127.0.0.1:8765/sheets).",
    )
    timeout_seconds: float = Field(default=30.0, gt=0, description="Timeout of one request.")
    secret_set_at: SecretSetAt = None

    def get_client(self, *, rate_limiter: RateLimiter | None = None) -> gspread.Client:
        """A gspread client authenticated as the service account, with bounded timeouts.

        Every request has a connect timeout of at most 5 s and a read timeout of
        `timeout_seconds`. Retries belong to moltbot's tasks (`call_with_retries`, which honours
        ``Retry-After``); below them gspread's plain client never retries, and google-auth only
        retries a token request answered 408/429/5xx (3 attempts, about 3 s) and asks for a new
        token once on a 401. The access token is fetched on first use and reused by later clients
        of the same key in this process, so reading a sheet costs one request once the token is
        held. The key's secrets are registered with the log masker.

        Every API request first waits for the service account's shared read or write limit
        (``[rate_limits.sheets_read]`` / ``sheets_write``; see `moltbot.ratelimits`), Google's
        quotas being per user: `rate_limiter` replaces the configured limiter (tests).
        """
        register_model_secrets(self)
        info = self.service_account_info.get_secret_value()
        client = gspread.Client(auth=_credentials_for(info), http_client=RewritingHTTPClient)
        http = client.http_client
        if isinstance(http, RewritingHTTPClient):
            http.api_base_url = self.api_base_url
            # The quota user is the service account; an unnamed key falls back to the whole key.
            user = str(info.get("client_email") or json.dumps(info, sort_keys=True))
            http.read_gate = rate_gate("sheets_read", user, rate_limiter)
            http.write_gate = rate_gate("sheets_write", user, rate_limiter)
        http.set_timeout((min(self.timeout_seconds, _CONNECT_TIMEOUT_CAP), self.timeout_seconds))
        return client


def _credentials_for(info: dict[str, Any]) -> service_account.Credentials:
    # One google-auth credentials object per key: it holds the access token and refreshes it
    # before it expires, so clients built for each task run do not each ask for a new token.
    key = hashlib.sha256(json.dumps(info, sort_keys=True).encode()).hexdigest()
    with _credentials_lock:
        credentials = _credentials_cache.get(key)
        if credentials is None:
            credentials = service_account.Credentials.from_service_account_info(
                info, scopes=gspread.auth.DEFAULT_SCOPES
            )
            _credentials_cache[key] = credentials
        return credentials

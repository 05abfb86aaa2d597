"""HTTP headers block: secret request headers (an API key, a bearer token) for health checks."""

from __future__ import annotations

import re

from prefect.blocks.core import Block
from prefect.types import SecretDict
from pydantic import ConfigDict, Field, field_validator

from blocks.rotation import SecretSetAt, SecretStamped
from moltbot.masking import register_secret

# RFC 9110 field names: a token of visible characters without separators.
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


class HttpHeaders(SecretStamped, Block):
    """Request headers whose values are secrets, sent with an HTTP health check.

    Every value is a secret: the Prefect UI shows it obfuscated, and once the headers are
    unwrapped (`header_values`) each value is masked in every log, artifact and error of the
    process, whatever the header is called.

    Attributes:
        headers: header name -> value, e.g. ``{"Authorization": "Bearer …"}``.
    """

    # A refused value must not reach an error message: pydantic would quote the whole input.
    model_config = ConfigDict(hide_input_in_errors=True)

    _block_type_name = "HTTP Headers"
    _block_type_slug = "moltbot-http-headers"
    _description = "moltbot: secret HTTP request headers (API keys, tokens) for health checks."

    headers: SecretDict = Field(
        description="Header name -> value; every value is kept secret, e.g. X-Api-Key."
    )
    secret_set_at: SecretSetAt = None

    @field_validator("headers")
    @classmethod
    def _header_fields(cls, headers: SecretDict) -> SecretDict:
        # Said without the value: only the header's name is safe to show.
        for name, value in headers.get_secret_value().items():
            if not isinstance(name, str) or not _HEADER_NAME.match(name):
                raise ValueError("a header name is letters, digits and -_.!#$%&'*+^`|~ only")
            if not isinstance(value, str) or "\n" in value or "\r" in value:
                raise ValueError(f"header {name}: the value must be one line of text")
        return headers

    def header_values(self) -> dict[str, str]:
        """The headers to send, each value registered with the log masker first."""
        headers = {str(name): str(value) for name, value in self.headers.get_secret_value().items()}
        for value in headers.values():
            register_secret(value)
        return headers

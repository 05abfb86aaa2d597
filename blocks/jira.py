"""Jira Cloud credentials block: server URL, account e-mail and API token."""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field, SecretStr


class JiraCredentials(Block):
    """A Jira Cloud account and API token (skeleton: being written)."""

    _block_type_name = "Jira Credentials"
    _block_type_slug = "moltbot-jira-credentials"

    server_url: str = Field(description="Site URL, e.g. https://example.atlassian.net.")
    email: str = Field(description="Account e-mail address.")
    api_token: SecretStr = Field(description="API token.")

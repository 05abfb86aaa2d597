"""Google Sheets credentials block: a service account and an optional API base URL."""

from __future__ import annotations

from prefect.blocks.core import Block
from prefect.blocks.fields import SecretDict
from pydantic import Field


class GoogleSheetsCredentials(Block):
    """A Google service account for Sheets (skeleton: being written)."""

    _block_type_name = "Google Sheets Credentials"
    _block_type_slug = "moltbot-google-sheets-credentials"

    service_account_info: SecretDict = Field(description="The service account's JSON key.")
    api_base_url: str | None = Field(default=None, description="Base URL instead of Google's.")

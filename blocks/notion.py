"""Notion credentials block: an integration token and the API base URL."""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field, SecretStr


class NotionCredentials(Block):
    """A Notion integration token (skeleton: being written)."""

    _block_type_name = "Notion Credentials"
    _block_type_slug = "moltbot-notion-credentials"

    token: SecretStr = Field(description="Internal integration secret.")
    base_url: str = Field(default="https://api.notion.com", description="API base URL.")

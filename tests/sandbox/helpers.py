"""Credentials blocks pointing at a running sandbox, shared by emulator, block and task tests."""

from __future__ import annotations

from typing import Any

from blocks import JiraCredentials
from blocks.notion import NotionCredentials
from blocks.sheets import GoogleSheetsCredentials
from moltbot.sandbox.jira import SANDBOX_JIRA_EMAIL, SANDBOX_JIRA_TOKEN
from moltbot.sandbox.notion import SANDBOX_NOTION_TOKEN
from moltbot.sandbox.sheets import sandbox_service_account_info


def sheets_block(
    base_url: str, info: dict[str, Any] | None = None, **fields: Any
) -> GoogleSheetsCredentials:
    """A Sheets block on the sandbox at `base_url`: its fixed service account unless `info`."""
    return GoogleSheetsCredentials(
        service_account_info=info or sandbox_service_account_info(f"{base_url}/sheets/token"),
        api_base_url=f"{base_url}/sheets",
        **fields,
    )


def notion_block(base_url: str, **fields: Any) -> NotionCredentials:
    """A Notion block with the sandbox's token on the sandbox at `base_url`."""
    return NotionCredentials(token=SANDBOX_NOTION_TOKEN, base_url=f"{base_url}/notion", **fields)


def jira_block(base_url: str, **fields: Any) -> JiraCredentials:
    """A Jira block with the sandbox's account on `base_url` (``…/jira`` is appended)."""
    values: dict[str, Any] = {
        "server_url": f"{base_url}/jira",
        "email": SANDBOX_JIRA_EMAIL,
        "api_token": SANDBOX_JIRA_TOKEN,
    }
    return JiraCredentials(**(values | fields))

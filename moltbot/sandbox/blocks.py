"""The block documents that point at a running sandbox: the fixed credentials it accepts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prefect.blocks.core import Block

    from blocks import EmailChannel
    from moltbot.sandbox.server import Sandbox

SANDBOX_SHEETS_BLOCK = "sandbox-sheets"
SANDBOX_NOTION_BLOCK = "sandbox-notion"
SANDBOX_JIRA_BLOCK = "sandbox-jira"
SANDBOX_SLACK_BLOCK = "sandbox-slack"
SANDBOX_EMAIL_BLOCK = "sandbox-email"
SANDBOX_OPS_BLOCK = "sandbox-ops"
# Prefect's own webhook notification block: the Prefect server sends failure alerts itself and
# can only load its own block types. It posts exactly Slack's `{"text": ...}`.
OPS_ALERT_JSON = {"text": "*{{subject}}*\n{{body}}"}


@dataclass(frozen=True)
class SandboxBlock:
    """A block document to save for the sandbox.

    Attributes:
        name: the block document name (``sandbox-jira``).
        block: the block instance, pointing at the running sandbox.
        target: where it points, for printing (never a secret).
    """

    name: str
    block: Block
    target: str


def sandbox_email_channel(sandbox: Sandbox) -> EmailChannel:
    """An e-mail channel to the sandbox's SMTP sink (plain SMTP, no login)."""
    from blocks import EmailChannel

    return EmailChannel(
        smtp_host=sandbox.host,
        smtp_port=sandbox.smtp_port,
        tls="none",
        sender="moltbot-demo@example.com",
        recipients=["ops-team@example.com"],
    )


def sandbox_blocks(sandbox: Sandbox) -> list[SandboxBlock]:
    """The blocks pointing at `sandbox`, with the credentials its emulators accept."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    from blocks import (
        GoogleSheetsCredentials,
        JiraCredentials,
        NotionCredentials,
        SlackIncomingWebhook,
    )
    from moltbot.sandbox.jira import SANDBOX_JIRA_EMAIL, SANDBOX_JIRA_TOKEN
    from moltbot.sandbox.notion import SANDBOX_NOTION_TOKEN
    from moltbot.sandbox.sheets import sandbox_service_account_info

    base = sandbox.base_url
    smtp_host = sandbox.host
    return [
        SandboxBlock(
            SANDBOX_SHEETS_BLOCK,
            GoogleSheetsCredentials(
                service_account_info=sandbox_service_account_info(f"{base}/sheets/token"),
                api_base_url=f"{base}/sheets",
            ),
            f"{base}/sheets",
        ),
        SandboxBlock(
            SANDBOX_NOTION_BLOCK,
            NotionCredentials(token=SANDBOX_NOTION_TOKEN, base_url=f"{base}/notion"),
            f"{base}/notion",
        ),
        SandboxBlock(
            SANDBOX_JIRA_BLOCK,
            JiraCredentials(
                server_url=f"{base}/jira", email=SANDBOX_JIRA_EMAIL, api_token=SANDBOX_JIRA_TOKEN
            ),
            f"{base}/jira",
        ),
        SandboxBlock(
            SANDBOX_SLACK_BLOCK,
            SlackIncomingWebhook(url=sandbox.sandbox_webhook_url),
            f"{base}/slack/services/…",
        ),
        SandboxBlock(
            SANDBOX_EMAIL_BLOCK,
            sandbox_email_channel(sandbox),
            f"smtp://{smtp_host}:{sandbox.smtp_port}",
        ),
        SandboxBlock(
            SANDBOX_OPS_BLOCK,
            CustomWebhookNotificationBlock(
                name="sandbox ops channel", url=sandbox.ops_webhook_url, json_data=OPS_ALERT_JSON
            ),
            f"{base}/slack/services/… (ops)",
        ),
    ]


def save_sandbox_blocks(sandbox: Sandbox) -> list[SandboxBlock]:
    """Save (or overwrite) the sandbox's block documents in the Prefect API; return them."""
    from moltbot.blockdocs import save_block_document

    saved = sandbox_blocks(sandbox)
    for entry in saved:
        save_block_document(entry.block, entry.name)
    return saved

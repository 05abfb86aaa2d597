"""Prefect blocks of moltbot; imported here so `prefect block register -m blocks` finds them."""

import moltbot  # noqa: F401  (sets Prefect telemetry defaults before Prefect is imported)
from blocks.channels import (
    CHANNEL_BLOCK_TYPES,
    EmailChannel,
    OutboxChannel,
    SlackIncomingWebhook,
)
from blocks.http import HttpHeaders
from blocks.jira import JiraCredentials
from blocks.notion import NotionCredentials
from blocks.sheets import GoogleSheetsCredentials
from blocks.webhooks import WebhookSource

__all__ = [
    "CHANNEL_BLOCK_TYPES",
    "EmailChannel",
    "GoogleSheetsCredentials",
    "HttpHeaders",
    "JiraCredentials",
    "NotionCredentials",
    "OutboxChannel",
    "SlackIncomingWebhook",
    "WebhookSource",
]

"""Prefect blocks of moltbot; imported here so `prefect block register -m blocks` finds them."""

import moltbot  # noqa: F401  (sets Prefect telemetry defaults before Prefect is imported)
from blocks.channels import (
    CHANNEL_BLOCK_TYPES,
    EmailChannel,
    OutboxChannel,
    SlackIncomingWebhook,
)
from blocks.dooray import DoorayIncomingHook
from blocks.http import HttpHeaders
from blocks.jandi import JandiIncomingWebhook
from blocks.jira import JiraCredentials
from blocks.kakaowork import KakaoWorkBot
from blocks.naverworks import NaverWorksBot
from blocks.notion import NotionCredentials
from blocks.sheets import GoogleSheetsCredentials
from blocks.slack_bot import SlackBot
from blocks.sms import SolapiSms, TwilioSms
from blocks.webhooks import WebhookSource

__all__ = [
    "CHANNEL_BLOCK_TYPES",
    "DoorayIncomingHook",
    "EmailChannel",
    "GoogleSheetsCredentials",
    "HttpHeaders",
    "JandiIncomingWebhook",
    "JiraCredentials",
    "KakaoWorkBot",
    "NaverWorksBot",
    "NotionCredentials",
    "OutboxChannel",
    "SlackBot",
    "SlackIncomingWebhook",
    "SolapiSms",
    "TwilioSms",
    "WebhookSource",
]

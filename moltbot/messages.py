"""The `Message` model: one intended chat/e-mail/file delivery, rendered once for every channel."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Severity = Literal["info", "warning", "critical"]

SLACK_SECTION_LIMIT = 3000
"""Slack refuses a section whose text is longer than this."""
SLACK_MAX_SECTIONS = 40
"""A Slack message holds at most 50 blocks; item lists keep room for the others."""


class Attachment(BaseModel):
    """A file sent with a message: a chart PNG, a CSV export.

    Attributes:
        filename: the name the recipient sees (may be Korean).
        content_type: MIME type, e.g. `image/png`.
        data: the file's bytes.
        inline_id: when set, the HTML body shows the file inline as `cid:<inline_id>`.
    """

    # Kept as JSON in the ledger until delivered (for replay): bytes travel as base64.
    model_config = ConfigDict(ser_json_bytes="base64", val_json_bytes="base64")

    filename: str
    content_type: str
    data: bytes
    inline_id: str | None = None


class Message(BaseModel):
    """One message of an automation, with a rendering for each kind of channel.

    `key` is the logical idempotency key (e.g. `daily-report:2026-11-23`); the delivery layer adds
    the channel name, so each (automation, logical item, channel) is sent at most once.
    """

    key: str = Field(description="Logical idempotency key: automation and logical item.")
    automation: str
    severity: Severity = "info"
    title: str
    text: str = Field(description="Plain text (also the chat fallback and e-mail text part).")
    markdown: str | None = Field(default=None, description="Markdown for files and artifacts.")
    html: str | None = Field(default=None, description="HTML e-mail body; images by cid.")
    slack_blocks: list[dict[str, Any]] | None = Field(
        default=None, description="Slack Block Kit blocks; `text` stays the notification text."
    )
    attachments: list[Attachment] = Field(default_factory=list)
    file_stem: str | None = Field(
        default=None, description="Base name for files the outbox writes (default: from key)."
    )


def slack_sections(lines: list[str]) -> list[dict[str, Any]]:
    """Lines packed into as few mrkdwn sections as Slack's length limit allows.

    A line longer than the limit is cut; past `SLACK_MAX_SECTIONS` sections the rest is left
    out (the e-mail and outbox renderings carry everything).
    """
    sections: list[str] = []
    current = ""
    for line in lines:
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) > SLACK_SECTION_LIMIT and current:
            sections.append(current)
            candidate = line
        current = candidate[:SLACK_SECTION_LIMIT]
    if current:
        sections.append(current)
    return [
        {"type": "section", "text": {"type": "mrkdwn", "text": text}}
        for text in sections[:SLACK_MAX_SECTIONS]
    ]

"""The `Message` model: one intended chat/e-mail/file delivery, rendered once for every channel."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Severity = Literal["info", "warning", "critical"]

SLACK_SECTION_LIMIT = 3000
"""Slack refuses a section whose text is longer than this."""
SLACK_MAX_SECTIONS = 40
"""A Slack message holds at most 50 blocks; item lists keep room for the others."""
SLACK_TEXT_LIMIT = 4000
"""Slack asks for a top-level `text` of at most this many characters (it cuts at 40,000)."""


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
    text: str = Field(
        description=(
            "Plain text: the e-mail text part. Chat posts it only for a message without "
            "`slack_blocks`; with blocks, chat's notification text is the blocks' own text."
        )
    )
    markdown: str | None = Field(default=None, description="Markdown for files and artifacts.")
    html: str | None = Field(default=None, description="HTML e-mail body; images by cid.")
    slack_blocks: list[dict[str, Any]] | None = Field(
        default=None,
        description=(
            "Slack Block Kit blocks: what chat may see. The post's notification text is "
            "flattened from them (`chat_text`), never taken from `text`."
        ),
    )
    attachments: list[Attachment] = Field(default_factory=list)
    file_stem: str | None = Field(
        default=None, description="Base name for files the outbox writes (default: from key)."
    )
    follow_up_of: str | None = Field(
        default=None,
        description=(
            "The `key` of an earlier message this one follows up (an alert's recovery): a "
            "channel with threads posts it as a reply to that message where it went there."
        ),
    )
    resolves: bool = Field(
        default=False,
        description="With `follow_up_of`: this ends what the original reported (mark it so).",
    )
    ack_url: str | None = Field(
        default=None,
        description=(
            "The acknowledgement link of an urgent message that escalates (also in its text "
            "and blocks): an SMS carries it as its link."
        ),
    )
    # Left out of the JSON when unset, so payloads stored before rules existed read the same.
    rule: str | None = Field(
        default=None,
        description="The id of the automation's rule that produced it (`moltbot policy`).",
        exclude_if=lambda value: value is None,
    )

    def chat_text(self) -> str:
        """The plain-text form a chat post carries beside its blocks (notifications, search).

        Chat's content rules are the blocks' (figures only, say), while `text` is written for
        e-mail and may hold everything; so with blocks this is their own text flattened
        (`slack_fallback_text`) and says nothing they do not. Without blocks, `text` is what
        chat shows, so it is posted as it is.
        """
        if self.slack_blocks:
            return slack_fallback_text(self.slack_blocks)
        return self.text


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


def _escape_mrkdwn(text: str) -> str:
    # A plain_text object shows `<`, `>` and `&` as they are; in mrkdwn they must be escaped.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _text_object(value: object) -> str:
    if not isinstance(value, dict):
        return ""
    text = str(value.get("text", ""))
    return text if value.get("type") == "mrkdwn" else _escape_mrkdwn(text)


def slack_block_lines(blocks: list[dict[str, Any]]) -> list[str]:
    """The lines a reader sees in Slack `blocks`, in order, as mrkdwn.

    Headers, sections (text and fields) and context elements with text count; images, dividers,
    buttons and unknown kinds add nothing, so nothing outside the blocks' own text can appear.
    """
    lines: list[str] = []
    for block in blocks:
        kind = block.get("type")
        pieces: list[str] = []
        if kind in ("header", "section"):
            pieces.append(_text_object(block.get("text")))
            pieces.extend(_text_object(field) for field in block.get("fields") or [])
        elif kind == "context":
            pieces.extend(_text_object(element) for element in block.get("elements") or [])
        lines.extend(line for piece in pieces for line in piece.splitlines() if line.strip())
    return lines


def slack_fallback_text(blocks: list[dict[str, Any]], limit: int = SLACK_TEXT_LIMIT) -> str:
    """The blocks' own text as one mrkdwn string, for a post's top-level `text`.

    Whole lines up to `limit` characters (a single longer first line is cut), so the
    notification starts with the header and summary and never says more than the blocks.
    """
    kept: list[str] = []
    size = 0
    for line in slack_block_lines(blocks):
        added = len(line) + (1 if kept else 0)
        if size + added > limit:
            if not kept:
                kept.append(line[:limit])
            break
        kept.append(line)
        size += added
    return "\n".join(kept)

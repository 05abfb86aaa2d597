"""Dry-run previews: what each destination would receive, from the rendering a real send runs,
masked for terminals and logs, and the lines a person reads them as."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import quote

from blocks.channels import EmailChannel, OutboxChannel, SlackIncomingWebhook, safe_file_stem
from blocks.slack_bot import SlackBot
from moltbot.effects.model import Intent, Outcome, Preview
from moltbot.masking import mask_text

PREVIEW_FOLDER = "previews"
"""Under `MOLTBOT_HOME`: the files a dry run writes to show what would go out (e-mail HTML)."""

BODY_LINES = 6
"""First lines shown of a long text (an issue's description, a comment, a plain e-mail)."""

OUTLINE_BLOCKS = 40
"""Blocks of a Notion page listed in its outline; the rest are counted."""

_INDENT = "  "


# The labels of a preview, in the run's locale (the values stay as the service gets them).
_WORDS: dict[str, dict[str, str]] = {
    "en": {
        "more_lines": "… {count} more line(s)",
        "folder": "folder: {folder} (nothing written in a dry run)",
        "bytes": "bytes",
        "subject": "Subject",
        "from": "From",
        "to": "To",
        "attachment": "Attachment",
        "inline": " (inline)",
        "not_written": "preview file not written ({error})",
        "project": "project",
        "type": "type",
        "priority": "priority",
        "summary": "summary",
        "labels": "labels",
        "components": "components",
        "assignee": "assignee",
        "due": "due",
        "description": "description:",
        "properties": "properties:",
        "blocks": "blocks ({count}):",
        "table": "[table: {rows} row(s) × {width}]",
        "more_blocks": "… {count} more block(s)",
        "no_preview": "no preview",
        "nothing_to_show": "({kind}: nothing to show)",
        "open": "open",
        "if_it_fails": "if it fails",
    },
    "ko": {
        "more_lines": "… {count}줄 더",
        "folder": "폴더: {folder} (미리보기 실행이라 쓰지 않음)",
        "bytes": "바이트",
        "subject": "제목",
        "from": "보낸 사람",
        "to": "받는 사람",
        "attachment": "첨부",
        "inline": " (본문 이미지)",
        "not_written": "미리보기 파일을 쓰지 못함 ({error})",
        "project": "프로젝트",
        "type": "유형",
        "priority": "우선순위",
        "summary": "요약",
        "labels": "레이블",
        "components": "구성 요소",
        "assignee": "담당자",
        "due": "기한",
        "description": "설명:",
        "properties": "속성:",
        "blocks": "블록 ({count}개):",
        "table": "[표: {rows}행 × {width}열]",
        "more_blocks": "… 블록 {count}개 더",
        "no_preview": "미리보기 없음",
        "nothing_to_show": "({kind}: 보여줄 것 없음)",
        "open": "열기",
        "if_it_fails": "실패하면",
    },
}


def _word(name: str, **values: Any) -> str:
    """Label `name` in `MOLTBOT_LOCALE` (English when the locale has none)."""
    from moltbot.i18n import in_locale

    return in_locale(_WORDS)[name].format(**values)


def previews_dir() -> Path:
    """``<MOLTBOT_HOME>/previews`` (resolved when a preview is made, never at import)."""
    from moltbot.config.settings import get_settings

    return get_settings().home / PREVIEW_FOLDER


def make_preview(
    destination: str, kind: str, lines: Iterable[str], *, file: str | None = None
) -> Preview:
    """A preview whose lines are split at line breaks and masked like every log line (a dry
    run prints them, and its task logs them)."""
    split = [part for line in lines for part in (str(line).splitlines() or [""])]
    return Preview(
        destination=destination, kind=kind, lines=[mask_text(line) for line in split], file=file
    )


def first_lines(text: str, limit: int = BODY_LINES) -> list[str]:
    """The first `limit` non-empty lines of `text`, indented, then how many more there are."""
    lines = [line for line in text.splitlines() if line.strip()]
    shown = [f"{_INDENT}{line}" for line in lines[:limit]]
    if len(lines) > limit:
        shown.append(f"{_INDENT}{_word('more_lines', count=len(lines) - limit)}")
    return shown


# --------------------------------------------------------------------------- channels


def channel_preview(name: str, channel: object, intent: Intent) -> Preview | None:
    """What channel `name` would receive for a message intent (None: a channel type without a
    preview). Each channel block's own rendering makes it: the Slack webhook's JSON body, the
    e-mail's MIME message, the outbox's files."""
    message = intent.payload
    if isinstance(channel, SlackIncomingWebhook | SlackBot):
        return make_preview(name, "slack", slack_lines(channel.payload(message)))
    if isinstance(channel, EmailChannel):
        return email_preview(name, channel.build_email(message), intent)
    if isinstance(channel, OutboxChannel):
        folder = channel.target_folder()
        lines = [_word("folder", folder=folder)]
        lines += [
            f"{_INDENT}{file_name} ({len(data):,} {_word('bytes')})"
            for file_name, data in channel.files(message).items()
        ]
        return make_preview(name, "outbox", lines)
    preview_lines = getattr(channel, "preview_lines", None)
    if callable(preview_lines):  # SMS blocks: the shortened text and what it costs
        return make_preview(name, type(channel).__name__, preview_lines(message))
    return None


def slack_lines(payload: Mapping[str, Any]) -> list[str]:
    """How a Slack webhook post reads: its blocks' texts in order (the header, each section's
    mrkdwn and fields, context lines), or its `text` when it has no blocks."""
    blocks = payload.get("blocks")
    if not blocks:
        return str(payload.get("text", "")).splitlines()
    lines: list[str] = []
    for block in blocks:
        kind = block.get("type")
        if kind in ("header", "section"):
            if block.get("text"):
                lines.extend(str(block["text"].get("text", "")).splitlines())
            for field in block.get("fields", []):
                lines.extend(str(field.get("text", "")).splitlines())
        elif kind == "context":
            for element in block.get("elements", []):
                if "text" in element:
                    lines.extend(str(element["text"]).splitlines())
        elif kind == "divider":
            lines.append("---")
        elif kind == "image":
            lines.append(f"[image: {block.get('alt_text', '')}]")
    return lines


def email_preview(name: str, email: EmailMessage, intent: Intent) -> Preview:
    """The e-mail's headers and parts, its body saved as a file that opens in a browser.

    The HTML body goes to ``<MOLTBOT_HOME>/previews/<automation>/<key>.html`` with its inline
    images beside it and ``cid:`` references rewritten to them (a plain-text e-mail: ``.txt``).
    The file is the e-mail exactly as it would be sent, like the outbox's files; only the lines
    are masked.
    """
    html_part = email.get_body(preferencelist=("html",))
    text_part = email.get_body(preferencelist=("plain",))
    lines = [
        f"{_word('subject')}: {email['Subject']}",
        f"{_word('from')}: {email['From']}",
        f"{_word('to')}: {email['To']}",
    ]
    parts = [
        part
        for part in email.walk()
        if not part.is_multipart() and part is not html_part and part is not text_part
    ]
    folder = previews_dir() / safe_file_stem(intent.automation)
    stem = safe_file_stem(intent.key if name == intent.route.name else f"{intent.key}~{name}")
    images: dict[str, tuple[str, bytes]] = {}
    for part in parts:
        file_name = safe_file_stem(part.get_filename() or "attachment")
        content_id = (part["Content-ID"] or "").strip("<>")
        inline = _word("inline") if content_id else ""
        data = part.get_payload(decode=True) or b""
        lines.append(f"{_word('attachment')}: {file_name}, {part.get_content_type()}{inline}")
        if content_id:
            images[content_id] = (f"{stem}.{file_name}", data)
    if html_part is not None:
        body = str(html_part.get_content())
        for content_id, (file_name, _) in images.items():
            body = body.replace(f"cid:{content_id}", quote(file_name))
        main = folder / f"{stem}.html"
    else:
        body = str(text_part.get_content()) if text_part is not None else ""
        lines.extend(first_lines(body))
        main = folder / f"{stem}.txt"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for file_name, data in images.values():
            (folder / file_name).write_bytes(data)
        # With a byte-order mark a browser reads the file as UTF-8 (Korean too) even when
        # the HTML declares no charset (an e-mail's does so in its MIME header instead).
        main.write_text(body, encoding="utf-8-sig")
    except OSError as exc:
        error = f"{type(exc).__name__}: {exc.strerror}"
        lines.append(_word("not_written", error=error))
        return make_preview(name, "email", lines)
    return make_preview(name, "email", lines, file=str(main))


# --------------------------------------------------------------------------- services


def _named(value: Any, *keys: str) -> str:
    """A Jira field given as a plain string or as its REST object (``{"name": ...}``)."""
    if isinstance(value, Mapping):
        for key in keys:
            if value.get(key):
                return str(value[key])
        return ""
    return "" if value is None else str(value)


def jira_issue_lines(fields: Mapping[str, Any]) -> list[str]:
    """An issue's fields as a reviewer checks them: project, type, priority, summary, labels,
    components, assignee, due date, then the description's first lines."""
    components = [_named(item, "name") for item in fields.get("components") or []]
    lines = [
        f"{_word('project')}: {_named(fields.get('project'), 'key', 'id')}"
        f" · {_word('type')}: {_named(fields.get('issuetype'), 'name', 'id')}"
        f" · {_word('priority')}: {_named(fields.get('priority'), 'name', 'id') or '-'}",
        f"{_word('summary')}: {fields.get('summary', '')}",
        f"{_word('labels')}: {', '.join(map(str, fields.get('labels') or [])) or '-'}",
        f"{_word('components')}: {', '.join(components) or '-'}",
        f"{_word('assignee')}: {_named(fields.get('assignee'), 'accountId', 'name') or '-'}",
        f"{_word('due')}: {fields.get('duedate') or '-'}",
    ]
    description = fields.get("description")
    if isinstance(description, str) and description.strip():
        lines.append(_word("description"))
        lines.extend(first_lines(description))
    return lines


def _plain(rich: Any) -> str:
    """The text of a Notion rich-text array."""
    if not isinstance(rich, list):
        return ""
    return "".join(
        str(item.get("plain_text") or (item.get("text") or {}).get("content", ""))
        for item in rich
        if isinstance(item, Mapping)
    )


def _property_value(value: Mapping[str, Any]) -> str:
    """A Notion property value (as sent when creating a page) as text."""
    for kind in ("title", "rich_text"):
        if kind in value:
            return _plain(value[kind])
    if "number" in value:
        return "" if value["number"] is None else str(value["number"])
    if "select" in value:
        return (value["select"] or {}).get("name", "")
    if "multi_select" in value:
        return ", ".join(str(item.get("name", "")) for item in value["multi_select"] or [])
    if "date" in value:
        when = value["date"] or {}
        start, end = when.get("start"), when.get("end")
        return f"{start} → {end}" if end else str(start or "")
    if "checkbox" in value:
        return "yes" if value["checkbox"] else "no"
    for kind in ("url", "email", "phone_number"):
        if kind in value:
            return str(value[kind] or "")
    return "…"


_BLOCK_MARKS = {
    "heading_1": "# ",
    "heading_2": "## ",
    "heading_3": "### ",
    "bulleted_list_item": "- ",
    "numbered_list_item": "1. ",
    "to_do": "[ ] ",
    "quote": "> ",
    "callout": "! ",
    "paragraph": "",
}
_PARAGRAPH_CHARS = 100


def notion_outline(properties: Mapping[str, Any], blocks: Sequence[Mapping[str, Any]]) -> list[str]:
    """A page's outline: its properties, then one line per block (headings, list items, the
    start of paragraphs, tables by size), at most `OUTLINE_BLOCKS` of them."""
    lines = [_word("properties")]
    lines += [
        f"{_INDENT}{name}: {_property_value(value)}"
        for name, value in properties.items()
        if isinstance(value, Mapping)
    ]
    lines.append(_word("blocks", count=len(blocks)))
    for block in blocks[:OUTLINE_BLOCKS]:
        kind = str(block.get("type", ""))
        content = block.get(kind) or {}
        if kind in _BLOCK_MARKS:
            text = _plain(content.get("rich_text"))
            if kind == "paragraph" and len(text) > _PARAGRAPH_CHARS:
                text = f"{text[:_PARAGRAPH_CHARS]}…"
            lines.append(f"{_INDENT}{_BLOCK_MARKS[kind]}{text}")
        elif kind == "table":
            rows = len(content.get("children") or [])
            width = content.get("table_width", "?")
            lines.append(f"{_INDENT}{_word('table', rows=rows, width=width)}")
        elif kind == "divider":
            lines.append(f"{_INDENT}---")
        else:
            lines.append(f"{_INDENT}[{kind}]")
    if len(blocks) > OUTLINE_BLOCKS:
        lines.append(f"{_INDENT}{_word('more_blocks', count=len(blocks) - OUTLINE_BLOCKS)}")
    return lines


# --------------------------------------------------------------------------- printing


def _as_dict(outcome: Outcome | Mapping[str, Any]) -> Mapping[str, Any]:
    return outcome.model_dump(mode="json") if isinstance(outcome, Outcome) else outcome


def preview_lines(outcomes: Iterable[Outcome | Mapping[str, Any]]) -> list[str]:
    """What a dry run would have sent, grouped per destination, as plain lines to print.

    Takes outcomes or their JSON (a run result's ``deliveries`` and ``effects`` rows). Each
    destination gets a heading, then each effect's label and preview lines, its file and its
    fallbacks; a dry-run outcome without a preview is listed under its target. Lines hold
    literal brackets: print them without markup (rich: ``markup=False``).
    """
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for outcome in map(_as_dict, outcomes):
        if outcome.get("status") != "dry_run":
            continue
        shown = outcome.get("preview")
        where = shown["destination"] if shown else str(outcome.get("target", ""))
        groups.setdefault(where, []).append(outcome)
    lines: list[str] = []
    for destination, members in groups.items():
        kinds = sorted({m["preview"]["kind"] for m in members if m.get("preview")})
        lines.append(f"{destination} ({', '.join(kinds) or _word('no_preview')})")
        for outcome in members:
            shown = outcome.get("preview")
            lines.append(f"{_INDENT}{mask_text(str(outcome.get('label') or outcome['key']))}")
            if not shown:
                lines.append(f"{_INDENT * 2}{_word('nothing_to_show', kind=outcome.get('kind'))}")
                continue
            lines.extend(f"{_INDENT * 2}{line}" for line in shown["lines"])
            if shown.get("file"):
                lines.append(f"{_INDENT * 2}{_word('open')}: {shown['file']}")
            if shown.get("fallbacks"):
                fallbacks = " > ".join(shown["fallbacks"])
                lines.append(f"{_INDENT * 2}{_word('if_it_fails')}: {fallbacks}")
    return lines


def result_outcomes(result: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The outcome rows of a run result (`RunReport.as_result`): deliveries, then the other
    effects (pages, issues), for `preview_lines`."""
    return [*result.get("deliveries", []), *result.get("effects", [])]

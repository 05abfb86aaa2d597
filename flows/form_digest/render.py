"""Form-digest rendering: the digest and empty-note Messages, the Notion page, the run summary."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from flows.form_digest import ENTRY
from flows.form_digest.digest import Digest, compact_rows, shorten
from flows.shared.forms import ResponseWindow
from moltbot.errors import InputError
from moltbot.messages import SLACK_SECTION_LIMIT, Message, slack_sections
from moltbot.templating import render_template
from tasks.notion import (
    KEY_PROPERTY,
    bulleted_item,
    date_property,
    divider,
    heading,
    number_property,
    paragraph,
    select_property,
    table,
    title_property,
)

AUTOMATION = "form-digest"
TEMPLATES = Path(__file__).parent / "templates"
# Rows listed one by one under "needs attention" in messages and pages; the rest are named by
# row number ("…and 12 more: rows 40–51"), so none is left out.
ATTENTION_LISTED = 50
# Row numbers a Slack footer names before "… (K more)": a chat line, not a report.
SLACK_ROWS_LISTED = 50
QUESTION_NAME_CHARS = 200
_NOTION_TABLE_ROWS = 99  # Notion takes 100 rows per table in one request: a header and 99.
_TABLE_SEPARATOR = re.compile(r"^\|(\s*:?-+:?\s*\|)+$")
_HEADING = re.compile(r"^(#{1,3}) (.+)$")
_CELL_SPLIT = re.compile(r"(?<!\\)\|")

# The properties a digest page sets: name -> Notion type. The title property may have any name.
REQUIRED_PROPERTIES = {"Date": "date", "Responses": "number", KEY_PROPERTY: "rich_text"}
FORM_PROPERTY = "Form"


def stream_of(spreadsheet_id: str, worksheet: str) -> str:
    """The watermark stream of a response sheet: ``<spreadsheet id>/<worksheet title>``."""
    return f"{spreadsheet_id}/{worksheet}"


def window_key(stream: str, window: ResponseWindow) -> str:
    """The logical idempotency key of a window: stream, first..last sheet row, fingerprint.

    A retried run re-plans the same window (the watermark holds it), so it rebuilds this key;
    the fingerprint (row numbers and timestamp cells) tells apart two windows over the same row
    numbers after rows were deleted and others arrived.
    """
    return f"{AUTOMATION}:{stream}:{window.first_row}-{window.last_row}:{window.fingerprint}"


def notion_key(logical_key: str) -> str:
    """The ledger key of a window's Notion page (also stored in the page's key property)."""
    return f"{logical_key}:notion"


def empty_note_key(stream: str, flow_run_id: str) -> str:
    """The key of an "empty" note: one per flow run.

    Nothing new is not an item that can be consumed, so there is no window to key on. Keyed by
    the flow run, a retry of that run (Prefect retries keep the flow run id) does not repeat
    its note, while every new scheduled run says again that nothing came in, as `empty="note"`
    asks.
    """
    return f"{AUTOMATION}:{stream}:empty:{flow_run_id}"


# --------------------------------------------------------------------------- context


def _local(moment: datetime | None, timezone: str, fallback: datetime) -> datetime:
    return (moment or fallback).astimezone(ZoneInfo(timezone))


def digest_context(
    digest: Digest,
    window: ResponseWindow,
    *,
    form: str,
    timezone: str,
    now: datetime,
) -> dict[str, Any]:
    """What every digest template gets: the window in local time, questions, rows to look at.

    A window whose timestamps are all unreadable is dated by the run (`now`).
    """
    start = _local(window.start, timezone, now)
    end = _local(window.end, timezone, now)
    attention = digest.needs_attention
    rest = attention[ATTENTION_LISTED:]
    context: dict[str, Any] = {
        "form": form,
        "start_date": start.date().isoformat(),
        "end_date": end.date().isoformat(),
        "start_text": f"{start:%Y-%m-%d %H:%M}",
        "end_text": f"{end:%Y-%m-%d %H:%M}",
        "timezone": timezone,
        "first_row": window.first_row,
        "last_row": window.last_row,
        "rows": digest.rows,
        "responses": digest.responses,
        "questions": [
            {"name": shorten(name, QUESTION_NAME_CHARS), **summary}
            for name, summary in digest.questions.items()
        ],
        "needs_attention": attention[:ATTENTION_LISTED],
        "needs_attention_total": len(attention),
        "needs_attention_more": len(rest),
        "needs_attention_more_rows": compact_rows(entry["row"] for entry in rest),
        "needs_attention_rows": compact_rows(
            (entry["row"] for entry in attention), limit=SLACK_ROWS_LISTED
        ),
        "notion_url": None,
        "for_notion": False,
    }
    return context


def digest_title(context: Mapping[str, Any], locale: str) -> str:
    """``"{form} digest {start}..{end}"`` (local dates) in the locale's words."""
    return render_template(TEMPLATES, locale, "title.txt.j2", **context).strip()


def digest_markdown(context: Mapping[str, Any], locale: str, *, for_notion: bool = False) -> str:
    """The whole digest as Markdown (the outbox file, the e-mail's text part, the artifact).

    With `for_notion` the title and the page link are left out: the page shows its own title.
    """
    title = digest_title(context, locale)
    values = {**context, "title": title, "for_notion": for_notion}
    return render_template(TEMPLATES, locale, "digest.md.j2", **values)


# --------------------------------------------------------------------------- messages


def build_digest_message(
    context: Mapping[str, Any], *, key: str, locale: str, notion_url: str | None
) -> Message:
    """The digest for chat, e-mail and the outbox, linking the Notion page when there is one.

    Chat gets the figures per question in one line each and the link, in `slack_blocks`
    (the post's notification text is flattened from them, never `text`); e-mail and the
    outbox file get the whole digest in `text`/`markdown`/`html` (free-text answers too: they
    go to the business's own people, like the Notion page).

    Args:
        context: `digest_context`.
        key: the window's logical key (`window_key`); delivery adds the channel.
        locale: `en` or `ko`.
        notion_url: the digest page, or None without Notion.
    """
    values = {**context, "notion_url": notion_url}
    title = digest_title(values, locale)
    markdown = digest_markdown(values, locale)
    html = render_template(TEMPLATES, locale, "email.html.j2", title=title, **values)
    summary = render_template(TEMPLATES, locale, "slack_summary.mrkdwn.j2", **values).strip()
    lines = render_template(TEMPLATES, locale, "slack_questions.mrkdwn.j2", **values)
    footer = render_template(TEMPLATES, locale, "slack_footer.mrkdwn.j2", **values).strip()
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150], "emoji": True}},
        {"type": "section", "text": {"type": "mrkdwn", "text": summary[:SLACK_SECTION_LIMIT]}},
        *slack_sections([line for line in lines.splitlines() if line.strip()]),
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": footer[:SLACK_SECTION_LIMIT]}],
        },
    ]
    stem = (
        f"{AUTOMATION}-{context['form']}-{context['end_date']}"
        f"-rows-{context['first_row']}-{context['last_row']}"
    )
    return Message(
        key=key,
        rule=ENTRY.rule("digest"),
        automation=AUTOMATION,
        severity="warning" if context["needs_attention_total"] else "info",
        title=title,
        text=markdown,
        markdown=markdown,
        html=html,
        slack_blocks=blocks,
        file_stem=stem,
    )


def build_empty_note(
    *,
    form: str,
    key: str,
    since: datetime | None,
    now: datetime,
    timezone: str,
    locale: str,
) -> Message:
    """The short "no new responses" note of `empty="note"`.

    Args:
        form: the form's name.
        key: `empty_note_key`.
        since: the latest digested response (the watermark's time), if known.
        now: when the sheet was checked.
        timezone: IANA timezone of the times shown.
        locale: `en` or `ko`.
    """
    local_now = now.astimezone(ZoneInfo(timezone))
    context = {
        "form": form,
        "since_text": f"{since.astimezone(ZoneInfo(timezone)):%Y-%m-%d %H:%M}" if since else None,
        "now_text": f"{local_now:%Y-%m-%d %H:%M}",
        "timezone": timezone,
    }
    title = render_template(TEMPLATES, locale, "empty_title.txt.j2", **context).strip()
    text = render_template(TEMPLATES, locale, "empty_note.md.j2", **context).strip()
    return Message(
        key=key,
        rule=ENTRY.rule("nothing-new"),
        automation=AUTOMATION,
        severity="info",
        title=title,
        text=text,
        markdown=f"# {title}\n\n{text}\n",
        slack_blocks=[
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{title}*\n{text}"}}
        ],
        file_stem=f"{AUTOMATION}-{form}-empty-{local_now:%Y-%m-%d-%H%M%S}",
    )


# --------------------------------------------------------------------------- Notion


@dataclass(frozen=True)
class DigestDatabase:
    """Where digest pages go and which of the optional properties it has.

    Attributes:
        database_id: the Notion database.
        data_source_id: its (only) data source, the pages' parent.
        title_property: the name of its title property.
        has_form: True when it has a select property ``Form`` to file pages by form.
    """

    database_id: str
    data_source_id: str
    title_property: str
    has_form: bool


def check_digest_schema(
    database_id: str, data_source_id: str, properties: Mapping[str, Mapping[str, Any]]
) -> DigestDatabase:
    """Check that a data source's schema takes the properties a digest page sets.

    Notion answers 400 validation_error to a page with a property its database lacks; checking
    first turns that into bad input named before anything is created.

    Args:
        database_id: the database, for messages.
        data_source_id: its data source.
        properties: the data source's ``properties`` (name -> {"type": …}).

    Raises:
        InputError: a missing or differently typed property, named with the type it needs.
    """
    types = {name: str(spec.get("type")) for name, spec in properties.items()}
    titles = [name for name, kind in types.items() if kind == "title"]
    wrong = [
        f"{name!r} ({kind})"
        for name, kind in REQUIRED_PROPERTIES.items()
        if types.get(name) != kind
    ]
    if wrong or not titles:
        needed = wrong if titles else ["a title property", *wrong]
        raise InputError(
            f"Notion database {database_id} cannot hold digests: it needs "
            f"{', '.join(needed)} (it has: {', '.join(sorted(types)) or 'no properties'})"
        )
    return DigestDatabase(
        database_id=database_id,
        data_source_id=data_source_id,
        title_property=titles[0],
        has_form=types.get(FORM_PROPERTY) == "select",
    )


def notion_properties(
    database: DigestDatabase, context: Mapping[str, Any], *, title: str
) -> dict[str, Any]:
    """The page's properties: title, Date (the window's local dates), Responses, Form."""
    start, end = context["start_date"], context["end_date"]
    properties: dict[str, Any] = {
        database.title_property: title_property(title),
        "Date": date_property(start, end if end != start else None),
        "Responses": number_property(context["responses"]),
    }
    if database.has_form:
        properties[FORM_PROPERTY] = select_property(context["form"])
    return properties


def _cells(line: str) -> list[str]:
    inner = line.strip()[1:]
    inner = inner[:-1] if inner.endswith("|") and not inner.endswith("\\|") else inner
    return [
        cell.strip().replace("\\|", "|").replace("\\\\", "\\") for cell in _CELL_SPLIT.split(inner)
    ]


def markdown_blocks(markdown: str) -> list[dict[str, Any]]:
    """Notion blocks from the digest's plain Markdown: headings, bullets, tables, paragraphs.

    Only what the digest templates write is understood: ``#``/``##``/``###`` headings,
    ``- `` bullets, ``---`` dividers and pipe tables (a table longer than Notion's 100 rows per
    request is split into several, each with the header); any other line is a paragraph.
    """
    blocks: list[dict[str, Any]] = []
    rows: list[list[str]] = []

    def flush() -> None:
        if not rows:
            return
        header, body = rows[0], rows[1:]
        for start in range(0, max(len(body), 1), _NOTION_TABLE_ROWS):
            blocks.append(table([header, *body[start : start + _NOTION_TABLE_ROWS]]))
        rows.clear()

    for raw in markdown.splitlines():
        line = raw.strip()
        if line.startswith("|"):
            if not _TABLE_SEPARATOR.match(line):
                rows.append(_cells(line))
            continue
        flush()
        if not line:
            continue
        if line == "---":
            blocks.append(divider())
        elif match := _HEADING.match(line):
            blocks.append(heading(match.group(2), len(match.group(1))))
        elif line.startswith("- "):
            blocks.append(bulleted_item(line[2:]))
        else:
            blocks.append(paragraph(line))
    flush()
    return blocks


def notion_page_content(
    database: DigestDatabase, context: Mapping[str, Any], locale: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The digest page's properties and body blocks."""
    title = digest_title(context, locale)
    body = markdown_blocks(digest_markdown(context, locale, for_notion=True))
    return notion_properties(database, context, title=title), body


# --------------------------------------------------------------------------- artifact


def run_summary(locale: str, **context: Any) -> str:
    """The run's summary for the artifact: what was digested, Notion, deliveries, watermark."""
    return render_template(TEMPLATES, locale, "run_summary.md.j2", **context)

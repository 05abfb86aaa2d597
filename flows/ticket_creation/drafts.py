"""Ticket drafts: events and form answers -> Jira fields, dedup keys and privacy masking (pure)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import pandas as pd

from flows.ticket_creation.mapping import Choice, NamedFields, Privacy, Template, TicketMapping
from moltbot.errors import InputError
from moltbot.masking import mask_text
from moltbot.textfiles import read_text_file
from tasks.jira import dedup_label

AUTOMATION = "ticket-creation"
# Jira refuses a summary over 255 characters and a description over 32,767.
SUMMARY_MAX_CHARS = 255
DESCRIPTION_MAX_CHARS = 32_000
# Ledger keys hold at most 512 characters; a longer event id is hashed into the dedup key.
_ID_MAX_CHARS = 200
_EVENT_KEYS = ("id", "type", "occurred_at", "payload")


def short_hash(*parts: object, length: int = 16) -> str:
    """A stable short hex digest of `parts` (joined with a separator no text contains)."""
    joined = "\x1f".join(str(part) for part in parts)
    return hashlib.sha256(joined.encode("utf-8")).hexdigest()[:length]


# --------------------------------------------------------------------------- input items


@dataclass(frozen=True)
class Event:
    """One validated event: ``{"id", "type", "occurred_at", "payload"}``.

    Attributes:
        id: the sender's id of the event (text).
        type: e.g. ``payment.failed``.
        occurred_at: when it happened (UTC).
        payload: the event's data.
        origin: where it was read, for messages (``events.jsonl line 3``).
    """

    id: str
    type: str
    occurred_at: datetime
    payload: dict[str, Any]
    origin: str

    @property
    def label(self) -> str:
        """How results and messages name the event."""
        return mask_text(f"event {self.id} ({self.type})")


def read_events_file(path: str) -> list[tuple[str, Any]]:
    """The JSON documents of a JSON-lines file, each with its origin (``name line 3``).

    Raises:
        InputError: a missing file, one that is not UTF-8, or a line that is not JSON (the
            message names the file, line and column, never the content).
    """
    file = Path(path)
    text = read_text_file(file, what="events_file")
    records: list[tuple[str, Any]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append((f"{file.name} line {number}", json.loads(line)))
        except json.JSONDecodeError as exc:
            problem = f"{exc.msg} at column {exc.colno}"
        else:
            continue
        # Raised outside the except block: JSONDecodeError keeps the whole line in `.doc`,
        # and nothing holding customer data may travel with the error into Prefect's logs.
        raise InputError(f"{file.name} line {number}: not JSON ({problem})")
    return records


def parse_events(records: Iterable[tuple[str, Any]], timezone: str) -> list[Event]:
    """Validate events; a time without an offset is read in `timezone`.

    The same event (type, id and time) given twice is kept once.

    Raises:
        InputError: a record that is not an object, or lacks or mistypes a required key.
    """
    events: list[Event] = []
    seen: set[tuple[str, str, datetime]] = set()
    for origin, record in records:
        if not isinstance(record, dict):
            raise InputError(f"{origin}: an event must be a JSON object")
        missing = [key for key in _EVENT_KEYS if key not in record]
        if missing:
            raise InputError(
                f"{origin}: missing {', '.join(map(repr, missing))} "
                f"(an event has {', '.join(_EVENT_KEYS)})"
            )
        raw_id = record["id"]
        if isinstance(raw_id, bool) or not isinstance(raw_id, str | int) or not str(raw_id):
            raise InputError(f"{origin}: 'id' must be a non-empty text or number")
        kind = record["type"]
        if not isinstance(kind, str) or not kind.strip():
            raise InputError(f"{origin}: 'type' must be a non-empty text")
        if not isinstance(record["payload"], dict):
            raise InputError(f"{origin}: 'payload' must be a JSON object")
        occurred = _event_time(record["occurred_at"], timezone, origin)
        identity = (kind, str(raw_id), occurred)
        if identity in seen:
            continue
        seen.add(identity)
        events.append(Event(str(raw_id), kind.strip(), occurred, record["payload"], origin))
    return events


def _event_time(value: Any, timezone: str, origin: str) -> datetime:
    if not isinstance(value, str):
        raise InputError(f"{origin}: 'occurred_at' must be an ISO 8601 text")
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InputError(
            mask_text(
                f"{origin}: 'occurred_at' {value!r} is not an ISO 8601 time "
                "(e.g. 2026-11-24T15:12:45+09:00)"
            )
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(timezone))
    return moment.astimezone(UTC)


@dataclass(frozen=True)
class SourceItem:
    """One form answer or event, ready to be drafted with a mapping.

    Attributes:
        source: ``form`` or ``event``.
        label: how messages name it (``row 12``, ``event evt-1 (payment.failed)``).
        default_dedup: its dedup key when the mapping has no `dedup` template: the source and
            the source id (``event:<type>:<id>``, ``form:<stream>:<timestamp>:<row hash>``).
        occurrence: a short hash identifying this very occurrence (the event at its time, the
            row): a second occurrence of the same dedup key becomes a comment.
        occurred_at: when it happened (UTC).
        context: the template variables (see `event_context`, `form_context`).
        mapping: the mapping that drafts it.
    """

    source: Literal["form", "event"]
    label: str
    default_dedup: str
    occurrence: str
    occurred_at: datetime
    context: dict[str, Any]
    mapping: TicketMapping


def _named(values: Mapping[str, Any], label: str) -> NamedFields:
    """Nested dicts as `NamedFields`, so a missing key deep in a payload is named too."""
    return NamedFields(
        {
            key: _named(value, f"{label}.{key}") if isinstance(value, dict) else value
            for key, value in values.items()
        },
        label,
    )


def event_item(event: Event, mapping: TicketMapping, timezone: str) -> SourceItem:
    """The item for one event. Templates see `event`, `payload`, `type`, `id`, `occurred_at`."""
    event_id = event.id if len(event.id) <= _ID_MAX_CHARS else "h" + short_hash(event.id)
    local = event.occurred_at.astimezone(ZoneInfo(timezone))
    payload = _named(event.payload, "the event's payload")
    context = {
        "source": "event",
        "event": NamedFields(
            {
                "id": event.id,
                "type": event.type,
                "occurred_at": local,
                "payload": payload,
            },
            "the event",
        ),
        "payload": payload,
        "type": event.type,
        "id": event.id,
        "occurred_at": local,
        "item": event.label,
    }
    return SourceItem(
        source="event",
        label=event.label,
        default_dedup=f"event:{event.type}:{event_id}",
        occurrence=short_hash(event.type, event.id, event.occurred_at.isoformat()),
        occurred_at=event.occurred_at,
        context=context,
        mapping=mapping,
    )


def row_hash(values: Sequence[Any]) -> str:
    """A short hash of one row's cells in column order (the row's content)."""
    return short_hash(*values, length=12)


def form_items(
    rows: pd.DataFrame,
    times: pd.Series,
    *,
    stream: str,
    timestamp_column: str,
    mapping: TicketMapping,
    timezone: str,
    now: datetime,
) -> list[SourceItem]:
    """One item per form answer. Templates see `answers` (column -> cell), `row`, `occurred_at`.

    The dedup key is the stream, the row's timestamp cell and a hash of all its cells. A row
    whose timestamp cannot be read gets `now` as its time (for the due date only).

    Args:
        rows: the window's rows (index: sheet row numbers), every value a string.
        times: their parsed UTC timestamps (NaT when unreadable).
        stream: ``<spreadsheet id>/<worksheet>``.
        timestamp_column: the column of the Forms timestamp.
        mapping: the form mapping.
        timezone: the IANA timezone templates see times in.
        now: the run's moment (UTC).
    """
    zone = ZoneInfo(timezone)
    stream_id = short_hash(stream, length=10)
    columns = [str(name) for name in rows.columns]
    items = []
    for (sheet_row, *cells), moment in zip(
        rows.itertuples(index=True, name=None), times, strict=True
    ):
        occurred = now if pd.isna(moment) else moment.to_pydatetime()
        answers = NamedFields(dict(zip(columns, cells, strict=True)), "the sheet")
        cell = str(answers[timestamp_column])
        content = row_hash(cells)
        label = f"row {int(sheet_row)}"
        local = occurred.astimezone(zone)
        items.append(
            SourceItem(
                source="form",
                label=label,
                default_dedup=f"form:{stream_id}:{cell}:{content}",
                occurrence=short_hash(stream, cell, content),
                occurred_at=occurred,
                context={
                    "source": "form",
                    "answers": answers,
                    "row": int(sheet_row),
                    "occurred_at": local,
                    "item": label,
                },
                mapping=mapping,
            )
        )
    return items


# --------------------------------------------------------------------------- drafts


@dataclass(frozen=True)
class TicketDraft:
    """One intended Jira issue (or, for a known dedup key, a comment on it).

    Attributes:
        id: ``d1``, ``d2`` … in input order: what the reviewer names.
        item: the input item's label.
        mapping: the mapping's name.
        dedup_key: source + source id (or the mapping's `dedup` value, hashed).
        ledger_key: the issue's idempotency key ``ticket-creation:<dedup key>:jira:<project>``.
        label: the Jira label marking the issue, ``moltbot-<hash of ledger_key>``.
        occurrence: a short hash of this occurrence of the dedup key.
        occurred_at: when the item happened (UTC).
        fields: the Jira ``fields`` to create it with (names and ids as plain strings).
    """

    id: str
    item: str
    mapping: str
    dedup_key: str
    ledger_key: str
    label: str
    occurrence: str
    occurred_at: datetime
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def occurrence_key(self) -> str:
        """The ledger key of this occurrence: created the issue, or commented on it."""
        return f"{self.ledger_key}:seen:{self.occurrence}"

    @property
    def target(self) -> str:
        """The ledger target: ``jira:<project>``."""
        return f"jira:{self.fields['project']}"

    @property
    def summary(self) -> str:
        """The issue's summary."""
        return str(self.fields["summary"])

    def as_dict(self) -> dict[str, Any]:
        """The draft as plain JSON types."""
        return {
            "id": self.id,
            "item": self.item,
            "mapping": self.mapping,
            "dedup_key": self.dedup_key,
            "label": self.label,
            "occurred_at": self.occurred_at.isoformat(),
            "fields": self.fields,
        }


def issue_ledger_key(dedup_key: str, project: str) -> str:
    """The idempotency key of the issue for `dedup_key` in `project`."""
    return f"{AUTOMATION}:{dedup_key}:jira:{project}"


def build_drafts(
    items: Sequence[SourceItem],
    *,
    timezone: str,
    footer: Callable[[SourceItem, str], str],
) -> list[TicketDraft]:
    """Render every item with its mapping into a draft; any template error stops them all.

    Args:
        items: the input items, in input order.
        timezone: the IANA timezone of due dates.
        footer: the text appended to each description, given the item and its dedup key.

    Raises:
        InputError: a template or choice failed for some item (mapping, line and item named).
    """
    drafts = []
    for number, item in enumerate(items, start=1):
        drafts.append(_draft(f"d{number}", item, timezone, footer))
    return drafts


def _draft(
    draft_id: str, item: SourceItem, timezone: str, footer: Callable[[SourceItem, str], str]
) -> TicketDraft:
    mapping = item.mapping
    context = dict(item.context)

    def value(spec: Template | Choice, name: str) -> Any:
        if isinstance(spec, Choice):
            return mapping.choose(spec, context, item.label, name)
        return mapping.render(spec, context, item.label).strip()

    issue_type = str(value(mapping.issue_type, "issue_type")).strip()
    context["issue_type"] = issue_type
    priority = str(value(mapping.priority, "priority")).strip() if mapping.priority else ""
    context["priority"] = priority
    dedup_key = item.default_dedup
    if mapping.dedup is not None:
        grouped = mapping.render(mapping.dedup, context, item.label).strip()
        if grouped:
            # Hashed: the value may come from answers, and keys go to the ledger and logs.
            dedup_key = f"{item.source}:{mapping.name}:{short_hash(grouped)}"
    ledger_key = issue_ledger_key(dedup_key, mapping.project)
    label = dedup_label(ledger_key)

    rendered_summary = mapping.render(mapping.summary, context, item.label)
    summary = clean_summary(rendered_summary, mapping.privacy) or f"{mapping.name}: {item.label}"
    description = ""
    if mapping.description is not None:
        rendered = mapping.render(mapping.description, context, item.label).strip()
        description = apply_privacy(rendered, mapping.privacy)
    closing = footer(item, dedup_key).strip()
    description = "\n\n".join(part for part in (description, closing) if part)

    fields: dict[str, Any] = {
        "project": mapping.project,
        "issuetype": issue_type,
        "summary": summary,
        "description": _cut(description, DESCRIPTION_MAX_CHARS),
        "labels": [*_labels(mapping, context, item.label), label],
    }
    if priority:
        fields["priority"] = priority
    components = _components(mapping, context, item.label)
    if components:
        fields["components"] = components
    if mapping.assignee is not None:
        assignee = str(value(mapping.assignee, "assignee")).strip()
        if assignee:
            fields["assignee"] = assignee
    due = _due_date(mapping, context, item, timezone)
    if due is not None:
        fields["duedate"] = due.isoformat()
    return TicketDraft(
        id=draft_id,
        item=item.label,
        mapping=mapping.name,
        dedup_key=dedup_key,
        ledger_key=ledger_key,
        label=label,
        occurrence=item.occurrence,
        occurred_at=item.occurred_at,
        fields=fields,
    )


def _labels(mapping: TicketMapping, context: dict[str, Any], item: str) -> list[str]:
    # Jira refuses a label with spaces: "일반 문의" from an answer becomes "일반-문의".
    labels = []
    for template in mapping.labels:
        text = re.sub(r"\s+", "-", mapping.render(template, context, item).strip())
        if text and text not in labels:
            labels.append(text)
    return labels


def _components(mapping: TicketMapping, context: dict[str, Any], item: str) -> list[str]:
    if isinstance(mapping.components, Choice):
        chosen = mapping.choose(mapping.components, context, item, "components")
        names = [chosen] if isinstance(chosen, str) else list(chosen)
    else:
        names = [mapping.render(template, context, item) for template in mapping.components]
    return list(dict.fromkeys(name.strip() for name in names if name.strip()))


def _due_date(
    mapping: TicketMapping, context: dict[str, Any], item: SourceItem, timezone: str
) -> date | None:
    if mapping.sla_hours is None:
        return None
    hours = mapping.sla_hours
    if isinstance(hours, Choice):
        hours = mapping.choose(hours, context, item.label, "sla_hours")
    due = item.occurred_at + timedelta(hours=float(hours))
    return due.astimezone(ZoneInfo(timezone)).date()


def clean_summary(text: str, privacy: Privacy) -> str:
    """A summary Jira accepts: masked as the mapping says, on one line, at most 255 characters."""
    # Jira refuses a summary with a line break.
    one_line = " ".join(apply_privacy(text, privacy).split())
    return _cut(one_line, SUMMARY_MAX_CHARS)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --------------------------------------------------------------------------- privacy


def apply_privacy(text: str, privacy: Privacy) -> str:
    """Mask ticket text: e-mail addresses and phone numbers as the mapping says, the rest always.

    ``keep-domain`` turns ``kim@example.com`` into ``***@example.com``, ``mask`` into ``***``;
    phone numbers (``010-1234-5678``, ``+82 10 1234 5678``, ``01012345678``) become ``***``.
    Resident registration, card and bank account numbers, tokens and secrets are masked
    whatever the mapping says: Jira is no place for them. Dates, amounts and order ids are left
    alone (the patterns of `moltbot.masking`).
    """
    return mask_text(text, emails=privacy.email, phones=privacy.phone == "mask")

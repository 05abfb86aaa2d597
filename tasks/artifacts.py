"""Tasks that publish run outcomes as Prefect artifacts, and the formatting that reads well."""

from __future__ import annotations

import base64
import math
import numbers
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from moltbot.formatting import format_money, format_number, format_pct
from moltbot.masking import mask_text

ColumnKind = Literal["text", "money", "number", "pct", "date", "datetime", "flag"]
"""How a table cell is shown: as is, an amount in the currency, a number with thousands
separators, a signed percentage, an ISO date, a local date and time, yes/no."""

_FLAGS = {"en": ("yes", "no"), "ko": ("예", "아니요")}


@dataclass(frozen=True)
class TableColumn:
    """One column of a table artifact: the row field it shows, its headings, how it is shown.

    Attributes:
        field: the key of the value in each row.
        en: the heading in English.
        ko: the heading in Korean.
        kind: how values are formatted (see `ColumnKind`).
        values: words for coded values (`out` -> ("out of stock", "품절")); others show as is.
        decimals: most decimals of a `number` that is not whole (trailing zeros dropped).
    """

    field: str
    en: str
    ko: str
    kind: ColumnKind = "text"
    values: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    decimals: int = 2

    def heading(self, locale: str) -> str:
        """The column's heading in `locale` (English for a locale without one)."""
        return self.ko if locale == "ko" else self.en


def readable_rows(
    rows: Iterable[Mapping[str, Any]],
    columns: Sequence[TableColumn],
    *,
    locale: str,
    currency: str,
    timezone: str | None = None,
) -> list[dict[str, str]]:
    """Rows as an analyst reads them: headed in `locale`, every value formatted as text.

    `1424000` in a money column becomes `₩1,424,000` (`1,424,000원` under `ko`), `on_hand` becomes
    `On hand` (`재고`). Only `columns` are shown, in their order; a missing or None value is an
    empty cell.

    Args:
        rows: the table's rows as plain values (numbers, dates, strings, booleans).
        columns: what to show.
        locale: `en` or `ko`.
        currency: ISO 4217 code of the money columns.
        timezone: IANA timezone of `datetime` columns (default: as given).
    """
    headings = [column.heading(locale) for column in columns]
    return [
        {
            heading: format_cell(row.get(column.field), column, locale, currency, timezone)
            for heading, column in zip(headings, columns, strict=True)
        }
        for row in rows
    ]


def format_cell(
    value: Any, column: TableColumn, locale: str, currency: str, timezone: str | None = None
) -> str:
    """One value of `column` as text (see `readable_rows`)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if column.values and str(value) in column.values:
        english, korean = column.values[str(value)]
        return korean if locale == "ko" else english
    kind = column.kind
    if kind == "money" and _is_number(value):
        return format_money(value, currency, locale)
    if kind == "number" and _is_number(value):
        if float(value).is_integer():
            return format_number(value, locale)
        # 2.5 units, not 2.50: a column mixes whole and fractional values.
        return format_number(value, locale, column.decimals).rstrip("0").rstrip(".")
    if kind == "pct" and _is_number(value):
        return format_pct(value, locale)
    if kind == "flag" and isinstance(value, bool):
        yes, no = _FLAGS.get(locale, _FLAGS["en"])
        return yes if value else no
    if kind == "datetime" and isinstance(value, datetime):
        if timezone is not None and value.tzinfo is not None:
            value = value.astimezone(ZoneInfo(timezone))
        return value.strftime("%Y-%m-%d %H:%M")
    if kind in ("date", "datetime") and isinstance(value, date):
        return value.isoformat()
    return str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def data_uri(content: bytes, content_type: str) -> str:
    """`content` as a `data:` URI, so an image shows inside an artifact without any file."""
    return f"data:{content_type};base64,{base64.b64encode(content).decode('ascii')}"


# An image embedded as a data URI holds no text to mask, and masking could only corrupt it.
_DATA_URI = re.compile(r"data:[\w.+\-]+/[\w.+\-]+;base64,[A-Za-z0-9+/=]+")


def masked_markdown(markdown: str) -> str:
    """`markdown` with secrets and personal data masked; embedded images are left whole."""
    pieces: list[str] = []
    start = 0
    for image in _DATA_URI.finditer(markdown):
        pieces += [mask_text(markdown[start : image.start()]), image[0]]
        start = image.end()
    pieces.append(mask_text(markdown[start:]))
    return "".join(pieces)


@dataclass(frozen=True)
class MarkdownArtifact:
    """A markdown artifact to publish (see `publish_markdown`)."""

    key: str | None
    markdown: str
    description: str | None = None


@dataclass(frozen=True)
class TableArtifact:
    """A table artifact to publish (see `publish_table`)."""

    key: str | None
    rows: list[dict[str, Any]]
    description: str | None = None


@task(name="publish-markdown", cache_policy=NO_CACHE)
def publish_markdown(key: str | None, markdown: str, description: str | None = None) -> str:
    """Publish a markdown artifact; return its id.

    Secrets and personal data are masked in the content and the caption (`mask_text`): the
    run page is no place a route sends them.

    Args:
        key: lowercase letters, digits and dashes; keyed artifacts are versioned in the UI's
            Artifacts page. None shows it on the run page only (e.g. for a dry run).
        markdown: the content.
        description: a one-line caption.
    """
    return _publish(MarkdownArtifact(key, markdown, description))


@task(name="publish-table", cache_policy=NO_CACHE)
def publish_table(
    key: str | None, rows: list[dict[str, Any]], description: str | None = None
) -> str:
    """Publish a table artifact of `rows` (see `publish_markdown` for `key`); return its id.

    Give it `readable_rows`, not raw records: the UI shows cells exactly as given. Text cells
    and the caption are masked, as in `publish_markdown`.
    """
    return _publish(TableArtifact(key, rows, description))


@task(name="publish-artifacts", cache_policy=NO_CACHE)
def publish_artifacts(artifacts: list[MarkdownArtifact | TableArtifact]) -> list[str]:
    """Publish a run's artifacts in one task run (masked as in `publish_markdown` and
    `publish_table`); return their ids, in order.

    A run's artifacts are one step for whoever reads the run page: one task run each would
    only add Prefect's per-task round trips and events to the run.
    """
    return [_publish(artifact) for artifact in artifacts]


def _publish(artifact: MarkdownArtifact | TableArtifact) -> str:
    caption = mask_text(artifact.description) if artifact.description else artifact.description
    if isinstance(artifact, MarkdownArtifact):
        created = create_markdown_artifact(
            markdown=masked_markdown(artifact.markdown), key=artifact.key, description=caption
        )
    else:
        masked = [
            {
                name: mask_text(value) if isinstance(value, str) else value
                for name, value in row.items()
            }
            for row in artifact.rows
        ]
        created = create_table_artifact(table=masked, key=artifact.key, description=caption)
    return str(created)

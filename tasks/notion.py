"""Notion tasks: read a data source into a DataFrame, create pages with many blocks, append."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import Enum
from typing import Any, TypeVar

import httpx
import notion_client
import pandas as pd
from notion_client.errors import (
    HTTPResponseError,
    InvalidPathParameterError,
    RequestTimeoutError,
)
from prefect import task
from prefect.cache_policies import NO_CACHE

from blocks.notion import NotionCredentials
from moltbot.errors import InputError, ServiceError
from moltbot.masking import mask_text
from moltbot.retrying import RetryPolicy, call_with_retries, retry_after_seconds, retry_sleep

T = TypeVar("T")

# Notion's request limits: blocks per request, page size, text per rich-text item, items per array.
BLOCKS_PER_REQUEST = 100
PAGE_SIZE = 100
TEXT_LIMIT = 2000
RICH_TEXT_ITEMS = 100

KEY_PROPERTY = "moltbot key"
META_COLUMNS = ("page_id", "page_url", "created_time")


class NotionFailure(ServiceError):
    """A failed Notion call; `maybe_applied` says whether it may have taken effect: True after
    a 5xx, a timeout or a lost answer, False when Notion refused it (4xx, 429 included) or it
    never left this machine (connection refused)."""


def classify_notion_error(
    exc: Exception, label: str, *, base_url: str, timeout_seconds: float
) -> NotionFailure | None:
    """Turn a notion-client or httpx exception into a `NotionFailure`; None for anything else.

    Args:
        exc: what the client raised.
        label: how messages name the block (``Notion block 'sandbox-notion'``).
        base_url: the API root, named when it cannot be reached.
        timeout_seconds: the client's timeout, named when it ran out.
    """
    if isinstance(exc, HTTPResponseError):
        code = exc.code.value if isinstance(exc.code, Enum) else exc.code
        status = exc.status
        return NotionFailure.for_status(
            f"{label}: {status} {code}: {mask_text(str(exc))}",
            status,
            retry_after=retry_after_seconds(exc.headers.get("retry-after")),
        )
    if isinstance(exc, RequestTimeoutError):
        return NotionFailure(
            f"{label}: no answer from {base_url} within {timeout_seconds:g}s",
            transient=True,
            maybe_applied=True,
        )
    if isinstance(exc, httpx.ConnectError):
        # Refused or unresolvable: the request never reached Notion.
        return NotionFailure(
            f"{label}: cannot connect to {base_url} ({type(exc).__name__})", transient=True
        )
    if isinstance(exc, httpx.TransportError):
        return NotionFailure(
            f"{label}: the connection to {base_url} broke ({type(exc).__name__})",
            transient=True,
            maybe_applied=True,
        )
    if isinstance(exc, InvalidPathParameterError):
        return NotionFailure(f"{label}: {exc}", transient=False)
    return None


@dataclass
class NotionApi:
    """A Notion client plus what every call needs: the block's name and one retry policy.

    These methods are the plain (Prefect-free) logic behind the tasks below; use them from
    scripts and tests with ``NotionApi.from_block(credentials)``.

    Retries: the client's own retries are off (see `NotionCredentials.get_client`); every call
    here goes through `call_with_retries` with the settings' policy, which retries 429 (after
    ``Retry-After``), 5xx, timeouts and connection errors with backoff and jitter, and fails
    at once on other 4xx. Creates and appends are only re-sent once they are known not to have
    happened (see `create_page` and `append_blocks`).

    Attributes:
        client: the notion-client `Client`.
        label: how messages name the block, e.g. ``Notion block 'sandbox-notion'``.
        base_url: the API root, for connection messages.
        timeout_seconds: the client's timeout, for timeout messages.
        policy: backoff settings; `RetryPolicy.from_settings()` when None.
        sleep: the wait between attempts (default `retry_sleep`: tests record it).
    """

    client: notion_client.Client
    label: str
    base_url: str
    timeout_seconds: float
    policy: RetryPolicy | None = None
    sleep: Callable[[float], None] = retry_sleep

    @classmethod
    def from_block(
        cls,
        credentials: NotionCredentials,
        block_name: str | None = None,
        *,
        policy: RetryPolicy | None = None,
    ) -> NotionApi:
        """Build from a credentials block; `block_name` names it when it was never saved."""
        return cls(
            client=credentials.get_client(),
            label=f"Notion block '{credentials.display_name(block_name)}'",
            base_url=credentials.base_url,
            timeout_seconds=credentials.timeout_seconds,
            policy=policy,
        )

    def close(self) -> None:
        """Close the client's connection pool."""
        self.client.close()

    def __enter__(self) -> NotionApi:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- calls --------------------------------------------------------------------------------

    def call(
        self,
        describe: str,
        operation: Callable[[], T],
        *,
        repeatable: bool = True,
        before_retry: Callable[[ServiceError], None] | None = None,
    ) -> T:
        """Run one client call with the retry policy.

        Args:
            describe: what it does, for the retry log line.
            operation: the client call.
            repeatable: False for a create that must not be re-sent when it may have happened
                (then only refusals, 429 and connection refused, are retried).
            before_retry: called with the failure before each retry (see `call_with_retries`).

        Raises:
            NotionFailure: permanent failures at once, transient ones when attempts run out.
        """

        def classify(exc: Exception) -> ServiceError | None:
            failure = classify_notion_error(
                exc, self.label, base_url=self.base_url, timeout_seconds=self.timeout_seconds
            )
            if (
                failure is not None
                and failure.transient
                and failure.maybe_applied
                and not repeatable
            ):
                return NotionFailure(
                    f"{failure} (not re-sent: it may have taken effect; pass an "
                    "idempotency key to make it safe to retry)",
                    transient=False,
                    status=failure.status,
                    maybe_applied=True,
                )
            return failure

        return call_with_retries(
            operation,
            classify=classify,
            describe=f"Notion: {describe}",
            policy=self.policy,
            sleep=self.sleep,
            before_retry=before_retry,
        )

    def _collect(self, describe: str, fetch: Callable[[str | None], dict[str, Any]]) -> list[Any]:
        results: list[Any] = []
        cursor: str | None = None
        while True:
            response = self.call(describe, functools.partial(fetch, cursor))
            results.extend(response.get("results", []))
            cursor = response.get("next_cursor")
            if not response.get("has_more") or not cursor:
                return results

    # -- reading ------------------------------------------------------------------------------

    def query_pages(
        self,
        data_source_id: str,
        *,
        filter: Mapping[str, Any] | None = None,
        sorts: Sequence[Mapping[str, Any]] | None = None,
    ) -> list[dict[str, Any]]:
        """Every page of a data source query, following ``next_cursor`` (100 per request)."""
        body: dict[str, Any] = {"page_size": PAGE_SIZE}
        if filter is not None:
            body["filter"] = filter
        if sorts is not None:
            body["sorts"] = list(sorts)

        def fetch(cursor: str | None) -> dict[str, Any]:
            return self.client.data_sources.query(data_source_id, start_cursor=cursor, **body)

        return self._collect(f"query data source {data_source_id}", fetch)

    def query_frame(
        self,
        data_source_id: str,
        *,
        filter: Mapping[str, Any] | None = None,
        sorts: Sequence[Mapping[str, Any]] | None = None,
    ) -> pd.DataFrame:
        """`query_pages` as a DataFrame (see `pages_to_frame`); empty results keep the columns.

        An empty result costs one more request, to read the data source's property names.
        """
        pages = self.query_pages(data_source_id, filter=filter, sorts=sorts)
        if pages:
            return pages_to_frame(pages)
        source = self.call(
            f"read data source {data_source_id}",
            lambda: self.client.data_sources.retrieve(data_source_id),
        )
        return pages_to_frame([], properties=list(source.get("properties", {})))

    def data_source_of(self, database_id: str) -> str:
        """The id of a database's only data source.

        Raises:
            InputError: the database has no data source, or several (name one of them then).
        """
        database = self.call(
            f"read database {database_id}", lambda: self.client.databases.retrieve(database_id)
        )
        sources = database.get("data_sources") or []
        if len(sources) == 1:
            return str(sources[0]["id"])
        if not sources:
            raise InputError(f"{self.label}: database {database_id} has no data source")
        listed = ", ".join(f"{s.get('name')!r} ({s['id']})" for s in sources)
        raise InputError(
            f"{self.label}: database {database_id} has {len(sources)} data sources ({listed}); "
            "pass the data source id"
        )

    def find_page_by_key(
        self, data_source_id: str, key: str, key_property: str = KEY_PROPERTY
    ) -> dict[str, Any] | None:
        """The page whose `key_property` equals `key`, or None (one query request)."""
        response = self.call(
            f"look up key in data source {data_source_id}",
            lambda: self.client.data_sources.query(
                data_source_id,
                filter={"property": key_property, "rich_text": {"equals": key}},
                page_size=1,
            ),
        )
        results = response.get("results") or []
        return results[0] if results else None

    def list_children(self, block_id: str) -> list[dict[str, Any]]:
        """Every child block of a page or block, in order (100 per request)."""

        def fetch(cursor: str | None) -> dict[str, Any]:
            return self.client.blocks.children.list(
                block_id=block_id, start_cursor=cursor, page_size=PAGE_SIZE
            )

        return self._collect(f"list children of {block_id}", fetch)

    # -- writing ------------------------------------------------------------------------------

    def create_page(
        self,
        *,
        data_source_id: str | None = None,
        page_id: str | None = None,
        properties: Mapping[str, Any],
        children: Iterable[Mapping[str, Any]] = (),
        idempotency_key: str | None = None,
        key_property: str = KEY_PROPERTY,
    ) -> dict[str, Any]:
        """Create a page with any number of blocks, never twice.

        The first 100 blocks go with the create request and the rest are appended 100 at a
        time, so 101 blocks take 2 requests and 250 take 3. A 429 is retried as it is (Notion
        refused it). After a 5xx, a timeout or a lost answer the create may have happened:
        with an `idempotency_key` (stored in `key_property`) the data source is searched for
        it and an existing page is adopted, its blocks completed from where they stop; without
        a key the failure is reported instead of risking a second page.

        Args:
            data_source_id: the data source the page goes into (or `page_id`).
            page_id: the parent page for a page outside any data source.
            properties: property values in Notion's form (see the ``*_property`` helpers).
            children: blocks in Notion's form (see `paragraph`, `heading`, `table` …).
            idempotency_key: a key unique to this logical page, stored in `key_property`.
            key_property: the rich_text property holding the key.

        Returns:
            The page object (the adopted one after an ambiguous failure).

        Raises:
            InputError: not exactly one parent, or a key without a data source parent.
            NotionFailure: Notion refused it, or it may have happened and cannot be checked.
        """
        if (data_source_id is None) == (page_id is None):
            raise InputError("create_page needs exactly one of data_source_id and page_id")
        properties = dict(properties)
        if idempotency_key is not None:
            if data_source_id is None:
                raise InputError(
                    "an idempotency key is kept in a data source property: "
                    "create the page with data_source_id"
                )
            properties[key_property] = text_property(idempotency_key)
        parent = (
            {"type": "data_source_id", "data_source_id": data_source_id}
            if data_source_id is not None
            else {"type": "page_id", "page_id": page_id}
        )
        blocks = list(children)
        first = blocks[:BLOCKS_PER_REQUEST]
        adopted: dict[str, Any] | None = None

        def create() -> dict[str, Any]:
            if adopted is not None:
                return adopted
            return self.client.pages.create(parent=parent, properties=properties, children=first)

        def adopt_if_created(failure: ServiceError) -> None:
            nonlocal adopted
            if getattr(failure, "maybe_applied", False) and data_source_id and idempotency_key:
                adopted = self.find_page_by_key(data_source_id, idempotency_key, key_property)

        page = self.call(
            "create a page",
            create,
            repeatable=idempotency_key is not None,
            before_retry=adopt_if_created,
        )
        # An adopted page may hold our first chunk or an earlier run's blocks: resume after them.
        done = len(first) if adopted is None else len(self.list_children(page["id"]))
        self.append_blocks(page["id"], blocks[done:], known_count=done)
        return page

    def append_blocks(
        self,
        block_id: str,
        children: Iterable[Mapping[str, Any]],
        *,
        known_count: int | None = None,
    ) -> list[dict[str, Any]]:
        """Append blocks to a page or block, 100 per request, never twice.

        After a 5xx, a timeout or a lost answer, the children are listed before the chunk is
        re-sent: it counts as done when the blocks after the previous chunk (or after
        `known_count` blocks, or, for the first chunk, at the end of the page with the same
        types and text) are there.

        Args:
            block_id: the page or block to append to.
            children: blocks in Notion's form.
            known_count: how many children `block_id` has now, when the caller knows.

        Returns:
            The appended blocks, as Notion answered them (top level only).
        """
        blocks = list(children)
        created: list[dict[str, Any]] = []
        count = known_count
        anchor: str | None = None
        for start in range(0, len(blocks), BLOCKS_PER_REQUEST):
            chunk = blocks[start : start + BLOCKS_PER_REQUEST]
            describe = f"append blocks {start + 1}-{start + len(chunk)} of {len(blocks)}"
            results = self._append_chunk(block_id, chunk, describe, count, anchor)
            created.extend(results)
            anchor = results[-1]["id"] if results else anchor
            count = None if count is None else count + len(chunk)
        return created

    def _append_chunk(
        self,
        block_id: str,
        chunk: list[Mapping[str, Any]],
        describe: str,
        count: int | None,
        anchor: str | None,
    ) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] | None = None

        def append() -> dict[str, Any]:
            if found is not None:
                return {"results": found}
            return self.client.blocks.children.append(block_id=block_id, children=chunk)

        def check_applied(failure: ServiceError) -> None:
            nonlocal found
            if getattr(failure, "maybe_applied", False):
                found = self._applied_chunk(block_id, chunk, count, anchor)

        response = self.call(describe, append, before_retry=check_applied)
        return list(response.get("results", []))

    def _applied_chunk(
        self,
        block_id: str,
        chunk: list[Mapping[str, Any]],
        count: int | None,
        anchor: str | None,
    ) -> list[dict[str, Any]] | None:
        """The blocks of `chunk` if a failed append stored them after all, else None."""
        existing = self.list_children(block_id)
        if anchor is None and count is None:
            tail = existing[-len(chunk) :]
            same = [block_fingerprint(b) for b in tail] == [block_fingerprint(b) for b in chunk]
            return tail if len(tail) == len(chunk) and same else None
        ids = [block["id"] for block in existing]
        if anchor is not None and anchor not in ids:
            raise NotionFailure(
                f"{self.label}: blocks of {block_id} changed during the append; not re-sent",
                transient=False,
            )
        start = ids.index(anchor) + 1 if anchor is not None else count or 0
        after = existing[start:]
        if not after:
            return None
        if len(after) == len(chunk):
            return after
        raise NotionFailure(
            f"{self.label}: {block_id} has {len(after)} blocks where {len(chunk)} were being "
            "appended; not re-sent",
            transient=False,
        )

    def update_page(
        self,
        page_id: str,
        *,
        properties: Mapping[str, Any] | None = None,
        in_trash: bool | None = None,
    ) -> dict[str, Any]:
        """Set some properties of a page (or move it to or from the trash); safe to repeat."""
        body: dict[str, Any] = {}
        if properties is not None:
            body["properties"] = dict(properties)
        if in_trash is not None:
            body["in_trash"] = in_trash
        return self.call(
            f"update page {page_id}", lambda: self.client.pages.update(page_id, **body)
        )


# ---------------------------------------------------------------------------------------------
# Pages to rows


def page_link(credentials: NotionCredentials, block_name: str | None, page_id: str) -> str:
    """The page's address as Notion itself answers it (its `url` field).

    Asking instead of building `notion.so/<id>` makes a page of another Notion-compatible API
    (the sandbox) link to where it really is. If the read fails, the public address is built:
    the page exists, and a link is not worth failing the run for.
    """
    try:
        with NotionApi.from_block(credentials, block_name) as api:
            page = api.call("read the page's address", lambda: api.client.pages.retrieve(page_id))
        return str(page["url"])
    except (ServiceError, KeyError, TypeError):
        return f"https://www.notion.so/{page_id.replace('-', '')}"


def property_value(prop: Mapping[str, Any]) -> Any:
    """A property value in Notion's typed form reduced to a plain Python value.

    title/rich_text give a str, number an int or float, select/status the option name,
    multi_select a list of names, date the start (`date`, or an aware `datetime`), checkbox a
    bool, created/last-edited times a `datetime`, people and relations lists of names or ids.
    """
    kind = prop.get("type")
    value = prop.get(kind) if isinstance(kind, str) else None
    if kind in ("title", "rich_text"):
        return "".join(item.get("plain_text", "") for item in value or [])
    if kind in ("select", "status"):
        return value.get("name") if value else None
    if kind == "multi_select":
        return [option.get("name") for option in value or []]
    if kind == "date":
        return _parse_when(value.get("start")) if value else None
    if kind == "checkbox":
        return bool(value)
    if kind in ("created_time", "last_edited_time"):
        return _parse_when(value)
    if kind in ("people", "created_by", "last_edited_by"):
        people = value if isinstance(value, list) else [value]
        names = [p.get("name") or p.get("id") for p in people if p]
        return names if kind == "people" else (names[0] if names else None)
    if kind == "relation":
        return [item.get("id") for item in value or []]
    if kind == "files":
        return [item.get("name") for item in value or []]
    if kind in ("formula", "rollup") and isinstance(value, Mapping):
        inner_kind = value.get("type")
        inner = value.get(inner_kind) if isinstance(inner_kind, str) else None
        if inner_kind == "date":
            return _parse_when(inner.get("start")) if inner else None
        if inner_kind == "array":
            return [property_value(item) for item in inner or []]
        return inner
    if kind == "unique_id" and isinstance(value, Mapping):
        prefix = value.get("prefix")
        return f"{prefix}-{value.get('number')}" if prefix else value.get("number")
    return value


def _parse_when(value: Any) -> date | datetime | None:
    if not isinstance(value, str):
        return None
    if len(value) == 10:
        return date.fromisoformat(value)
    return datetime.fromisoformat(value)


def pages_to_frame(
    pages: Sequence[Mapping[str, Any]], *, properties: Sequence[str] | None = None
) -> pd.DataFrame:
    """One row per page: ``page_id``, ``page_url``, ``created_time``, then every property.

    Args:
        pages: page objects as Notion returns them.
        properties: the property columns, for an empty result (else the first page's order).
    """
    names = list(properties) if properties is not None else []
    for page in pages:
        for name in page.get("properties", {}):
            if name not in names:
                names.append(name)
    columns = [*META_COLUMNS, *(_column(name) for name in names)]
    rows = []
    for page in pages:
        values = page.get("properties", {})
        row = [page.get("id"), page.get("url"), _parse_when(page.get("created_time"))]
        row.extend(property_value(values[name]) if name in values else None for name in names)
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)


def _column(name: str) -> str:
    # A property called "page_id" must not overwrite the page's id.
    return f"{name} (property)" if name in META_COLUMNS else name


# ---------------------------------------------------------------------------------------------
# Building blocks and property values


def split_text(text: str, limit: int = TEXT_LIMIT) -> list[str]:
    """Cut `text` into pieces of at most `limit` UTF-16 units, Notion's measure of length."""
    pieces: list[str] = []
    current: list[str] = []
    units = 0
    for char in text:
        width = 2 if ord(char) > 0xFFFF else 1
        if units + width > limit:
            pieces.append("".join(current))
            current, units = [], 0
        current.append(char)
        units += width
    if current:
        pieces.append("".join(current))
    return pieces


def rich_text(
    text: str,
    *,
    bold: bool = False,
    italic: bool = False,
    code: bool = False,
    link: str | None = None,
) -> list[dict[str, Any]]:
    """A rich-text array for `text`, cut into items of at most 2,000 characters.

    Raises:
        InputError: the text needs more than 100 items (over 200,000 characters).
    """
    pieces = split_text(text)
    if len(pieces) > RICH_TEXT_ITEMS:
        raise InputError(
            f"text of {len(text)} characters is longer than one Notion block can hold; "
            "split it into several blocks"
        )
    annotations = {
        name: True for name, on in (("bold", bold), ("italic", italic), ("code", code)) if on
    }
    items = []
    for piece in pieces:
        item: dict[str, Any] = {
            "type": "text",
            "text": {"content": piece, "link": {"url": link} if link else None},
        }
        if annotations:
            item["annotations"] = annotations
        items.append(item)
    return items


def _text_block(kind: str, text: str) -> dict[str, Any]:
    return {"object": "block", "type": kind, kind: {"rich_text": rich_text(text)}}


def heading(text: str, level: int = 1) -> dict[str, Any]:
    """A heading block of level 1, 2 or 3."""
    if level not in (1, 2, 3):
        raise InputError(f"a Notion heading level is 1, 2 or 3, not {level}")
    return _text_block(f"heading_{level}", text)


def paragraph(text: str) -> dict[str, Any]:
    """A paragraph block."""
    return _text_block("paragraph", text)


def bulleted_item(text: str) -> dict[str, Any]:
    """A bulleted list item block."""
    return _text_block("bulleted_list_item", text)


def numbered_item(text: str) -> dict[str, Any]:
    """A numbered list item block."""
    return _text_block("numbered_list_item", text)


def divider() -> dict[str, Any]:
    """A divider block."""
    return {"object": "block", "type": "divider", "divider": {}}


def table(rows: Sequence[Sequence[Any]], *, header: bool = True) -> dict[str, Any]:
    """A table block holding `rows` (the first one as column header when `header`).

    Cells are shown with `str` (None as empty); short rows are padded.

    Raises:
        InputError: no rows, or more than 100 (Notion's limit for one request).
    """
    if not rows:
        raise InputError("a Notion table needs at least one row")
    if len(rows) > BLOCKS_PER_REQUEST:
        raise InputError(
            f"a Notion table takes at most {BLOCKS_PER_REQUEST} rows at once, got {len(rows)}"
        )
    width = max(len(row) for row in rows) or 1
    table_rows = [
        {
            "object": "block",
            "type": "table_row",
            "table_row": {
                "cells": [
                    rich_text("" if cell is None else str(cell))
                    for cell in [*row, *[None] * (width - len(row))]
                ]
            },
        }
        for row in rows
    ]
    return {
        "object": "block",
        "type": "table",
        "table": {
            "table_width": width,
            "has_column_header": header,
            "has_row_header": False,
            "children": table_rows,
        },
    }


def block_fingerprint(block: Mapping[str, Any]) -> tuple[str, str]:
    """(type, text) of a block in request or response form, to recognise a stored block."""
    kind = block.get("type") or next((k for k in block if k != "object"), "")
    payload = block.get(kind) or {}
    items = payload.get("rich_text", []) if isinstance(payload, Mapping) else []
    text = "".join(
        item.get("plain_text") or (item.get("text") or {}).get("content", "") for item in items
    )
    return str(kind), text


def title_property(text: str) -> dict[str, Any]:
    """A title property value."""
    return {"title": rich_text(text)}


def text_property(text: str) -> dict[str, Any]:
    """A rich_text property value."""
    return {"rich_text": rich_text(text)}


def number_property(value: float | None) -> dict[str, Any]:
    """A number property value."""
    return {"number": value}


def select_property(name: str | None) -> dict[str, Any]:
    """A select property value (Notion adds an option it has not seen)."""
    return {"select": {"name": name} if name is not None else None}


def date_property(start: date | str | None, end: date | str | None = None) -> dict[str, Any]:
    """A date property value; a `date`/`datetime` or an ISO 8601 string."""
    if start is None:
        return {"date": None}

    def iso(value: date | str | None) -> str | None:
        return value.isoformat() if isinstance(value, date) else value

    return {"date": {"start": iso(start), "end": iso(end)}}


def checkbox_property(value: bool) -> dict[str, Any]:
    """A checkbox property value."""
    return {"checkbox": bool(value)}


# ---------------------------------------------------------------------------------------------
# Tasks


@task(name="notion-read-database-schema", cache_policy=NO_CACHE)
def read_database_schema(
    credentials: NotionCredentials, database_id: str, block_name: str | None = None
) -> tuple[str, dict[str, Any]]:
    """The database's data source id and its properties (two GET requests).

    Raises:
        InputError: no such database, or not shared with the integration (400/404), naming
            the database id.
        NotionFailure: Notion failed otherwise, after retries.
    """
    try:
        with NotionApi.from_block(credentials, block_name) as api:
            data_source_id = api.data_source_of(database_id)
            source = api.call(
                f"read data source {data_source_id}",
                lambda: api.client.data_sources.retrieve(data_source_id),
            )
    except NotionFailure as exc:
        if exc.status in (400, 404):
            raise InputError(f"notion_database_id {database_id!r}: {exc}") from None
        raise
    return data_source_id, source.get("properties", {})

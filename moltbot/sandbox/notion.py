"""Notion API emulator (mounted at /notion): databases, data sources, pages, blocks, search."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import math
import re
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal, TypeVar

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from moltbot.sandbox.kit import (
    DroppedConnection,
    EmulatorCore,
    JsonBodyProblem,
    TokenBucketLimiter,
    install_emulator,
    read_json_object,
    relative_path,
)

SANDBOX_NOTION_TOKEN = "sandbox-notion-token"
NOTION_VERSION = "2025-09-03"

# Fixed ids, so scripts written against a fresh sandbox keep working.
SANDBOX_ROOT_PAGE_ID = "5a1d0b07-0000-4000-8000-000000000001"
SANDBOX_DIGEST_DATABASE_ID = "5a1d0b07-0000-4000-8000-0000000000d1"
SANDBOX_DIGEST_DATA_SOURCE_ID = "5a1d0b07-0000-4000-8000-0000000000d5"
SANDBOX_BOT_USER_ID = "5a1d0b07-0000-4000-8000-00000000b07b"
SANDBOX_DIGEST_TITLE = "moltbot digests"
SANDBOX_KEY_PROPERTY = "moltbot key"

# Notion's own limits (developers.notion.com/reference/request-limits).
MAX_BLOCKS_PER_REQUEST = 100
MAX_RICH_TEXT_ITEMS = 100
MAX_TEXT_CONTENT = 2000
MAX_PAGE_SIZE = 100

DEFAULT_RATE = 3.0
# Notion allows "some bursts beyond the average"; 20 keeps a demo snappy while a loop that
# ignores the limit still meets 429s quickly.
DEFAULT_BURST = 20

# Status -> error code the notion-client knows (anything else becomes UnknownHTTPResponseError).
ERROR_CODES: dict[int, str] = {
    400: "validation_error",
    401: "unauthorized",
    403: "restricted_resource",
    404: "object_not_found",
    409: "conflict_error",
    429: "rate_limited",
    500: "internal_server_error",
    502: "internal_server_error",
    503: "service_unavailable",
    504: "gateway_timeout",
}

PROPERTY_TYPES = (
    "title",
    "rich_text",
    "number",
    "select",
    "multi_select",
    "status",
    "date",
    "checkbox",
    "url",
    "email",
    "phone_number",
    "created_time",
    "last_edited_time",
)
_READ_ONLY_TYPES = ("created_time", "last_edited_time")
_TEXT_TYPES = ("title", "rich_text", "url", "email", "phone_number")

_TEXT_BLOCKS = (
    "paragraph",
    "heading_1",
    "heading_2",
    "heading_3",
    "bulleted_list_item",
    "numbered_list_item",
    "to_do",
    "toggle",
    "quote",
    "callout",
    "code",
)
BLOCK_TYPES = (*_TEXT_BLOCKS, "divider", "table", "table_row", "bookmark")

_DEFAULT_ANNOTATIONS = {
    "bold": False,
    "italic": False,
    "strikethrough": False,
    "underline": False,
    "code": False,
    "color": "default",
}

_DIGEST_SCHEMA: dict[str, Any] = {
    "Name": {"title": {}},
    "Date": {"date": {}},
    "Responses": {"number": {"format": "number"}},
    "Form": {"select": {"options": []}},
    "Status": {
        "select": {
            "options": [
                {"name": "New", "color": "blue"},
                {"name": "In review", "color": "yellow"},
                {"name": "Done", "color": "green"},
            ]
        }
    },
    "Reviewed": {"checkbox": {}},
    SANDBOX_KEY_PROPERTY: {"rich_text": {}},
}


class NotionAPIError(Exception):
    """An error answer in Notion's shape, raised by handlers and the state's validation."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or ERROR_CODES.get(status, "invalid_request")


def _validation(message: str) -> NotionAPIError:
    return NotionAPIError(400, message, "validation_error")


def _invalid_body(problem: JsonBodyProblem) -> NotionAPIError:
    if problem == "malformed":
        return NotionAPIError(400, "Error parsing JSON body.", "invalid_json")
    return _validation("body failed validation: body should be an object.")


def _not_found(kind: str, object_id: str) -> NotionAPIError:
    return NotionAPIError(
        404,
        f"Could not find {kind} with ID: {object_id}. "
        "Make sure the relevant pages and databases are shared with your integration.",
    )


_Stored = TypeVar("_Stored")


def _lookup(table: dict[str, _Stored], kind: str, object_id: str) -> _Stored:
    """The `kind` (``page``, ``data_source``, ``database``) with this id; 404 when unknown."""
    object_id = normalize_id(object_id, f"{kind}_id")
    found = table.get(object_id)
    if found is None:
        raise _not_found(kind, object_id)
    return found


def error_response(status: int, message: str, code: str | None = None) -> JSONResponse:
    """Notion's error shape: ``{"object": "error", "status", "code", "message", "request_id"}``.

    The code is one the notion-client knows for `status` (400 ``validation_error``, 401
    ``unauthorized``, 404 ``object_not_found``, 429 ``rate_limited``, 5xx …) unless given.
    """
    return JSONResponse(
        {
            "object": "error",
            "status": status,
            "code": code or ERROR_CODES.get(status, "invalid_request"),
            "message": message,
            "request_id": str(uuid.uuid4()),
        },
        status_code=status,
    )


def _timestamp(moment: datetime) -> str:
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )


def _utf16_length(text: str) -> int:
    # Notion measures text the way JavaScript does: in UTF-16 code units.
    return len(text.encode("utf-16-le")) // 2


def normalize_id(value: str, name: str = "id") -> str:
    """A Notion id in its dashed form; Notion accepts ids with or without dashes.

    Raises:
        NotionAPIError: 400 validation_error when `value` is not a UUID.
    """
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError, TypeError):
        raise _validation(
            f"path failed validation: path.{name} should be a valid uuid, instead was "
            f"`{json.dumps(value, ensure_ascii=False)}`."
        ) from None


def inbox_path(object_id: str) -> str:
    """The sandbox inbox's page for a Notion page or database (what its ``url`` points at)."""
    return f"/inbox/notion/{object_id.replace('-', '')}"


def _property_id(name: str) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha1(name.encode("utf-8")).digest()[:3]).decode()
    return digest.replace("-", "%3F").replace("_", "%3A")


def _user() -> dict[str, str]:
    return {"object": "user", "id": SANDBOX_BOT_USER_ID}


def _rich_text(text: str) -> list[dict[str, Any]]:
    return [_normalize_rich_item({"text": {"content": text}}, "rich_text[0]")] if text else []


def plain_text(items: Iterable[Mapping[str, Any]]) -> str:
    """The concatenated ``plain_text`` of a rich-text array in response form."""
    return "".join(str(item.get("plain_text", "")) for item in items)


def _normalize_rich_item(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise _validation(f"body failed validation: {where} should be an object.")
    kind = raw.get("type") or ("equation" if "equation" in raw else "text")
    annotations = {**_DEFAULT_ANNOTATIONS, **(raw.get("annotations") or {})}
    if kind == "equation":
        expression = (raw.get("equation") or {}).get("expression")
        if not isinstance(expression, str):
            raise _validation(f"body failed validation: {where}.equation.expression is required.")
        return {
            "type": "equation",
            "equation": {"expression": expression},
            "annotations": annotations,
            "plain_text": expression,
            "href": None,
        }
    if kind != "text":
        raise _validation(
            f"body failed validation: {where}.type should be `text` or `equation` in the "
            f"moltbot sandbox, instead was `{kind}`."
        )
    text = raw.get("text")
    content = text.get("content") if isinstance(text, Mapping) else None
    if not isinstance(content, str):
        raise _validation(
            f"body failed validation: {where}.text.content should be a string, instead was "
            f"`{json.dumps(content, ensure_ascii=False)}`."
        )
    length = _utf16_length(content)
    if length > MAX_TEXT_CONTENT:
        raise _validation(
            f"body failed validation: {where}.text.content.length should be ≤ "
            f"`{MAX_TEXT_CONTENT}`, instead was `{length}`."
        )
    link = text.get("link")
    url = link.get("url") if isinstance(link, Mapping) else None
    return {
        "type": "text",
        "text": {"content": content, "link": {"url": url} if url else None},
        "annotations": annotations,
        "plain_text": content,
        "href": url,
    }


def _normalize_rich_text(raw: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(raw, list):
        raise _validation(f"body failed validation: {where} should be an array.")
    if len(raw) > MAX_RICH_TEXT_ITEMS:
        raise _validation(
            f"body failed validation: {where}.length should be ≤ `{MAX_RICH_TEXT_ITEMS}`, "
            f"instead was `{len(raw)}`."
        )
    return [_normalize_rich_item(item, f"{where}[{i}]") for i, item in enumerate(raw)]


def _parse_date(value: Any, where: str) -> date | datetime:
    if isinstance(value, str):
        try:
            if len(value) == 10:
                return date.fromisoformat(value)
            moment = datetime.fromisoformat(value)
            return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        except ValueError:
            pass
    raise _validation(
        f"body failed validation: {where} should be an ISO 8601 date or date-time, instead was "
        f"`{json.dumps(value, ensure_ascii=False, default=str)}`."
    )


# ---------------------------------------------------------------------------------------------
# Records


@dataclass
class _DataSource:
    id: str
    database_id: str
    title: list[dict[str, Any]]
    properties: dict[str, dict[str, Any]]  # name -> schema in response form
    created: datetime
    edited: datetime

    def schema_by_name_or_id(self, key: str) -> dict[str, Any] | None:
        if key in self.properties:
            return self.properties[key]
        for schema in self.properties.values():
            if schema["id"] == key:
                return schema
        return None


@dataclass
class _Database:
    id: str
    title: list[dict[str, Any]]
    parent_page_id: str | None
    data_source_ids: list[str]
    created: datetime
    edited: datetime


@dataclass
class _Page:
    id: str
    parent: dict[str, Any]
    data_source_id: str | None
    properties: dict[str, dict[str, Any]]  # name -> {"id", "type", <type>: value}
    created: datetime
    edited: datetime
    seq: int
    in_trash: bool = False


@dataclass
class _Block:
    id: str
    parent_id: str
    parent_is_page: bool
    type: str
    payload: dict[str, Any]
    created: datetime
    edited: datetime


@dataclass
class _AfterApplyFault:
    kind: Literal["status", "drop"]
    status: int
    method: str | None
    path: str | None
    remaining: int | None
    retry_after: int | None

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method != method:
            return False
        return self.path is None or re.search(self.path, path) is not None


@dataclass
class _Store:
    databases: dict[str, _Database] = field(default_factory=dict)
    data_sources: dict[str, _DataSource] = field(default_factory=dict)
    pages: dict[str, _Page] = field(default_factory=dict)
    blocks: dict[str, _Block] = field(default_factory=dict)
    children: dict[str, list[str]] = field(default_factory=dict)  # parent id -> block ids
    seq: int = 0


class NotionState:
    """In-memory state of the Notion emulator, shared by its handlers and by Python callers.

    A fresh (or `reset`) state holds a root page ``moltbot sandbox`` (`SANDBOX_ROOT_PAGE_ID`)
    with the database ``moltbot digests`` (`SANDBOX_DIGEST_DATABASE_ID`, one data source
    `SANDBOX_DIGEST_DATA_SOURCE_ID`) whose schema suits the form digest: Name (title), Date
    (date), Responses (number), Form (select), Status (select), Reviewed (checkbox) and
    ``moltbot key`` (rich_text, the idempotency key automations store).

    Every accessor takes one lock and returns deep copies in Notion's response form.

    Pages and databases carry a ``url`` to the sandbox inbox's page for them
    (``http://HOST:PORT/inbox/notion/<id>``). Only a request tells the emulator its own address,
    so the URLs use the address of the latest request; before any, they are site-relative
    (``/inbox/notion/<id>``).

    Attributes:
        core: request log and injected faults (see `moltbot.sandbox.kit.EmulatorCore`).
        limiter: the rate-limit model, an average of 3 requests/s per token.
    """

    def __init__(self, *, seed: int | None = None) -> None:
        self.core = EmulatorCore("notion", seed=seed)
        self.limiter = TokenBucketLimiter(DEFAULT_RATE, DEFAULT_BURST)
        self._lock = threading.RLock()
        self._after_apply: deque[_AfterApplyFault] = deque()
        self._store = _Store()
        # The root URL the latest request came to (``http://127.0.0.1:8000``); see the class doc.
        self._site = ""
        self._seed()

    # -- lifecycle and switches ---------------------------------------------------------------

    def reset(self) -> None:
        """Back to the seeded state, with no requests logged, no faults, default rate limit."""
        self.core.reset()
        with self._lock:
            self._store = _Store()
            self._after_apply.clear()
            self._seed()
        self.limiter = TokenBucketLimiter(DEFAULT_RATE, DEFAULT_BURST)

    def set_rate_limit(self, rate: float | None = DEFAULT_RATE, burst: int = DEFAULT_BURST) -> None:
        """Change the rate-limit model: `rate` requests/s on average, bursts up to `burst`.

        ``rate=None`` disables it. Requests beyond it answer 429 ``rate_limited`` with a
        ``Retry-After`` in whole seconds (at least 1).
        """
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst}")
        self.limiter = TokenBucketLimiter(rate, burst)

    def fail_after_apply(
        self,
        count: int | None = 1,
        *,
        status: int = 500,
        kind: Literal["status", "drop"] = "status",
        method: str | None = None,
        path: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        """Make the next `count` matching requests take effect, then answer `status` (or drop).

        The kit's faults answer before the handler runs, so nothing happens; these answer after
        the change is stored, like a Notion request that timed out on its way back. A dropped
        answer is logged with status 200 (the answer had started). `path` is a regex searched
        in the path below ``/notion`` (e.g. ``^/v1/pages$``).
        """
        if kind == "status" and not 400 <= status <= 599:
            raise ValueError(f"status must be 4xx or 5xx, got {status}")
        if count is not None and count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        fault = _AfterApplyFault(
            kind, status, method.upper() if method else None, path, count, retry_after
        )
        with self._lock:
            self._after_apply.append(fault)

    def _take_after_apply(self, method: str, path: str) -> _AfterApplyFault | None:
        with self._lock:
            for fault in self._after_apply:
                if not fault.matches(method, path):
                    continue
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._after_apply.remove(fault)
                return fault
        return None

    # -- seeding and inspection ---------------------------------------------------------------

    def _seed(self) -> None:
        now = datetime.now(UTC)
        root = _Page(
            id=SANDBOX_ROOT_PAGE_ID,
            parent={"type": "workspace", "workspace": True},
            data_source_id=None,
            properties={
                "title": {"id": "title", "type": "title", "title": _rich_text("moltbot sandbox")}
            },
            created=now,
            edited=now,
            seq=0,
        )
        self._store.pages[root.id] = root
        self._store.children[root.id] = []
        self.add_database(
            SANDBOX_DIGEST_TITLE,
            _DIGEST_SCHEMA,
            parent_page_id=SANDBOX_ROOT_PAGE_ID,
            database_id=SANDBOX_DIGEST_DATABASE_ID,
            data_source_id=SANDBOX_DIGEST_DATA_SOURCE_ID,
        )

    def add_database(
        self,
        title: str,
        properties: Mapping[str, Any],
        *,
        parent_page_id: str | None = SANDBOX_ROOT_PAGE_ID,
        database_id: str | None = None,
        data_source_id: str | None = None,
    ) -> tuple[str, str]:
        """Create a database with one data source and return ``(database_id, data_source_id)``.

        Args:
            title: the database's (and its data source's) title.
            properties: the schema in Notion's request form, e.g. ``{"Name": {"title": {}},
                "Status": {"select": {"options": [{"name": "New"}]}}}``; a bare type name
                (``"Name": "title"``) is accepted too. Exactly one title property.
            parent_page_id: the page holding it (the root page by default).
            database_id: fixed id; a random one when None.
            data_source_id: fixed id; a random one when None.

        Raises:
            NotionAPIError: an unknown property type or not exactly one title property.
        """
        schema: dict[str, dict[str, Any]] = {}
        for name, raw in properties.items():
            config = {raw: {}} if isinstance(raw, str) else dict(raw)
            config.pop("name", None)
            kind = config.pop("type", None) or next(iter(config), None)
            if kind not in PROPERTY_TYPES:
                raise _validation(f"{name}: unsupported property type `{kind}`.")
            body = dict(config.get(kind) or {})
            if kind in ("select", "multi_select", "status"):
                body["options"] = [self._option(o) for o in body.get("options", [])]
            schema[name] = {
                "id": "title" if kind == "title" else _property_id(name),
                "name": name,
                "description": None,
                "type": kind,
                kind: body,
            }
        if sum(1 for s in schema.values() if s["type"] == "title") != 1:
            raise _validation("A data source must have exactly one title property.")
        now = datetime.now(UTC)
        db_id = normalize_id(database_id) if database_id else str(uuid.uuid4())
        ds_id = normalize_id(data_source_id) if data_source_id else str(uuid.uuid4())
        with self._lock:
            self._store.databases[db_id] = _Database(
                db_id, _rich_text(title), parent_page_id, [ds_id], now, now
            )
            self._store.data_sources[ds_id] = _DataSource(
                ds_id, db_id, _rich_text(title), schema, now, now
            )
        return db_id, ds_id

    @staticmethod
    def _option(raw: Mapping[str, Any]) -> dict[str, Any]:
        name = raw["name"]
        return {
            "id": raw.get("id") or _property_id(f"option:{name}"),
            "name": name,
            "color": raw.get("color", "default"),
            "description": None,
        }

    def add_page(
        self,
        *,
        data_source_id: str | None = None,
        page_id: str | None = None,
        properties: Mapping[str, Any],
        children: Iterable[Mapping[str, Any]] = (),
        created_time: datetime | None = None,
    ) -> dict[str, Any]:
        """Store a page without an HTTP request (no log, no limits) and return it.

        `properties` take Notion's request form (``{"Responses": {"number": 3}}``) or plain
        values, converted by the schema (``{"Name": "설문", "Responses": 3, "Reviewed": True,
        "Date": "2025-11-24", "Status": "New"}``). `created_time` backdates the page.
        """
        parent: dict[str, Any] = (
            {"data_source_id": data_source_id} if data_source_id else {"page_id": page_id}
        )
        with self._lock:
            page = self._create_page(
                {"parent": parent, "properties": dict(properties), "children": list(children)},
                plain_values=True,
                created=created_time,
            )
            return self._page_json(page)

    def pages(
        self, data_source_id: str | None = None, *, include_trashed: bool = False
    ) -> list[dict[str, Any]]:
        """Page objects (all, or those of one data source), oldest first."""
        with self._lock:
            found = sorted(self._store.pages.values(), key=lambda p: p.seq)
            return [
                self._page_json(page)
                for page in found
                if (data_source_id is None or page.data_source_id == normalize_id(data_source_id))
                and (include_trashed or not page.in_trash)
            ]

    def page(self, page_id: str) -> dict[str, Any]:
        """One page object; raises `NotionAPIError` (404) when unknown."""
        with self._lock:
            return self._page_json(self._get_page(page_id))

    def children(self, block_id: str) -> list[dict[str, Any]]:
        """The child blocks of a page or block, in order, each with a ``children`` list too."""
        with self._lock:
            parent = normalize_id(block_id)
            if parent not in self._store.children:
                raise _not_found("block", parent)
            return [self._block_tree(child) for child in self._store.children[parent]]

    def databases(self) -> list[dict[str, Any]]:
        """Every database object, oldest first."""
        with self._lock:
            found = sorted(self._store.databases.values(), key=lambda d: d.created)
            return [self._database_json(database) for database in found]

    def data_source(self, data_source_id: str) -> dict[str, Any]:
        """One data source object (title, schema in response form)."""
        with self._lock:
            return self._data_source_json(self._get_data_source(data_source_id))

    def database(self, database_id: str) -> dict[str, Any]:
        """One database object, with its ``data_sources``."""
        with self._lock:
            return self._database_json(self._get_database(database_id))

    def _block_tree(self, block_id: str) -> dict[str, Any]:
        data = self._block_json(self._store.blocks[block_id])
        data["children"] = [self._block_tree(c) for c in self._store.children.get(block_id, [])]
        return data

    # -- lookups ------------------------------------------------------------------------------

    def _get_page(self, page_id: str) -> _Page:
        return _lookup(self._store.pages, "page", page_id)

    def _get_data_source(self, data_source_id: str) -> _DataSource:
        return _lookup(self._store.data_sources, "data_source", data_source_id)

    def _get_database(self, database_id: str) -> _Database:
        return _lookup(self._store.databases, "database", database_id)

    # -- JSON views ---------------------------------------------------------------------------

    def _page_json(self, page: _Page) -> dict[str, Any]:
        properties = copy.deepcopy(page.properties)
        data_source = self._store.data_sources.get(page.data_source_id or "")
        if data_source is not None:
            for name, schema in data_source.properties.items():
                if schema["type"] in _READ_ONLY_TYPES:
                    moment = page.created if schema["type"] == "created_time" else page.edited
                    properties[name] = {
                        "id": schema["id"],
                        "type": schema["type"],
                        schema["type"]: _timestamp(moment),
                    }
        return {
            "object": "page",
            "id": page.id,
            "created_time": _timestamp(page.created),
            "last_edited_time": _timestamp(page.edited),
            "created_by": _user(),
            "last_edited_by": _user(),
            "cover": None,
            "icon": None,
            "parent": copy.deepcopy(page.parent),
            "archived": page.in_trash,
            "in_trash": page.in_trash,
            "is_locked": False,
            "properties": properties,
            "url": self._site + inbox_path(page.id),
            "public_url": None,
        }

    def _data_source_json(self, data_source: _DataSource) -> dict[str, Any]:
        database = self._store.databases[data_source.database_id]
        database_parent = (
            {"type": "page_id", "page_id": database.parent_page_id}
            if database.parent_page_id
            else {"type": "workspace", "workspace": True}
        )
        return {
            "object": "data_source",
            "id": data_source.id,
            "cover": None,
            "icon": None,
            "created_time": _timestamp(data_source.created),
            "created_by": _user(),
            "last_edited_by": _user(),
            "last_edited_time": _timestamp(data_source.edited),
            "title": copy.deepcopy(data_source.title),
            "description": [],
            "is_inline": False,
            "properties": copy.deepcopy(data_source.properties),
            "parent": {"type": "database_id", "database_id": database.id},
            "database_parent": database_parent,
            "url": self._site + inbox_path(database.id),
            "public_url": None,
            "archived": False,
            "in_trash": False,
        }

    def _database_json(self, database: _Database) -> dict[str, Any]:
        return {
            "object": "database",
            "id": database.id,
            "title": copy.deepcopy(database.title),
            "description": [],
            "parent": (
                {"type": "page_id", "page_id": database.parent_page_id}
                if database.parent_page_id
                else {"type": "workspace", "workspace": True}
            ),
            "is_inline": False,
            "in_trash": False,
            "is_locked": False,
            "created_time": _timestamp(database.created),
            "last_edited_time": _timestamp(database.edited),
            "data_sources": [
                {"id": ds, "name": plain_text(self._store.data_sources[ds].title)}
                for ds in database.data_source_ids
            ],
            "icon": None,
            "cover": None,
            "url": self._site + inbox_path(database.id),
            "public_url": None,
            "archived": False,
        }

    def _block_json(self, block: _Block) -> dict[str, Any]:
        parent = (
            {"type": "page_id", "page_id": block.parent_id}
            if block.parent_is_page
            else {"type": "block_id", "block_id": block.parent_id}
        )
        return {
            "object": "block",
            "id": block.id,
            "parent": parent,
            "created_time": _timestamp(block.created),
            "last_edited_time": _timestamp(block.edited),
            "created_by": _user(),
            "last_edited_by": _user(),
            "has_children": bool(self._store.children.get(block.id)),
            "archived": False,
            "in_trash": False,
            "type": block.type,
            block.type: copy.deepcopy(block.payload),
        }

    def _page_as_block(self, page: _Page) -> dict[str, Any]:
        title = next((p["title"] for p in page.properties.values() if p["type"] == "title"), [])
        return {
            "object": "block",
            "id": page.id,
            "parent": copy.deepcopy(page.parent),
            "created_time": _timestamp(page.created),
            "last_edited_time": _timestamp(page.edited),
            "created_by": _user(),
            "last_edited_by": _user(),
            "has_children": bool(self._store.children.get(page.id)),
            "archived": page.in_trash,
            "in_trash": page.in_trash,
            "type": "child_page",
            "child_page": {"title": plain_text(title)},
        }

    # -- pages --------------------------------------------------------------------------------

    def _create_page(
        self,
        body: Mapping[str, Any],
        *,
        plain_values: bool = False,
        created: datetime | None = None,
    ) -> _Page:
        parent_raw = body.get("parent")
        if not isinstance(parent_raw, Mapping):
            raise _validation("body failed validation: body.parent should be defined.")
        properties_raw = body.get("properties") or {}
        if not isinstance(properties_raw, Mapping):
            raise _validation("body failed validation: body.properties should be an object.")
        children_raw = body.get("children") or []
        self._check_children_array(children_raw, "body.children")

        data_source: _DataSource | None = None
        if parent_raw.get("data_source_id"):
            data_source = self._get_data_source(parent_raw["data_source_id"])
        elif parent_raw.get("database_id"):
            database = self._get_database(parent_raw["database_id"])
            if len(database.data_source_ids) != 1:
                raise _validation(
                    "Databases with multiple data sources are not supported as a page parent: "
                    "use a data_source_id parent."
                )
            data_source = self._store.data_sources[database.data_source_ids[0]]
        elif parent_raw.get("page_id"):
            parent_page = self._get_page(parent_raw["page_id"])
        else:
            raise _validation(
                "body failed validation: body.parent.data_source_id, body.parent.database_id "
                "or body.parent.page_id should be defined."
            )

        if data_source is not None:
            properties = self._validate_properties(
                data_source, properties_raw, plain_values=plain_values, partial=False
            )
            parent = {
                "type": "data_source_id",
                "data_source_id": data_source.id,
                "database_id": data_source.database_id,
            }
        else:
            if parent_page.in_trash:
                raise _archived()
            properties = self._page_title_property(properties_raw, plain_values)
            parent = {"type": "page_id", "page_id": parent_page.id}

        # Validate every child before storing anything: a refused request changes nothing.
        children = [
            _normalize_block(raw, f"body.children[{i}]") for i, raw in enumerate(children_raw)
        ]
        now = datetime.now(UTC)
        self._store.seq += 1
        page = _Page(
            id=str(uuid.uuid4()),
            parent=parent,
            data_source_id=data_source.id if data_source else None,
            properties=properties,
            created=created or now,
            edited=created or now,
            seq=self._store.seq,
        )
        self._store.pages[page.id] = page
        self._store.children[page.id] = []
        self._insert_blocks(page.id, True, children, None)
        return page

    def _page_title_property(
        self, raw: Mapping[str, Any], plain_values: bool
    ) -> dict[str, dict[str, Any]]:
        unknown = [name for name in raw if name != "title"]
        if unknown:
            raise _validation(
                f"{unknown[0]} is not a property that exists. A page under a page only has "
                "a `title` property."
            )
        value = raw.get("title", [])
        if plain_values and isinstance(value, str):
            value = [{"text": {"content": value}}]
        if isinstance(value, Mapping):
            value = value.get("title", [])
        return {
            "title": {
                "id": "title",
                "type": "title",
                "title": _normalize_rich_text(value, "body.properties.title.title"),
            }
        }

    def _validate_properties(
        self,
        data_source: _DataSource,
        raw: Mapping[str, Any],
        *,
        plain_values: bool,
        partial: bool,
    ) -> dict[str, dict[str, Any]]:
        values: dict[str, dict[str, Any]] = {}
        for key, value in raw.items():
            schema = data_source.schema_by_name_or_id(key)
            if schema is None:
                raise _validation(f"{key} is not a property that exists.")
            kind = schema["type"]
            if kind in _READ_ONLY_TYPES:
                raise _validation(f"{schema['name']} is a read-only property ({kind}).")
            if plain_values and not (isinstance(value, Mapping) and kind in value):
                value = _plain_property(kind, value)
            parsed = self._property_value(schema, value)
            values[schema["name"]] = {"id": schema["id"], "type": kind, kind: parsed}
        if partial:
            return values
        for name, schema in data_source.properties.items():
            if name not in values and schema["type"] not in _READ_ONLY_TYPES:
                values[name] = {
                    "id": schema["id"],
                    "type": schema["type"],
                    schema["type"]: _empty_value(schema["type"]),
                }
        return {name: values[name] for name in data_source.properties if name in values}

    def _property_value(self, schema: dict[str, Any], raw: Any) -> Any:
        name, kind = schema["name"], schema["type"]
        where = f"body.properties.{name}.{kind}"
        if kind in ("title", "rich_text") and isinstance(raw, list):
            raw = {kind: raw}
        if not isinstance(raw, Mapping) or kind not in raw:
            raise _validation(f"{name} is expected to be {kind}.")
        given_type = raw.get("type")
        if given_type is not None and given_type != kind:
            raise _validation(f"{name} is expected to be {kind}.")
        value = raw[kind]
        if kind in ("title", "rich_text"):
            return _normalize_rich_text(value, where)
        if kind == "number":
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float)
            ):
                raise _validation(f"{name} is expected to be number.")
            return value
        if kind == "checkbox":
            if not isinstance(value, bool):
                raise _validation(f"{name} is expected to be checkbox.")
            return value
        if kind in ("url", "email", "phone_number"):
            if value is not None and not isinstance(value, str):
                raise _validation(f"{name} is expected to be {kind}.")
            return value
        if kind == "date":
            if value is None:
                return None
            if not isinstance(value, Mapping) or "start" not in value:
                raise _validation(f"{name} is expected to be date.")
            _parse_date(value["start"], f"{where}.start")
            if value.get("end") is not None:
                _parse_date(value["end"], f"{where}.end")
            return {
                "start": value["start"],
                "end": value.get("end"),
                "time_zone": value.get("time_zone"),
            }
        if kind in ("select", "status"):
            if value is None:
                return None
            return self._choose_option(schema, value, create=kind == "select")
        if kind == "multi_select":
            if not isinstance(value, list):
                raise _validation(f"{name} is expected to be multi_select.")
            return [self._choose_option(schema, item, create=True) for item in value]
        raise _validation(f"{name} is expected to be {kind}.")  # pragma: no cover

    def _choose_option(self, schema: dict[str, Any], raw: Any, *, create: bool) -> dict[str, Any]:
        options: list[dict[str, Any]] = schema[schema["type"]]["options"]
        if not isinstance(raw, Mapping) or not (raw.get("name") or raw.get("id")):
            raise _validation(f"{schema['name']} is expected to be {schema['type']}.")
        for option in options:
            if option["name"] == raw.get("name") or option["id"] == raw.get("id"):
                return {k: option[k] for k in ("id", "name", "color")}
        if not create or not raw.get("name"):
            raise _validation(
                f"Invalid {schema['type']} option for {schema['name']}: "
                f"`{raw.get('name') or raw.get('id')}` does not exist."
            )
        # Notion adds a select option the first time a page uses it.
        option = self._option({"name": raw["name"], "color": raw.get("color", "default")})
        options.append(option)
        return {k: option[k] for k in ("id", "name", "color")}

    def _update_page(self, page_id: str, body: Mapping[str, Any]) -> _Page:
        page = self._get_page(page_id)
        trash = body.get("in_trash", body.get("archived"))
        if trash is not None and not isinstance(trash, bool):
            raise _validation("body failed validation: body.in_trash should be a boolean.")
        properties_raw = body.get("properties") or {}
        if not isinstance(properties_raw, Mapping):
            raise _validation("body failed validation: body.properties should be an object.")
        if page.in_trash and properties_raw and trash is not False:
            raise _archived()
        if page.data_source_id is not None:
            updates = self._validate_properties(
                self._store.data_sources[page.data_source_id],
                properties_raw,
                plain_values=False,
                partial=True,
            )
        elif properties_raw:
            updates = self._page_title_property(properties_raw, False)
        else:
            updates = {}
        page.properties.update(updates)
        if trash is not None:
            page.in_trash = trash
        page.edited = datetime.now(UTC)
        return page

    # -- blocks -------------------------------------------------------------------------------

    @staticmethod
    def _check_children_array(children: Any, where: str) -> None:
        if not isinstance(children, list):
            raise _validation(f"body failed validation: {where} should be an array.")
        if len(children) > MAX_BLOCKS_PER_REQUEST:
            raise _validation(
                f"body failed validation: {where}.length should be ≤ `{MAX_BLOCKS_PER_REQUEST}`, "
                f"instead was `{len(children)}`."
            )

    def _insert_blocks(
        self,
        parent_id: str,
        parent_is_page: bool,
        blocks: list[tuple[str, dict[str, Any], list[Any]]],
        position: int | None,
    ) -> list[_Block]:
        siblings = self._store.children.setdefault(parent_id, [])
        if position is None:
            position = len(siblings)
        created: list[_Block] = []
        now = datetime.now(UTC)
        for kind, payload, nested in blocks:
            block = _Block(str(uuid.uuid4()), parent_id, parent_is_page, kind, payload, now, now)
            self._store.blocks[block.id] = block
            self._store.children[block.id] = []
            siblings.insert(position, block.id)
            position += 1
            self._insert_blocks(block.id, False, nested, None)
            created.append(block)
        return created

    def _append_children(self, block_id: str, body: Mapping[str, Any]) -> list[_Block]:
        parent_id = normalize_id(block_id, "block_id")
        page = self._store.pages.get(parent_id)
        if page is None and parent_id not in self._store.blocks:
            raise _not_found("block", parent_id)
        if page is not None and page.in_trash:
            raise _archived()
        children_raw = body.get("children")
        if children_raw is None:
            raise _validation("body failed validation: body.children should be defined.")
        self._check_children_array(children_raw, "body.children")
        position = self._insert_position(parent_id, body)
        children = [
            _normalize_block(raw, f"body.children[{i}]") for i, raw in enumerate(children_raw)
        ]
        created = self._insert_blocks(parent_id, page is not None, children, position)
        if page is not None:
            page.edited = datetime.now(UTC)
        return created

    def _insert_position(self, parent_id: str, body: Mapping[str, Any]) -> int | None:
        """Index where appended blocks go (`after`, or `position`); None for the end."""
        siblings = self._store.children.get(parent_id, [])
        after = body.get("after")
        position = body.get("position")
        if isinstance(position, Mapping):
            kind = position.get("type")
            if kind == "start":
                return 0
            if kind == "after_block":
                after = (position.get("after_block") or {}).get("id")
            elif kind != "end":
                raise _validation(
                    "body failed validation: body.position.type should be `after_block`, "
                    "`start` or `end`."
                )
        if after is None:
            return None
        after_id = normalize_id(after, "after")
        if after_id not in siblings:
            raise _validation(
                f"body failed validation: body.after should be the id of a child of {parent_id}, "
                f"instead was `{after}`."
            )
        return siblings.index(after_id) + 1

    # -- queries ------------------------------------------------------------------------------

    def _query(self, data_source_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        data_source = self._get_data_source(data_source_id)
        page_size = _page_size(body.get("page_size"), "body.page_size")
        include_trash = bool(body.get("in_trash") or body.get("archived"))
        candidates = [
            page
            for page in self._store.pages.values()
            if page.data_source_id == data_source.id and (include_trash or not page.in_trash)
        ]
        candidates.sort(key=lambda p: p.seq)
        filter_raw = body.get("filter")
        if filter_raw is not None:
            predicate = _compile_filter(data_source, filter_raw, "body.filter", 0)
            candidates = [page for page in candidates if predicate(self._page_json(page))]
        sorts = body.get("sorts") or []
        if not isinstance(sorts, list):
            raise _validation("body failed validation: body.sorts should be an array.")
        for index, sort in reversed(list(enumerate(sorts))):
            candidates = _apply_sort(data_source, candidates, sort, f"body.sorts[{index}]", self)
        results = [self._page_json(page) for page in candidates]
        return _paginate(results, body.get("start_cursor"), page_size, "page_or_data_source")

    def _search(self, body: Mapping[str, Any]) -> dict[str, Any]:
        page_size = _page_size(body.get("page_size"), "body.page_size")
        query = body.get("query") or ""
        if not isinstance(query, str):
            raise _validation("body failed validation: body.query should be a string.")
        wanted: tuple[str, ...] = ("page", "data_source")
        filter_raw = body.get("filter")
        if filter_raw is not None:
            value = filter_raw.get("value") if isinstance(filter_raw, Mapping) else None
            prop = filter_raw.get("property") if isinstance(filter_raw, Mapping) else None
            if prop != "object" or value not in ("page", "data_source"):
                raise _validation(
                    'body failed validation: body.filter.value should be `"page"` or '
                    f'`"data_source"`, instead was `{json.dumps(value)}`.'
                )
            wanted = (value,)
        needle = query.casefold()
        found: list[tuple[datetime, dict[str, Any]]] = []
        if "data_source" in wanted:
            for data_source in self._store.data_sources.values():
                if needle in plain_text(data_source.title).casefold():
                    found.append((data_source.edited, self._data_source_json(data_source)))
        if "page" in wanted:
            for page in self._store.pages.values():
                title = next(
                    (p["title"] for p in page.properties.values() if p["type"] == "title"), []
                )
                if not page.in_trash and needle in plain_text(title).casefold():
                    found.append((page.edited, self._page_json(page)))
        sort = body.get("sort") or {}
        ascending = isinstance(sort, Mapping) and sort.get("direction") == "ascending"
        found.sort(key=lambda item: item[0], reverse=not ascending)
        results = [item for _, item in found]
        return _paginate(results, body.get("start_cursor"), page_size, "page_or_data_source")

    def _list_children(self, block_id: str, start_cursor: str | None, size: Any) -> dict[str, Any]:
        parent_id = normalize_id(block_id, "block_id")
        if parent_id not in self._store.children:
            raise _not_found("block", parent_id)
        page_size = _page_size(size, "query.page_size")
        results = [self._block_json(self._store.blocks[c]) for c in self._store.children[parent_id]]
        return _paginate(results, start_cursor, page_size, "block")


def _archived() -> NotionAPIError:
    return _validation(
        "Can't edit block that is archived. You must unarchive the block before editing."
    )


def _empty_value(kind: str) -> Any:
    if kind in ("title", "rich_text", "multi_select"):
        return []
    if kind == "checkbox":
        return False
    return None


def _plain_property(kind: str, value: Any) -> Any:
    """Request form of a plain Python value for a property of type `kind` (seeding helper)."""
    if kind in ("title", "rich_text"):
        return {kind: [{"text": {"content": str(value)}}] if value not in (None, "") else []}
    if kind in ("select", "status"):
        return {kind: {"name": str(value)} if value is not None else None}
    if kind == "multi_select":
        return {kind: [{"name": str(item)} for item in value or []]}
    if kind == "date":
        if value is None:
            return {kind: None}
        start = value.isoformat() if isinstance(value, date) else str(value)
        return {kind: {"start": start}}
    return {kind: value}


def _page_size(raw: Any, where: str) -> int:
    if raw is None:
        return MAX_PAGE_SIZE
    try:
        size = int(raw)
    except (TypeError, ValueError):
        raise _validation(f"body failed validation: {where} should be a number.") from None
    if size > MAX_PAGE_SIZE:
        raise _validation(
            f"body failed validation: {where} should be ≤ `{MAX_PAGE_SIZE}`, instead was `{size}`."
        )
    if size < 1:
        raise _validation(f"body failed validation: {where} should be ≥ `1`, instead was `{size}`.")
    return size


def _paginate(
    results: list[dict[str, Any]], cursor: Any, page_size: int, kind: str
) -> dict[str, Any]:
    start = 0
    if cursor is not None:
        ids = [item["id"] for item in results]
        if cursor not in ids:
            raise _validation("The start_cursor provided is invalid: " + str(cursor))
        start = ids.index(cursor)
    chunk = results[start : start + page_size]
    has_more = start + page_size < len(results)
    return {
        "object": "list",
        "results": chunk,
        # Like Notion, the cursor is the id of the first result of the next page.
        "next_cursor": results[start + page_size]["id"] if has_more else None,
        "has_more": has_more,
        "type": kind,
        kind: {},
    }


# ---------------------------------------------------------------------------------------------
# Blocks


def _normalize_block(raw: Any, where: str) -> tuple[str, dict[str, Any], list[Any]]:
    """Validate one block in request form; returns (type, payload, nested children)."""
    if not isinstance(raw, Mapping):
        raise _validation(f"body failed validation: {where} should be an object.")
    kind = raw.get("type") or next((k for k in raw if k in BLOCK_TYPES), None)
    if kind not in BLOCK_TYPES:
        shown = kind or next((k for k in raw if k != "object"), None)
        raise _validation(
            f"body failed validation: {where}.type should be one of the block types the moltbot "
            f"sandbox supports ({', '.join(BLOCK_TYPES)}), instead was `{shown}`."
        )
    payload = raw.get(kind)
    if payload is None and kind == "divider":
        payload = {}
    if not isinstance(payload, Mapping):
        raise _validation(f"body failed validation: {where}.{kind} should be an object.")
    payload = dict(payload)
    nested_raw = payload.pop("children", [])
    NotionState._check_children_array(nested_raw, f"{where}.{kind}.children")
    nested = [
        _normalize_block(child, f"{where}.{kind}.children[{i}]")
        for i, child in enumerate(nested_raw)
    ]
    if kind in _TEXT_BLOCKS:
        payload["rich_text"] = _normalize_rich_text(
            payload.get("rich_text", []), f"{where}.{kind}.rich_text"
        )
        payload.setdefault("color", "default")
        if kind.startswith("heading_"):
            payload.setdefault("is_toggleable", False)
        if kind == "to_do":
            payload["checked"] = bool(payload.get("checked", False))
        if kind == "code":
            payload.setdefault("language", "plain text")
            payload["caption"] = _normalize_rich_text(
                payload.get("caption", []), f"{where}.code.caption"
            )
    elif kind == "table":
        width = payload.get("table_width")
        if not isinstance(width, int) or width < 1:
            raise _validation(
                f"body failed validation: {where}.table.table_width should be a positive integer."
            )
        if not nested:
            raise _validation(f"body failed validation: {where}.table.children should be defined.")
        for i, (child_kind, child_payload, _) in enumerate(nested):
            if child_kind != "table_row" or len(child_payload["cells"]) != width:
                raise _validation(
                    f"body failed validation: {where}.table.children[{i}] should be a table_row "
                    f"with {width} cells."
                )
        payload["has_column_header"] = bool(payload.get("has_column_header", False))
        payload["has_row_header"] = bool(payload.get("has_row_header", False))
    elif kind == "table_row":
        cells = payload.get("cells")
        if not isinstance(cells, list):
            raise _validation(
                f"body failed validation: {where}.table_row.cells should be an array."
            )
        payload["cells"] = [
            _normalize_rich_text(cell, f"{where}.table_row.cells[{i}]")
            for i, cell in enumerate(cells)
        ]
    elif kind == "bookmark":
        if not isinstance(payload.get("url"), str):
            raise _validation(f"body failed validation: {where}.bookmark.url should be a string.")
        payload["caption"] = _normalize_rich_text(
            payload.get("caption", []), f"{where}.bookmark.caption"
        )
    return kind, payload, nested


# ---------------------------------------------------------------------------------------------
# Filters and sorts

Predicate = Callable[[dict[str, Any]], bool]

_TEXT_CONDITIONS = (
    "equals",
    "does_not_equal",
    "contains",
    "does_not_contain",
    "starts_with",
    "ends_with",
    "is_empty",
    "is_not_empty",
)
_NUMBER_CONDITIONS = (
    "equals",
    "does_not_equal",
    "greater_than",
    "less_than",
    "greater_than_or_equal_to",
    "less_than_or_equal_to",
    "is_empty",
    "is_not_empty",
)
_DATE_CONDITIONS = (
    "equals",
    "before",
    "after",
    "on_or_before",
    "on_or_after",
    "is_empty",
    "is_not_empty",
)
_CONDITIONS: dict[str, tuple[str, ...]] = {
    "title": _TEXT_CONDITIONS,
    "rich_text": _TEXT_CONDITIONS,
    "url": _TEXT_CONDITIONS,
    "email": _TEXT_CONDITIONS,
    "phone_number": _TEXT_CONDITIONS,
    "number": _NUMBER_CONDITIONS,
    "select": ("equals", "does_not_equal", "is_empty", "is_not_empty"),
    "status": ("equals", "does_not_equal", "is_empty", "is_not_empty"),
    "multi_select": ("contains", "does_not_contain", "is_empty", "is_not_empty"),
    "checkbox": ("equals", "does_not_equal"),
    "date": _DATE_CONDITIONS,
    "created_time": _DATE_CONDITIONS,
    "last_edited_time": _DATE_CONDITIONS,
}
_MAX_FILTER_DEPTH = 2


def _plain_value(kind: str, value: Any) -> Any:
    """A property value in response form reduced to something comparable."""
    if kind in ("title", "rich_text"):
        return plain_text(value)
    if kind in ("select", "status"):
        return value["name"] if value else None
    if kind == "multi_select":
        return [item["name"] for item in value]
    if kind == "date":
        return value["start"] if value else None
    return value


def _compile_filter(data_source: _DataSource, raw: Any, where: str, depth: int) -> Predicate:
    if not isinstance(raw, Mapping):
        raise _validation(f"body failed validation: {where} should be an object.")
    for compound in ("and", "or"):
        if compound in raw:
            if depth >= _MAX_FILTER_DEPTH:
                raise _validation(
                    f"body failed validation: {where} nests compound filters more than "
                    f"{_MAX_FILTER_DEPTH} levels deep."
                )
            items = raw[compound]
            if not isinstance(items, list):
                raise _validation(f"body failed validation: {where}.{compound} should be an array.")
            parts = [
                _compile_filter(data_source, item, f"{where}.{compound}[{i}]", depth + 1)
                for i, item in enumerate(items)
            ]
            if compound == "and":
                return lambda page: all(part(page) for part in parts)
            return lambda page: any(part(page) for part in parts)
    if "timestamp" in raw:
        stamp = raw["timestamp"]
        if stamp not in ("created_time", "last_edited_time"):
            raise _validation(
                f"body failed validation: {where}.timestamp should be `created_time` or "
                f"`last_edited_time`, instead was `{stamp}`."
            )
        condition = _condition(raw, stamp, _DATE_CONDITIONS, where)
        test = _date_test(*condition, where)
        return lambda page: test(page[stamp])
    key = raw.get("property")
    if not isinstance(key, str):
        raise _validation(f"body failed validation: {where}.property should be defined.")
    schema = data_source.schema_by_name_or_id(key)
    if schema is None:
        raise _validation(f"Could not find property with name or id: {key}")
    kind, name = schema["type"], schema["name"]
    # Notion lets a rich_text filter apply to any text-like property (title, url …).
    given = next((k for k in raw if k in _CONDITIONS), None)
    compatible = given == kind or (given == "rich_text" and kind in _TEXT_TYPES)
    if given is None or not compatible:
        raise _validation(
            f"body failed validation: {where} on property `{name}` ({kind}) should use a "
            f"`{kind}` condition, instead was `{given}`."
        )
    operator, operand = _condition(raw, given, _CONDITIONS[kind], where)

    def read(page: dict[str, Any]) -> Any:
        prop = page["properties"][name]
        return _plain_value(kind, prop[kind])

    if kind in ("date", "created_time", "last_edited_time"):
        date_test = _date_test(operator, operand, where)
        return lambda page: date_test(read(page))
    test = _value_test(kind, operator, operand, where)
    return lambda page: test(read(page))


def _condition(
    raw: Mapping[str, Any], kind: str, allowed: tuple[str, ...], where: str
) -> tuple[str, Any]:
    body = raw.get(kind)
    if not isinstance(body, Mapping) or len(body) != 1:
        raise _validation(f"body failed validation: {where}.{kind} should have one condition.")
    operator, operand = next(iter(body.items()))
    if operator not in allowed:
        raise _validation(
            f"body failed validation: {where}.{kind}.{operator} is not a supported condition "
            f"(use one of {', '.join(allowed)})."
        )
    return operator, operand


def _value_test(kind: str, operator: str, operand: Any, where: str) -> Callable[[Any], bool]:
    if operator == "is_empty":
        return lambda v: v in (None, "", [])
    if operator == "is_not_empty":
        return lambda v: v not in (None, "", [])
    if kind == "number":
        if isinstance(operand, bool) or not isinstance(operand, int | float):
            raise _validation(
                f"body failed validation: {where}.number.{operator} should be a number."
            )
        ops: dict[str, Callable[[Any], bool]] = {
            "equals": lambda v: v is not None and v == operand,
            "does_not_equal": lambda v: v != operand,
            "greater_than": lambda v: v is not None and v > operand,
            "less_than": lambda v: v is not None and v < operand,
            "greater_than_or_equal_to": lambda v: v is not None and v >= operand,
            "less_than_or_equal_to": lambda v: v is not None and v <= operand,
        }
        return ops[operator]
    if kind == "checkbox":
        if not isinstance(operand, bool):
            raise _validation(
                f"body failed validation: {where}.checkbox.{operator} should be a boolean."
            )
        return (lambda v: v is operand) if operator == "equals" else (lambda v: v is not operand)
    if not isinstance(operand, str):
        raise _validation(f"body failed validation: {where}.{kind}.{operator} should be a string.")
    if kind == "multi_select":
        if operator == "contains":
            return lambda v: operand in v
        return lambda v: operand not in v
    text_ops: dict[str, Callable[[Any], bool]] = {
        "equals": lambda v: v == operand,
        "does_not_equal": lambda v: v != operand,
        "contains": lambda v: v is not None and operand.casefold() in v.casefold(),
        "does_not_contain": lambda v: v is None or operand.casefold() not in v.casefold(),
        "starts_with": lambda v: v is not None and v.startswith(operand),
        "ends_with": lambda v: v is not None and v.endswith(operand),
    }
    return text_ops[operator]


def _comparable(value: date | datetime, as_date: bool) -> date | datetime:
    if as_date:
        return value.date() if isinstance(value, datetime) else value
    if isinstance(value, datetime):
        return value
    return datetime(value.year, value.month, value.day, tzinfo=UTC)


def _date_test(operator: str, operand: Any, where: str) -> Callable[[Any], bool]:
    if operator == "is_empty":
        return lambda v: v is None
    if operator == "is_not_empty":
        return lambda v: v is not None
    target = _parse_date(operand, f"{where}.{operator}")
    # A date-only operand compares calendar days, as Notion does; a date-time compares instants.
    as_date = not isinstance(target, datetime)
    target = _comparable(target, as_date)
    compare: dict[str, Callable[[Any, Any], bool]] = {
        "equals": lambda a, b: a == b,
        "before": lambda a, b: a < b,
        "after": lambda a, b: a > b,
        "on_or_before": lambda a, b: a <= b,
        "on_or_after": lambda a, b: a >= b,
    }
    check = compare[operator]

    def test(value: Any) -> bool:
        if value is None:
            return False
        return check(_comparable(_parse_date(value, where), as_date), target)

    return test


def _apply_sort(
    data_source: _DataSource, pages: list[_Page], sort: Any, where: str, state: NotionState
) -> list[_Page]:
    if not isinstance(sort, Mapping):
        raise _validation(f"body failed validation: {where} should be an object.")
    direction = sort.get("direction", "ascending")
    if direction not in ("ascending", "descending"):
        raise _validation(
            f"body failed validation: {where}.direction should be `ascending` or `descending`."
        )
    descending = direction == "descending"
    if "timestamp" in sort:
        stamp = sort["timestamp"]
        if stamp not in ("created_time", "last_edited_time"):
            raise _validation(
                f"body failed validation: {where}.timestamp should be `created_time` or "
                f"`last_edited_time`."
            )

        def stamp_key(page: _Page) -> tuple[datetime, int]:
            return (page.created if stamp == "created_time" else page.edited, page.seq)

        return sorted(pages, key=stamp_key, reverse=descending)
    key = sort.get("property")
    schema = data_source.schema_by_name_or_id(key) if isinstance(key, str) else None
    if schema is None:
        raise _validation(f"Could not find sort property with name or id: {key}")
    name, kind = schema["name"], schema["type"]
    option_order = {
        option["name"]: index
        for index, option in enumerate(schema.get(kind, {}).get("options", []))
    }

    def value_of(page: _Page) -> Any:
        if kind in _READ_ONLY_TYPES:
            return page.created if kind == "created_time" else page.edited
        value = _plain_value(kind, page.properties[name][kind])
        if value in (None, "", []):
            return None
        if kind in ("select", "status"):
            return option_order.get(value, len(option_order))
        if kind == "date":
            return _comparable(_parse_date(value, where), False)
        if isinstance(value, str):
            return value.casefold()
        if isinstance(value, list):
            return ",".join(value)
        return value

    present = [page for page in pages if value_of(page) is not None]
    missing = [page for page in pages if value_of(page) is None]
    # Empty values go last in either direction, as in Notion.
    return sorted(present, key=value_of, reverse=descending) + missing


# ---------------------------------------------------------------------------------------------
# HTTP app


class _DropAfterApply(Response):
    """Starts a 200 answer, then closes the connection (the change is already stored)."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise DroppedConnection("notion: connection dropped after applying (sandbox fault)")


def create_notion_app(state: NotionState) -> FastAPI:
    """Build the Notion sub-app (mounted under ``/notion``) serving `state`.

    Routes (all under ``/v1``, each requiring ``Authorization: Bearer sandbox-notion-token``
    and ``Notion-Version: 2025-09-03``): ``GET databases/{id}``, ``GET data_sources/{id}``,
    ``POST data_sources/{id}/query``, ``POST pages``, ``GET/PATCH pages/{id}``,
    ``GET blocks/{id}``, ``GET/PATCH blocks/{id}/children``, ``POST search``, ``GET users/me``.
    """
    app = FastAPI(title="moltbot sandbox: notion", docs_url=None, redoc_url=None)

    @app.exception_handler(NotionAPIError)
    async def notion_error(request: Request, exc: NotionAPIError) -> Response:
        return error_response(exc.status, exc.message, exc.code)

    @app.exception_handler(StarletteHTTPException)
    async def unknown_route(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code in (404, 405):
            return error_response(400, "Invalid request URL.", "invalid_request_url")
        return error_response(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def bad_parameters(request: Request, exc: RequestValidationError) -> Response:
        return error_response(400, f"body failed validation: {exc.errors()}", "validation_error")

    def guard(request: Request) -> None:
        # Object URLs point at this sandbox, whose address only a request tells.
        state._site = str(request.base_url).rstrip("/")
        if request.headers.get("authorization") != f"Bearer {SANDBOX_NOTION_TOKEN}":
            raise NotionAPIError(401, "API token is invalid.", "unauthorized")
        version = request.headers.get("notion-version")
        if version != NOTION_VERSION:
            shown = "undefined" if version is None else f'"{version}"'
            raise NotionAPIError(
                400,
                f"Notion-Version header failed validation: the moltbot sandbox speaks "
                f'`"{NOTION_VERSION}"`, instead was `{shown}`.',
                "invalid_request",
            )
        wait = state.limiter.acquire(SANDBOX_NOTION_TOKEN)
        if wait is not None:
            response_wait = max(1, math.ceil(wait))
            raise _RateLimited(response_wait)

    def answer(request: Request, payload: dict[str, Any]) -> Response:
        fault = state._take_after_apply(request.method, relative_path(request.scope))
        if fault is not None and fault.kind == "drop":
            return _DropAfterApply()
        if fault is not None:
            response = error_response(
                fault.status, "Internal error after applying (injected by the moltbot sandbox)."
            )
            if fault.retry_after is not None:
                response.headers["Retry-After"] = str(fault.retry_after)
            return response
        return JSONResponse({**payload, "request_id": str(uuid.uuid4())})

    @app.exception_handler(_RateLimited)
    async def rate_limited(request: Request, exc: _RateLimited) -> Response:
        response = error_response(
            429, "You have been rate limited. Please try again in a few minutes.", "rate_limited"
        )
        response.headers["Retry-After"] = str(exc.retry_after)
        return response

    guarded = [Depends(guard)]

    @app.get("/v1/users/me", dependencies=guarded)
    async def me(request: Request) -> Response:
        return answer(
            request,
            {
                **_user(),
                "name": "moltbot sandbox",
                "avatar_url": None,
                "type": "bot",
                "bot": {"owner": {"type": "workspace", "workspace": True}},
            },
        )

    @app.get("/v1/databases/{database_id}", dependencies=guarded)
    async def get_database(database_id: str, request: Request) -> Response:
        with state._lock:
            payload = state._database_json(state._get_database(database_id))
        return answer(request, payload)

    @app.get("/v1/data_sources/{data_source_id}", dependencies=guarded)
    async def get_data_source(data_source_id: str, request: Request) -> Response:
        with state._lock:
            payload = state._data_source_json(state._get_data_source(data_source_id))
        return answer(request, payload)

    @app.post("/v1/data_sources/{data_source_id}/query", dependencies=guarded)
    async def query(data_source_id: str, request: Request) -> Response:
        body = await read_json_object(request, _invalid_body)
        with state._lock:
            payload = state._query(data_source_id, body)
        return answer(request, payload)

    @app.post("/v1/pages", dependencies=guarded)
    async def create_page(request: Request) -> Response:
        body = await read_json_object(request, _invalid_body)
        with state._lock:
            payload = state._page_json(state._create_page(body))
        return answer(request, payload)

    @app.get("/v1/pages/{page_id}", dependencies=guarded)
    async def get_page(page_id: str, request: Request) -> Response:
        with state._lock:
            payload = state._page_json(state._get_page(page_id))
        return answer(request, payload)

    @app.patch("/v1/pages/{page_id}", dependencies=guarded)
    async def update_page(page_id: str, request: Request) -> Response:
        body = await read_json_object(request, _invalid_body)
        with state._lock:
            payload = state._page_json(state._update_page(page_id, body))
        return answer(request, payload)

    @app.get("/v1/blocks/{block_id}", dependencies=guarded)
    async def get_block(block_id: str, request: Request) -> Response:
        with state._lock:
            block_id = normalize_id(block_id, "block_id")
            if block_id in state._store.pages:
                payload = state._page_as_block(state._store.pages[block_id])
            elif block_id in state._store.blocks:
                payload = state._block_json(state._store.blocks[block_id])
            else:
                raise _not_found("block", block_id)
        return answer(request, payload)

    @app.get("/v1/blocks/{block_id}/children", dependencies=guarded)
    async def list_children(
        block_id: str,
        request: Request,
        start_cursor: str | None = None,
        page_size: int | None = None,
    ) -> Response:
        with state._lock:
            payload = state._list_children(block_id, start_cursor, page_size)
        return answer(request, payload)

    @app.patch("/v1/blocks/{block_id}/children", dependencies=guarded)
    async def append_children(block_id: str, request: Request) -> Response:
        body = await read_json_object(request, _invalid_body)
        with state._lock:
            created = state._append_children(block_id, body)
            results = [state._block_json(block) for block in created]
        return answer(
            request,
            {"object": "list", "results": results, "next_cursor": None, "has_more": False,
             "type": "block", "block": {}},
        )  # fmt: skip

    @app.post("/v1/search", dependencies=guarded)
    async def search(request: Request) -> Response:
        body = await read_json_object(request, _invalid_body)
        with state._lock:
            payload = state._search(body)
        return answer(request, payload)

    install_emulator(app, state.core, error_response)
    return app


class _RateLimited(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__(f"rate limited for {retry_after}s")
        self.retry_after = retry_after

"""Google Sheets v4 emulator (mounted at /sheets): spreadsheets, values, OAuth token, quotas."""

from __future__ import annotations

import copy
import json
import random
import re
import secrets
import string
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any
from urllib.parse import parse_qs

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from google.auth import exceptions as google_auth_exceptions
from google.auth import jwt as google_jwt
from starlette.exceptions import HTTPException as StarletteHTTPException

from moltbot.sandbox.kit import (
    CONTROL_PREFIX,
    EmulatorCore,
    JsonBodyProblem,
    SlidingWindowLimiter,
    install_emulator,
    read_json_object,
    relative_path,
)

SANDBOX_SHEETS_TOKEN = "sandbox-sheets-token"
SANDBOX_SERVICE_ACCOUNT_EMAIL = "moltbot-sandbox@moltbot-sandbox.iam.gserviceaccount.com"
SANDBOX_PROJECT_ID = "moltbot-sandbox"
# The identity the fixed token stands for, in quota keys.
SANDBOX_TOKEN_USER = "sandbox@moltbot.local"
DEFAULT_QUOTA_PER_MINUTE = 60
TOKEN_LIFETIME_SECONDS = 3600
DEFAULT_ROW_COUNT = 1000
DEFAULT_COLUMN_COUNT = 26

# google-auth always signs its grant assertion for this audience, whatever the token_uri says.
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_READ_SCOPES = frozenset(
    {
        "https://www.googleapis.com/auth/spreadsheets",
        "https://www.googleapis.com/auth/spreadsheets.readonly",
        "https://www.googleapis.com/auth/drive",
        "https://www.googleapis.com/auth/drive.readonly",
        "https://www.googleapis.com/auth/drive.file",
    }
)
_WRITE_SCOPES = frozenset(
    {
        "https://www.googleapis.com/auth/spreadsheets",
        "https://www.googleapis.com/auth/drive",
        "https://www.googleapis.com/auth/drive.file",
    }
)
SPREADSHEET_MIME_TYPE = "application/vnd.google-apps.spreadsheet"

# google.rpc status names of the HTTP codes Google APIs answer with.
GOOGLE_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    412: "FAILED_PRECONDITION",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
# Google's own wording, so a client's error handling is exercised with realistic text.
NOT_FOUND_MESSAGE = "Requested entity was not found."
UNAUTHENTICATED_MESSAGE = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
    "cookie or other valid authentication credential. See "
    "https://developers.google.com/identity/sign-in/web/devconsole-project."
)
INSUFFICIENT_SCOPES_MESSAGE = "Request had insufficient authentication scopes."
_QUOTA_MESSAGE = (
    "Quota exceeded for quota metric '{kind} requests' and limit '{kind} requests per minute "
    "per user' of service 'sheets.googleapis.com' for consumer 'project_number:{project}'."
)
_SANDBOX_PROJECT_NUMBER = "100000000001"


def google_error_body(
    status: int, message: str, details: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Google's error document: ``{"error": {"code", "message", "status"[, "details"]}}``."""
    error: dict[str, Any] = {
        "code": status,
        "message": message,
        "status": GOOGLE_STATUS.get(status, "UNKNOWN"),
    }
    if details:
        error["details"] = details
    return {"error": error}


def error_response(status: int, message: str) -> JSONResponse:
    """Google's error shape: ``{"error": {"code", "message", "status"}}``."""
    return JSONResponse(google_error_body(status, message), status_code=status)


class GoogleApiError(Exception):
    """Raised by the handlers; answered in Google's error shape by the app's exception handler."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        details: list[dict[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details
        self.headers = dict(headers or {})


# --- service accounts -------------------------------------------------------------------------


@dataclass(frozen=True)
class _TrustedKey:
    client_email: str
    public_pem: bytes


_trusted_lock = threading.Lock()
# Keys `sandbox_service_account_info` made in this process: every SheetsState accepts them.
_process_keys: dict[str, _TrustedKey] = {}


def generate_service_account_info(
    token_uri: str, *, client_email: str = SANDBOX_SERVICE_ACCOUNT_EMAIL
) -> dict[str, str]:
    """A complete service-account JSON key with a fresh RSA key, trusted by nobody yet.

    Use `SheetsState.trust_service_account` to make an emulator accept it; an untrusted key is
    what a wrong or revoked key looks like to a client.

    Args:
        token_uri: where google-auth posts its token grant (``{base}/sheets/token``).
        client_email: the service account's e-mail (its identity for quotas).
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    return {
        "type": "service_account",
        "project_id": SANDBOX_PROJECT_ID,
        "private_key_id": secrets.token_hex(20),
        "private_key": private_pem,
        "client_email": client_email,
        "client_id": str(random.randrange(10**20, 10**21)),
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": (
            "https://www.googleapis.com/robot/v1/metadata/x509/" + client_email.replace("@", "%40")
        ),
        "universe_domain": "googleapis.com",
    }


def _trusted_key(info: Mapping[str, Any]) -> tuple[str, _TrustedKey]:
    private_key = serialization.load_pem_private_key(
        str(info["private_key"]).encode("ascii"), password=None
    )
    public_pem = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return str(info["private_key_id"]), _TrustedKey(str(info["client_email"]), public_pem)


@cache
def _process_service_account() -> tuple[tuple[str, str], ...]:
    # Generated once per process (about 0.1 s); the token_uri is filled in per call.
    info = generate_service_account_info("")
    key_id, trusted = _trusted_key(info)
    with _trusted_lock:
        _process_keys[key_id] = trusted
    return tuple(info.items())


def sandbox_service_account_info(token_uri: str) -> dict[str, str]:
    """The sandbox's own service-account JSON key, accepted by every emulator in this process.

    The RSA key is generated once per process; saving the result in the ``sandbox-sheets`` block
    lets the real google-auth flow (signed JWT grant to ``token_uri``) run against the sandbox.

    Args:
        token_uri: the sandbox's token endpoint, ``{base_url}/sheets/token``.
    """
    info = dict(_process_service_account())
    info["token_uri"] = token_uri
    return info


# --- A1 notation ------------------------------------------------------------------------------

_CELL_REF = re.compile(r"^([A-Za-z]{0,3})(\d{0,7})$")
_PLAIN_TITLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def column_letters(index: int) -> str:
    """``0`` → ``A``, ``26`` → ``AA``."""
    letters = ""
    index += 1
    while index:
        index, remainder = divmod(index - 1, 26)
        letters = string.ascii_uppercase[remainder] + letters
    return letters


def column_index(letters: str) -> int:
    """``A`` → ``0``, ``AA`` → ``26``."""
    index = 0
    for letter in letters.upper():
        index = index * 26 + ord(letter) - ord("A") + 1
    return index - 1


def quote_title(title: str) -> str:
    """A sheet title as A1 notation writes it: quoted (quotes doubled) unless plain."""
    if _PLAIN_TITLE.match(title) and not _looks_like_cells(title):
        return title
    return "'" + title.replace("'", "''") + "'"


def _looks_like_cells(text: str) -> bool:
    return _parse_cells(text) is not None


@dataclass(frozen=True)
class _Bounds:
    """0-based inclusive cell bounds; None is open-ended (to the edge of the grid)."""

    row_start: int = 0
    row_end: int | None = None
    col_start: int = 0
    col_end: int | None = None


def _parse_cells(text: str) -> _Bounds | None:
    """``A1``, ``A1:C10``, ``A:C``, ``2:5``, ``A2:C`` → bounds; None when it is not a range."""
    first, colon, second = text.partition(":")
    start = _CELL_REF.match(first)
    end = _CELL_REF.match(second) if colon else None
    if start is None or (colon and end is None):
        return None
    l1, d1 = start.groups()
    l2, d2 = end.groups() if end is not None else ("", "")
    if "0" in (d1[:1], d2[:1]):
        return None
    if not colon:
        if not (l1 and d1):
            return None
        row, col = int(d1) - 1, column_index(l1)
        return _Bounds(row, row, col, col)
    if l1 and d1 and l2 and d2:
        rows, cols = sorted((int(d1) - 1, int(d2) - 1)), sorted(map(column_index, (l1, l2)))
        return _Bounds(rows[0], rows[1], cols[0], cols[1])
    if l1 and l2 and not d1 and not d2:
        cols = sorted(map(column_index, (l1, l2)))
        return _Bounds(0, None, cols[0], cols[1])
    if d1 and d2 and not l1 and not l2:
        rows = sorted((int(d1) - 1, int(d2) - 1))
        return _Bounds(rows[0], rows[1], 0, None)
    if l1 and d1 and l2 and not d2:
        cols = sorted(map(column_index, (l1, l2)))
        return _Bounds(int(d1) - 1, None, cols[0], cols[1])
    return None


def _split_range(text: str) -> tuple[str | None, str | None]:
    """(sheet title or None, cells part or None) of an A1 range; raises ValueError if malformed."""
    if text.startswith("'"):
        index, title = 1, []
        while index < len(text):
            char = text[index]
            if char == "'":
                if text[index + 1 : index + 2] == "'":
                    title.append("'")
                    index += 2
                    continue
                rest = text[index + 1 :]
                if not rest:
                    return "".join(title), None
                if rest.startswith("!") and len(rest) > 1:
                    return "".join(title), rest[1:]
                raise ValueError(text)
            title.append(char)
            index += 1
        raise ValueError(text)
    if "!" in text:
        title, _, cells = text.rpartition("!")
        if not title or not cells:
            raise ValueError(text)
        return title, cells
    return None, text


# --- cell values ------------------------------------------------------------------------------


def display_value(value: Any, value_input_option: str = "RAW") -> str | None:
    """What a FORMATTED_VALUE read shows for a written value; None leaves the cell unchanged.

    RAW keeps text as it is; USER_ENTERED parses what a person typing would get parsed (numbers,
    TRUE/FALSE, a leading apostrophe forcing text). Formulas are kept as text, not computed.

    Raises:
        GoogleApiError: a value that is not a string, number, boolean or null (400).
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _format_number(value)
    if isinstance(value, str):
        if value_input_option != "USER_ENTERED":
            return value
        if value.startswith("'"):
            return value[1:]
        if _NUMBER.match(value.strip()):
            return _format_number(float(value))
        if value.strip().upper() in ("TRUE", "FALSE"):
            return value.strip().upper()
        return value
    raise GoogleApiError(
        400, f"Invalid value at 'data.values' ({type(value).__name__}): {json.dumps(value)}"
    )


def _format_number(number: float) -> str:
    if number.is_integer() and abs(number) < 1e15:
        return str(int(number))
    return repr(number)


def _trim(rows: list[list[str]]) -> list[list[str]]:
    # The API drops trailing empty cells of each row and trailing empty rows.
    trimmed = []
    for row in rows:
        end = len(row)
        while end and row[end - 1] == "":
            end -= 1
        trimmed.append(row[:end])
    while trimmed and not trimmed[-1]:
        trimmed.pop()
    return trimmed


# --- state ------------------------------------------------------------------------------------


def _now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class _Sheet:
    sheet_id: int
    title: str
    row_count: int = DEFAULT_ROW_COUNT
    column_count: int = DEFAULT_COLUMN_COUNT
    rows: list[list[str]] = field(default_factory=list)

    def properties(self, index: int) -> dict[str, Any]:
        return {
            "sheetId": self.sheet_id,
            "title": self.title,
            "index": index,
            "sheetType": "GRID",
            "gridProperties": {"rowCount": self.row_count, "columnCount": self.column_count},
        }

    def used_rows(self) -> int:
        """Number of rows up to the last one holding a value."""
        for index in range(len(self.rows) - 1, -1, -1):
            if any(cell != "" for cell in self.rows[index]):
                return index + 1
        return 0

    def set_cell(self, row: int, col: int, text: str) -> None:
        if text == "" and (row >= len(self.rows) or col >= len(self.rows[row])):
            return
        while len(self.rows) <= row:
            self.rows.append([])
        cells = self.rows[row]
        if len(cells) <= col:
            cells.extend([""] * (col + 1 - len(cells)))
        cells[col] = text

    def write_rows(self, row: int, col: int, texts: list[list[str | None]]) -> None:
        """Write `texts` with its top-left cell at (row, col); None leaves a cell as it is."""
        for r, cells in enumerate(texts):
            for c, text in enumerate(cells):
                if text is not None:
                    self.set_cell(row + r, col + c, text)

    def read(self, bounds: _Bounds) -> list[list[str]]:
        row_end = self.row_count - 1 if bounds.row_end is None else bounds.row_end
        col_end = self.column_count - 1 if bounds.col_end is None else bounds.col_end
        window = self.rows[bounds.row_start : row_end + 1]
        return _trim([row[bounds.col_start : col_end + 1] for row in window])


@dataclass
class _Spreadsheet:
    spreadsheet_id: str
    title: str
    sheets: list[_Sheet]
    locale: str = "en_US"
    time_zone: str = "Asia/Seoul"
    created_time: str = field(default_factory=_now_rfc3339)
    modified_time: str = field(default_factory=_now_rfc3339)

    def sheet(self, title: str) -> _Sheet | None:
        return next((sheet for sheet in self.sheets if sheet.title == title), None)

    def touch(self) -> None:
        self.modified_time = _now_rfc3339()

    def metadata(self) -> dict[str, Any]:
        return {
            "spreadsheetId": self.spreadsheet_id,
            "properties": {
                "title": self.title,
                "locale": self.locale,
                "autoRecalc": "ON_CHANGE",
                "timeZone": self.time_zone,
            },
            "sheets": [
                {"properties": sheet.properties(index)} for index, sheet in enumerate(self.sheets)
            ],
            "spreadsheetUrl": f"https://docs.google.com/spreadsheets/d/{self.spreadsheet_id}/edit",
        }

    def drive_file(self) -> dict[str, str]:
        return {
            "kind": "drive#file",
            "id": self.spreadsheet_id,
            "name": self.title,
            "mimeType": SPREADSHEET_MIME_TYPE,
            "createdTime": self.created_time,
            "modifiedTime": self.modified_time,
        }


@dataclass(frozen=True)
class SpreadsheetSnapshot:
    """A copy of one spreadsheet as the emulator holds it.

    Attributes:
        spreadsheet_id: its id.
        title: its title.
        sheets: sheet title → values as a whole-sheet read shows them, in tab order.
        grid: sheet title → (rowCount, columnCount).
    """

    spreadsheet_id: str
    title: str
    sheets: dict[str, list[list[str]]]
    grid: dict[str, tuple[int, int]]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as served by ``GET /sheets/_sandbox/spreadsheets``."""
        return {
            "spreadsheetId": self.spreadsheet_id,
            "title": self.title,
            "sheets": [
                {"title": title, "rowCount": rows, "columnCount": cols, "values": values}
                for (title, values), (rows, cols) in zip(
                    self.sheets.items(), self.grid.values(), strict=True
                )
            ],
        }


@dataclass
class _AfterApplyFault:
    status: int
    remaining: int
    method: str | None
    pattern: re.Pattern[str] | None


@dataclass(frozen=True)
class _Grant:
    user: str
    scopes: frozenset[str]
    expires_at: float


class SheetsState:
    """In-memory state of the Google Sheets emulator, shared by its handlers and by Python callers.

    Spreadsheets belong to the sandbox, not to a user: any accepted credential sees them all.
    A fresh (or reset) state has no spreadsheet; create them with `create_spreadsheet` or over
    HTTP with ``POST /v4/spreadsheets``. Every accessor returns a copy taken under a lock.

    Args:
        reads_per_minute: read requests allowed per user per minute (None: unlimited).
        writes_per_minute: write requests allowed per user per minute (None: unlimited).
        seed: seed of spreadsheet ids and of probabilistic faults, for repeatable runs.

    Attributes:
        core: the request log and route faults (see `moltbot.sandbox.kit.EmulatorCore`).
    """

    def __init__(
        self,
        *,
        reads_per_minute: int | None = DEFAULT_QUOTA_PER_MINUTE,
        writes_per_minute: int | None = DEFAULT_QUOTA_PER_MINUTE,
        seed: int | None = None,
    ) -> None:
        self.core = EmulatorCore("sheets", seed=seed)
        self._seed = seed
        self._lock = threading.RLock()
        self._default_quota = (reads_per_minute, writes_per_minute)
        self._spreadsheets: dict[str, _Spreadsheet] = {}
        self._after_apply: list[_AfterApplyFault] = []
        self._trusted: dict[str, _TrustedKey] = {}
        # Issued access tokens outlive `reset`, as Google's do: a client keeps its token.
        self._grants: dict[str, _Grant] = {}
        self._random = random.Random(seed)
        self._reads = SlidingWindowLimiter(reads_per_minute)
        self._writes = SlidingWindowLimiter(writes_per_minute)

    # -- lifecycle and configuration

    def reset(self) -> None:
        """Back to the fresh state: no spreadsheets, no requests logged, no faults, full quota."""
        self.core.reset()
        with self._lock:
            self._spreadsheets.clear()
            self._after_apply.clear()
            self._trusted.clear()
            self._random = random.Random(self._seed)
            reads, writes = self._default_quota
            self._reads = SlidingWindowLimiter(reads)
            self._writes = SlidingWindowLimiter(writes)

    def set_quota(
        self,
        *,
        reads_per_minute: int | None = DEFAULT_QUOTA_PER_MINUTE,
        writes_per_minute: int | None = DEFAULT_QUOTA_PER_MINUTE,
    ) -> None:
        """Change the per-user quotas (None: unlimited) and forget the requests counted so far.

        `reset` restores the quotas the state was built with.
        """
        with self._lock:
            self._reads = SlidingWindowLimiter(reads_per_minute)
            self._writes = SlidingWindowLimiter(writes_per_minute)

    def fail_after_apply(
        self,
        count: int = 1,
        *,
        status: int = 500,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        """Make the next `count` matching writes take effect, then answer `status` anyway.

        This is the failure that makes blind retries of a create duplicate data: the client sees
        an error although the rows were appended. (Faults injected through `core` answer before
        the handler runs, so nothing is applied.)

        Args:
            count: how many writes it applies to.
            status: the error status answered (5xx).
            method: only requests with this method (POST, PUT); None for any write.
            path: a regular expression searched in the request path; None for any.
        """
        if count < 1 or not 400 <= status <= 599:
            raise ValueError("count must be at least 1 and status a 4xx/5xx code")
        with self._lock:
            self._after_apply.append(
                _AfterApplyFault(
                    status,
                    count,
                    method.upper() if method else None,
                    re.compile(path) if path else None,
                )
            )

    def trust_service_account(self, info: Mapping[str, Any]) -> None:
        """Accept token grants signed with this service-account key (until `reset`)."""
        key_id, trusted = _trusted_key(info)
        with self._lock:
            self._trusted[key_id] = trusted

    # -- seeding and reading

    def create_spreadsheet(
        self,
        title: str = "Untitled spreadsheet",
        sheets: Mapping[str, Sequence[Sequence[Any]]] | None = None,
        *,
        spreadsheet_id: str | None = None,
    ) -> str:
        """Create a spreadsheet and return its id.

        Args:
            title: the spreadsheet's title.
            sheets: sheet title → rows of values (written as RAW: strings stay text, numbers
                show formatted, other objects as their ``str``); none gives one empty
                ``Sheet1``. The grid is 1000 × 26 or larger when the values need it.
            spreadsheet_id: a fixed id instead of a random one.

        Raises:
            ValueError: the id is taken.
        """
        with self._lock:
            spreadsheet_id = spreadsheet_id or self._new_id()
            if spreadsheet_id in self._spreadsheets:
                raise ValueError(f"spreadsheet {spreadsheet_id!r} already exists")
            spreadsheet = _Spreadsheet(spreadsheet_id, title, [])
            for sheet_title, rows in (sheets or {"Sheet1": []}).items():
                spreadsheet.sheets.append(self._new_sheet(spreadsheet, sheet_title, rows))
            self._spreadsheets[spreadsheet_id] = spreadsheet
            return spreadsheet_id

    def add_sheet(self, spreadsheet_id: str, title: str, rows: Sequence[Sequence[Any]] = ()) -> int:
        """Add a sheet (tab) with these values at the end; return its sheetId.

        Raises:
            KeyError: no such spreadsheet.
            ValueError: a sheet with this title exists.
        """
        with self._lock:
            spreadsheet = self._get(spreadsheet_id)
            if spreadsheet.sheet(title) is not None:
                raise ValueError(f"sheet {title!r} already exists in {spreadsheet_id!r}")
            sheet = self._new_sheet(spreadsheet, title, rows)
            spreadsheet.sheets.append(sheet)
            spreadsheet.touch()
            return sheet.sheet_id

    def set_values(
        self, spreadsheet_id: str, sheet_title: str, rows: Sequence[Sequence[Any]]
    ) -> None:
        """Replace every value of a sheet (RAW), growing its grid when needed.

        Raises:
            KeyError: no such spreadsheet or sheet.
        """
        with self._lock:
            spreadsheet = self._get(spreadsheet_id)
            sheet = self._get_sheet(spreadsheet, sheet_title)
            sheet.rows = []
            self._fill(sheet, rows)
            spreadsheet.touch()

    def values(self, spreadsheet_id: str, sheet_title: str) -> list[list[str]]:
        """A sheet's values as a whole-sheet read shows them (ragged, trailing blanks dropped).

        Raises:
            KeyError: no such spreadsheet or sheet.
        """
        with self._lock:
            sheet = self._get_sheet(self._get(spreadsheet_id), sheet_title)
            return sheet.read(_Bounds())

    def sheet_titles(self, spreadsheet_id: str) -> list[str]:
        """The sheet titles in tab order.

        Raises:
            KeyError: no such spreadsheet.
        """
        with self._lock:
            return [sheet.title for sheet in self._get(spreadsheet_id).sheets]

    def grid_size(self, spreadsheet_id: str, sheet_title: str) -> tuple[int, int]:
        """(rowCount, columnCount) of a sheet, as its metadata reports them."""
        with self._lock:
            sheet = self._get_sheet(self._get(spreadsheet_id), sheet_title)
            return sheet.row_count, sheet.column_count

    def find_spreadsheets(self, title: str) -> list[str]:
        """Ids of the spreadsheets with exactly this title, oldest first."""
        with self._lock:
            return [s.spreadsheet_id for s in self._spreadsheets.values() if s.title == title]

    @property
    def spreadsheets(self) -> dict[str, SpreadsheetSnapshot]:
        """Every spreadsheet by id, as a snapshot."""
        with self._lock:
            return {
                spreadsheet_id: SpreadsheetSnapshot(
                    spreadsheet_id,
                    spreadsheet.title,
                    {sheet.title: sheet.read(_Bounds()) for sheet in spreadsheet.sheets},
                    {
                        sheet.title: (sheet.row_count, sheet.column_count)
                        for sheet in spreadsheet.sheets
                    },
                )
                for spreadsheet_id, spreadsheet in self._spreadsheets.items()
            }

    # -- internals used by the handlers

    def _new_id(self) -> str:
        alphabet = string.ascii_letters + string.digits + "-_"
        while True:
            candidate = "".join(self._random.choice(alphabet) for _ in range(44))
            if candidate not in self._spreadsheets:
                return candidate

    def _new_sheet(
        self,
        spreadsheet: _Spreadsheet,
        title: str,
        rows: Sequence[Sequence[Any]] = (),
        *,
        sheet_id: int | None = None,
        row_count: int = DEFAULT_ROW_COUNT,
        column_count: int = DEFAULT_COLUMN_COUNT,
    ) -> _Sheet:
        taken = {sheet.sheet_id for sheet in spreadsheet.sheets}
        if sheet_id is None:
            sheet_id = 0 if not taken else self._random.randrange(1, 2**31 - 1)
            while sheet_id in taken:
                sheet_id = self._random.randrange(1, 2**31 - 1)
        sheet = _Sheet(sheet_id, title, row_count, column_count)
        self._fill(sheet, rows)
        return sheet

    @staticmethod
    def _fill(sheet: _Sheet, rows: Sequence[Sequence[Any]]) -> None:
        for r, row in enumerate(rows):
            for c, value in enumerate(row):
                # Seeding from Python is lenient: a date or a numpy number is shown as its text.
                plain = value is None or isinstance(value, str | int | float | bool)
                text = display_value(value) if plain else str(value)
                if text is not None:
                    sheet.set_cell(r, c, text)
        sheet.row_count = max(sheet.row_count, len(rows))
        sheet.column_count = max(sheet.column_count, max((len(row) for row in rows), default=0))

    def _get(self, spreadsheet_id: str) -> _Spreadsheet:
        try:
            return self._spreadsheets[spreadsheet_id]
        except KeyError:
            raise KeyError(f"no spreadsheet {spreadsheet_id!r}") from None

    @staticmethod
    def _get_sheet(spreadsheet: _Spreadsheet, title: str) -> _Sheet:
        sheet = spreadsheet.sheet(title)
        if sheet is None:
            raise KeyError(f"no sheet {title!r} in spreadsheet {spreadsheet.spreadsheet_id!r}")
        return sheet

    def _spreadsheet(self, spreadsheet_id: str) -> _Spreadsheet:
        spreadsheet = self._spreadsheets.get(spreadsheet_id)
        if spreadsheet is None:
            raise GoogleApiError(404, NOT_FOUND_MESSAGE)
        return spreadsheet

    def _issue_token(self, assertion: str) -> tuple[str, _Grant]:
        try:
            header = google_jwt.decode_header(assertion)
        except (ValueError, google_auth_exceptions.GoogleAuthError):
            raise _OAuthError("invalid_grant", "Invalid JWT: malformed assertion.") from None
        key_id = header.get("kid")
        with _trusted_lock:
            trusted = _process_keys.get(key_id)
        with self._lock:
            trusted = trusted or self._trusted.get(key_id)
        if trusted is None:
            raise _OAuthError("invalid_grant", "Invalid JWT Signature.")
        try:
            claims = google_jwt.decode(
                assertion,
                certs={key_id: trusted.public_pem},
                audience=GOOGLE_TOKEN_AUDIENCE,
                clock_skew_in_seconds=30,
            )
        except (ValueError, google_auth_exceptions.GoogleAuthError):
            raise _OAuthError(
                "invalid_grant",
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable "
                "timeframe. Check your iat and exp values in the JWT claim.",
            ) from None
        if claims.get("iss") != trusted.client_email:
            raise _OAuthError("invalid_grant", "Invalid JWT Signature.")
        scopes = frozenset(str(claims.get("scope", "")).split())
        if not scopes:
            raise _OAuthError("invalid_scope", "Invalid OAuth scope or ID token audience provided.")
        token = "ya29.sandbox-" + secrets.token_urlsafe(32)
        grant = _Grant(trusted.client_email, scopes, time.monotonic() + TOKEN_LIFETIME_SECONDS)
        with self._lock:
            self._grants[token] = grant
        return token, grant

    def _authorize(self, request: Request, *, write: bool, charge: bool = True) -> str:
        """The caller's identity; counts the request against its read or write quota if `charge`.

        Raises:
            GoogleApiError: 401 for a missing or unknown token, 403 for missing scopes, 429 when
                the quota is used up.
        """
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise GoogleApiError(401, UNAUTHENTICATED_MESSAGE)
        if token == SANDBOX_SHEETS_TOKEN:
            user, scopes = SANDBOX_TOKEN_USER, _WRITE_SCOPES
        else:
            with self._lock:
                grant = self._grants.get(token)
            if grant is None or grant.expires_at < time.monotonic():
                raise GoogleApiError(401, UNAUTHENTICATED_MESSAGE)
            user, scopes = grant.user, grant.scopes
        needed = _WRITE_SCOPES if write else _READ_SCOPES
        if not scopes & needed:
            raise GoogleApiError(403, INSUFFICIENT_SCOPES_MESSAGE)
        if charge:
            self._charge(user, write=write)
        return user

    def _charge(self, user: str, *, write: bool) -> None:
        with self._lock:
            limiter = self._writes if write else self._reads
        if limiter.acquire(user) is None:
            return
        kind = "Write" if write else "Read"
        # Sheets names no wait on a quota 429 (no Retry-After): clients back off on their own.
        raise GoogleApiError(
            429,
            _QUOTA_MESSAGE.format(kind=kind, project=_SANDBOX_PROJECT_NUMBER),
            details=[
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "RATE_LIMIT_EXCEEDED",
                    "domain": "googleapis.com",
                    "metadata": {
                        "quota_metric": f"sheets.googleapis.com/{kind.lower()}_requests",
                        "quota_limit": f"{kind}RequestsPerMinutePerUser",
                        "service": "sheets.googleapis.com",
                        "consumer": f"projects/{_SANDBOX_PROJECT_NUMBER}",
                    },
                }
            ],
        )

    def _after_apply_status(self, method: str, path: str) -> int | None:
        with self._lock:
            for fault in self._after_apply:
                if fault.method is not None and fault.method != method:
                    continue
                if fault.pattern is not None and not fault.pattern.search(path):
                    continue
                fault.remaining -= 1
                if fault.remaining == 0:
                    self._after_apply.remove(fault)
                return fault.status
        return None

    # -- value operations (called with the lock held)

    def _resolve(self, spreadsheet: _Spreadsheet, text: str) -> tuple[_Sheet, _Bounds]:
        """The sheet and cell bounds an A1 range names; 400 "Unable to parse range" otherwise."""
        try:
            title, cells = _split_range(text)
        except ValueError:
            raise GoogleApiError(400, f"Unable to parse range: {text}") from None
        if title is None:
            sheet = spreadsheet.sheet(text)
            if sheet is not None:
                return sheet, _Bounds()
            bounds = _parse_cells(text)
            if bounds is None or not spreadsheet.sheets:
                raise GoogleApiError(400, f"Unable to parse range: {text}")
            return spreadsheet.sheets[0], bounds
        sheet = spreadsheet.sheet(title)
        bounds = _Bounds() if cells is None else _parse_cells(cells)
        if sheet is None or bounds is None:
            raise GoogleApiError(400, f"Unable to parse range: {text}")
        return sheet, bounds

    @staticmethod
    def _check_grid(sheet: _Sheet, text: str, bounds: _Bounds) -> None:
        rows = [bounds.row_start] + ([bounds.row_end] if bounds.row_end is not None else [])
        cols = [bounds.col_start] + ([bounds.col_end] if bounds.col_end is not None else [])
        if max(rows) >= sheet.row_count or max(cols) >= sheet.column_count:
            raise GoogleApiError(
                400,
                f"Range ({text}) exceeds grid limits. Max rows: {sheet.row_count}, "
                f"max columns: {sheet.column_count}",
            )

    def _value_range(
        self, spreadsheet: _Spreadsheet, text: str, major_dimension: str
    ) -> dict[str, Any]:
        sheet, bounds = self._resolve(spreadsheet, text)
        self._check_grid(sheet, text, bounds)
        values = sheet.read(bounds)
        if major_dimension == "COLUMNS":
            values = _transpose(values)
        answer: dict[str, Any] = {
            "range": _a1(sheet, bounds),
            "majorDimension": major_dimension,
        }
        if values:
            answer["values"] = values
        return answer

    def _write(
        self,
        spreadsheet: _Spreadsheet,
        text: str,
        values: Any,
        major_dimension: str,
        value_input_option: str,
        include_values: bool,
    ) -> dict[str, Any]:
        sheet, bounds = self._resolve(spreadsheet, text)
        if bounds.row_start == bounds.row_end and bounds.col_start == bounds.col_end:
            # One cell is where the data starts, not a box it must fit in (as Google does).
            bounds = _Bounds(bounds.row_start, None, bounds.col_start, None)
        rows = _matrix(values, major_dimension)
        height = len(rows)
        width = max((len(row) for row in rows), default=0)
        if bounds.row_end is not None and bounds.row_start + height - 1 > bounds.row_end:
            raise GoogleApiError(
                400,
                f"Requested writing within range [{text}], but tried writing to row "
                f"[{bounds.row_start + height}]",
            )
        if bounds.col_end is not None and bounds.col_start + width - 1 > bounds.col_end:
            raise GoogleApiError(
                400,
                f"Requested writing within range [{text}], but tried writing to column "
                f"[{column_letters(bounds.col_start + width - 1)}]",
            )
        written = _written_box(bounds.row_start, bounds.col_start, rows)
        self._check_grid(sheet, _a1(sheet, written), written)
        texts = [[display_value(value, value_input_option) for value in row] for row in rows]
        sheet.write_rows(bounds.row_start, bounds.col_start, texts)
        spreadsheet.touch()
        return _update_answer(spreadsheet, sheet, written, rows, include_values)

    def _append(
        self,
        spreadsheet: _Spreadsheet,
        text: str,
        values: Any,
        major_dimension: str,
        value_input_option: str,
        insert_rows: bool,
        include_values: bool,
    ) -> dict[str, Any]:
        sheet, bounds = self._resolve(spreadsheet, text)
        rows = _matrix(values, major_dimension)
        texts = [[display_value(value, value_input_option) for value in row] for row in rows]
        height = len(texts)
        width = max((len(row) for row in texts), default=0)
        # The table is the sheet's data down to its last used row; new rows go right below it.
        used = sheet.used_rows()
        start = max(used, bounds.row_start)
        table_width = max((len(row) for row in sheet.rows[:used]), default=0)
        if insert_rows:
            sheet.row_count += height
        sheet.row_count = max(sheet.row_count, start + height)
        sheet.column_count = max(sheet.column_count, bounds.col_start + width)
        sheet.write_rows(start, bounds.col_start, texts)
        spreadsheet.touch()
        written = _written_box(start, bounds.col_start, rows)
        updates = _update_answer(spreadsheet, sheet, written, rows, include_values)
        answer: dict[str, Any] = {"spreadsheetId": spreadsheet.spreadsheet_id, "updates": updates}
        if used:
            answer["tableRange"] = _a1(sheet, _Bounds(0, used - 1, 0, max(table_width, 1) - 1))
        return answer

    def _batch_update(self, spreadsheet: _Spreadsheet, requests: Any) -> list[dict[str, Any]]:
        if not isinstance(requests, list) or not requests:
            raise GoogleApiError(400, "Must specify at least one request.")
        # All or nothing, as the real API: work on a copy and keep it only if every request passes.
        draft = copy.deepcopy(spreadsheet)
        replies = [self._apply_request(draft, index, item) for index, item in enumerate(requests)]
        spreadsheet.sheets = draft.sheets
        spreadsheet.title = draft.title
        spreadsheet.touch()
        return replies

    def _apply_request(self, draft: _Spreadsheet, index: int, item: Any) -> dict[str, Any]:
        if not isinstance(item, dict) or len(item) != 1:
            raise GoogleApiError(400, f"Invalid requests[{index}]: exactly one kind of request.")
        [(kind, body)] = item.items()
        where = f"Invalid requests[{index}].{kind}"
        if not isinstance(body, dict):
            raise GoogleApiError(400, f"{where}: the request body must be an object.")
        if kind == "addSheet":
            properties = body.get("properties") or {}
            title = properties.get("title") or f"Sheet{len(draft.sheets) + 1}"
            if draft.sheet(title) is not None:
                raise GoogleApiError(
                    400,
                    f'{where}: A sheet with the name "{title}" already exists. '
                    "Please enter another name.",
                )
            sheet_id = properties.get("sheetId")
            if sheet_id is not None and any(s.sheet_id == sheet_id for s in draft.sheets):
                raise GoogleApiError(
                    400, f"{where}: A sheet with the id {sheet_id} already exists."
                )
            grid = properties.get("gridProperties") or {}
            sheet = self._new_sheet(
                draft,
                title,
                sheet_id=sheet_id,
                row_count=int(grid.get("rowCount", DEFAULT_ROW_COUNT)),
                column_count=int(grid.get("columnCount", DEFAULT_COLUMN_COUNT)),
            )
            position = properties.get("index")
            position = len(draft.sheets) if position is None else int(position)
            draft.sheets.insert(position, sheet)
            return {"addSheet": {"properties": sheet.properties(draft.sheets.index(sheet))}}
        if kind == "deleteSheet":
            sheet = self._sheet_by_id(draft, body.get("sheetId"), where)
            if len(draft.sheets) == 1:
                raise GoogleApiError(
                    400, f"{where}: You can't remove all the sheets in a document."
                )
            draft.sheets.remove(sheet)
            return {}
        if kind == "updateSheetProperties":
            properties = body.get("properties") or {}
            sheet = self._sheet_by_id(draft, properties.get("sheetId"), where)
            fields = {f.strip() for f in str(body.get("fields", "")).split(",") if f.strip()}
            if not fields:
                raise GoogleApiError(400, f"{where}: At least one field must be updated.")
            grid = properties.get("gridProperties") or {}
            if _selected(fields, "title") and properties.get("title"):
                title = properties["title"]
                other = draft.sheet(title)
                if other is not None and other is not sheet:
                    raise GoogleApiError(
                        400, f'{where}: A sheet with the name "{title}" already exists.'
                    )
                sheet.title = title
            if _selected(fields, "gridProperties.rowCount") and "rowCount" in grid:
                sheet.row_count = int(grid["rowCount"])
                del sheet.rows[sheet.row_count :]
            if _selected(fields, "gridProperties.columnCount") and "columnCount" in grid:
                sheet.column_count = int(grid["columnCount"])
                sheet.rows = [row[: sheet.column_count] for row in sheet.rows]
            if _selected(fields, "index") and properties.get("index") is not None:
                draft.sheets.remove(sheet)
                draft.sheets.insert(int(properties["index"]), sheet)
            return {}
        raise GoogleApiError(
            400, f"Invalid requests[{index}]: the sandbox does not emulate '{kind}' requests."
        )

    @staticmethod
    def _sheet_by_id(draft: _Spreadsheet, sheet_id: Any, where: str) -> _Sheet:
        sheet = next((s for s in draft.sheets if s.sheet_id == sheet_id), None)
        if sheet is None:
            raise GoogleApiError(400, f"{where}: No grid with id: {sheet_id}")
        return sheet

    def _create_from_body(self, body: Mapping[str, Any]) -> _Spreadsheet:
        properties = body.get("properties") or {}
        sheets = body.get("sheets") or [{}]
        with self._lock:
            spreadsheet = _Spreadsheet(
                self._new_id(),
                properties.get("title") or "Untitled spreadsheet",
                [],
                locale=properties.get("locale") or "en_US",
                time_zone=properties.get("timeZone") or "Asia/Seoul",
            )
            for index, item in enumerate(sheets):
                sheet_properties = (item or {}).get("properties") or {}
                title = sheet_properties.get("title") or f"Sheet{index + 1}"
                if spreadsheet.sheet(title) is not None:
                    raise GoogleApiError(400, f'A sheet with the name "{title}" already exists.')
                grid = sheet_properties.get("gridProperties") or {}
                spreadsheet.sheets.append(
                    self._new_sheet(
                        spreadsheet,
                        title,
                        sheet_id=sheet_properties.get("sheetId"),
                        row_count=int(grid.get("rowCount", DEFAULT_ROW_COUNT)),
                        column_count=int(grid.get("columnCount", DEFAULT_COLUMN_COUNT)),
                    )
                )
            self._spreadsheets[spreadsheet.spreadsheet_id] = spreadsheet
            return spreadsheet


class _OAuthError(Exception):
    """A refused token grant, answered in OAuth's own shape (not Google's API error shape)."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


def _selected(fields: set[str], name: str) -> bool:
    """True when the update mask `fields` covers `name` (``gridProperties.rowCount``)."""
    masks = {mask.replace("/", ".") for mask in fields}
    return "*" in masks or any(name == mask or name.startswith(mask + ".") for mask in masks)


def _a1(sheet: _Sheet, bounds: _Bounds) -> str:
    row_end = sheet.row_count - 1 if bounds.row_end is None else bounds.row_end
    col_end = sheet.column_count - 1 if bounds.col_end is None else bounds.col_end
    start = f"{column_letters(bounds.col_start)}{bounds.row_start + 1}"
    end = f"{column_letters(col_end)}{row_end + 1}"
    cells = start if start == end else f"{start}:{end}"
    return f"{quote_title(sheet.title)}!{cells}"


def _written_box(row: int, col: int, rows: list[list[Any]]) -> _Bounds:
    """The cells `rows` cover from (row, col); at least one, as Google names an empty write's."""
    height = len(rows)
    width = max((len(cells) for cells in rows), default=0)
    return _Bounds(row, row + max(height, 1) - 1, col, col + max(width, 1) - 1)


def _update_answer(
    spreadsheet: _Spreadsheet,
    sheet: _Sheet,
    written: _Bounds,
    rows: list[list[Any]],
    include_values: bool,
) -> dict[str, Any]:
    """Google's ``UpdateValuesResponse`` for `rows` written into `written`."""
    answer: dict[str, Any] = {
        "spreadsheetId": spreadsheet.spreadsheet_id,
        "updatedRange": _a1(sheet, written),
        "updatedRows": len(rows),
        "updatedColumns": max((len(cells) for cells in rows), default=0),
        "updatedCells": sum(len(cells) for cells in rows),
    }
    if include_values:
        answer["updatedData"] = {
            "range": _a1(sheet, written),
            "majorDimension": "ROWS",
            "values": sheet.read(written),
        }
    return answer


def _transpose(rows: list[list[str]]) -> list[list[str]]:
    width = max((len(row) for row in rows), default=0)
    columns = [[row[c] if c < len(row) else "" for row in rows] for c in range(width)]
    return _trim(columns)


def _matrix(values: Any, major_dimension: str | None) -> list[list[Any]]:
    if values is None:
        return []
    if not isinstance(values, list) or not all(isinstance(row, list) for row in values):
        raise GoogleApiError(400, "Invalid value at 'data.values': a list of lists is required.")
    if major_dimension == "COLUMNS":
        height = max((len(column) for column in values), default=0)
        return [
            [column[r] if r < len(column) else None for column in values] for r in range(height)
        ]
    return values


def _option(request: Request, name: str, default: str | None, allowed: Sequence[str]) -> str:
    value = request.query_params.get(name) or default
    if value is None:
        raise GoogleApiError(400, f"'{name}' is required but not specified")
    if value not in allowed:
        raise GoogleApiError(
            400, f"Invalid value at '{name}' ({value}): expected one of {', '.join(allowed)}"
        )
    return value


def _flag(request: Request, name: str) -> bool:
    return request.query_params.get(name, "false").lower() == "true"


def _invalid_json(problem: JsonBodyProblem) -> GoogleApiError:
    if problem == "not an object":
        return GoogleApiError(400, "Invalid JSON payload received. Expected an object.")
    return GoogleApiError(400, "Invalid JSON payload received.")


_DRIVE_NAME_QUERY = re.compile(r"""\bname\s*=\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')""")


def create_sheets_app(state: SheetsState) -> FastAPI:
    """Build the sub-app serving `state`.

    Routes (below the ``/sheets`` mount): ``POST /token``; ``POST /v4/spreadsheets``;
    ``GET /v4/spreadsheets/{id}``; ``POST /v4/spreadsheets/{id}:batchUpdate`` (addSheet,
    deleteSheet, updateSheetProperties); ``GET|PUT /v4/spreadsheets/{id}/values/{range}``;
    ``POST …/values/{range}:append`` and ``:clear``; ``GET …/values:batchGet``;
    ``POST …/values:batchUpdate``; Drive's ``GET|POST /drive/v3/files`` and
    ``GET /drive/v3/files/{id}`` (open and create by title); ``GET /_sandbox/spreadsheets``.
    """
    app = FastAPI(title="moltbot sandbox: Google Sheets v4", docs_url=None, redoc_url=None)

    @app.exception_handler(GoogleApiError)
    async def google_error(_: Request, exc: GoogleApiError) -> JSONResponse:
        return JSONResponse(
            google_error_body(exc.status, exc.message, exc.details),
            status_code=exc.status,
            headers=exc.headers,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = NOT_FOUND_MESSAGE if exc.status_code == 404 else str(exc.detail)
        return error_response(exc.status_code, message)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(400, f"Invalid request: {exc.errors()[0].get('msg', 'bad input')}")

    @app.exception_handler(_OAuthError)
    async def oauth_error(_: Request, exc: _OAuthError) -> JSONResponse:
        return JSONResponse({"error": exc.error, "error_description": exc.description}, 400)

    @app.post("/token")
    async def token(request: Request) -> JSONResponse:
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        grant_type = form.get("grant_type", [""])[0]
        if grant_type != JWT_BEARER_GRANT:
            raise _OAuthError("unsupported_grant_type", f"Invalid grant_type: {grant_type}")
        access_token, _ = state._issue_token(form.get("assertion", [""])[0])
        return JSONResponse(
            {
                "access_token": access_token,
                "expires_in": TOKEN_LIFETIME_SECONDS,
                "token_type": "Bearer",
            }
        )

    @app.post("/v4/spreadsheets")
    async def create_spreadsheet(request: Request) -> JSONResponse:
        state._authorize(request, write=True)
        spreadsheet = state._create_from_body(await read_json_object(request, _invalid_json))
        with state._lock:
            return JSONResponse(spreadsheet.metadata())

    @app.get("/v4/spreadsheets/{spreadsheet_id}")
    async def get_spreadsheet(spreadsheet_id: str, request: Request) -> JSONResponse:
        state._authorize(request, write=False)
        with state._lock:
            return JSONResponse(state._spreadsheet(spreadsheet_id).metadata())

    @app.post("/v4/spreadsheets/{target}")
    async def spreadsheet_action(target: str, request: Request) -> JSONResponse:
        spreadsheet_id, _, action = target.rpartition(":")
        if action != "batchUpdate":
            raise GoogleApiError(404, NOT_FOUND_MESSAGE)
        state._authorize(request, write=True)
        body = await read_json_object(request, _invalid_json)
        with state._lock:
            spreadsheet = state._spreadsheet(spreadsheet_id)
            replies = state._batch_update(spreadsheet, body.get("requests"))
            answer: dict[str, Any] = {"spreadsheetId": spreadsheet_id, "replies": replies}
            if body.get("includeSpreadsheetInResponse"):
                answer["updatedSpreadsheet"] = spreadsheet.metadata()
        return _after_apply(state, request, answer)

    @app.get("/v4/spreadsheets/{spreadsheet_id}/values:batchGet")
    async def batch_get(spreadsheet_id: str, request: Request) -> JSONResponse:
        state._authorize(request, write=False)
        major = _option(request, "majorDimension", "ROWS", ("ROWS", "COLUMNS"))
        ranges = request.query_params.getlist("ranges")
        with state._lock:
            spreadsheet = state._spreadsheet(spreadsheet_id)
            value_ranges = [state._value_range(spreadsheet, text, major) for text in ranges]
        return JSONResponse({"spreadsheetId": spreadsheet_id, "valueRanges": value_ranges})

    @app.post("/v4/spreadsheets/{spreadsheet_id}/values:batchUpdate")
    async def batch_update_values(spreadsheet_id: str, request: Request) -> JSONResponse:
        state._authorize(request, write=True)
        body = await read_json_object(request, _invalid_json)
        option = body.get("valueInputOption")
        if option not in ("RAW", "USER_ENTERED"):
            raise GoogleApiError(400, "'valueInputOption' is required but not specified")
        data = body.get("data") or []
        if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
            raise GoogleApiError(400, "Invalid value at 'data': a list of value ranges.")
        with state._lock:
            spreadsheet = state._spreadsheet(spreadsheet_id)
            # Validate every range before writing any, so a bad one changes nothing.
            for item in data:
                state._resolve(spreadsheet, str(item.get("range", "")))
            responses = [
                state._write(
                    spreadsheet,
                    str(item.get("range", "")),
                    item.get("values"),
                    item.get("majorDimension") or "ROWS",
                    option,
                    bool(body.get("includeValuesInResponse")),
                )
                for item in data
            ]
        answer = {
            "spreadsheetId": spreadsheet_id,
            "totalUpdatedRows": sum(r["updatedRows"] for r in responses),
            "totalUpdatedColumns": max((r["updatedColumns"] for r in responses), default=0),
            "totalUpdatedCells": sum(r["updatedCells"] for r in responses),
            "totalUpdatedSheets": len({r["updatedRange"].rpartition("!")[0] for r in responses}),
            "responses": responses,
        }
        return _after_apply(state, request, answer)

    @app.get("/v4/spreadsheets/{spreadsheet_id}/values/{range_text:path}")
    async def get_values(spreadsheet_id: str, range_text: str, request: Request) -> JSONResponse:
        state._authorize(request, write=False)
        major = _option(request, "majorDimension", "ROWS", ("ROWS", "COLUMNS"))
        with state._lock:
            spreadsheet = state._spreadsheet(spreadsheet_id)
            return JSONResponse(state._value_range(spreadsheet, range_text, major))

    @app.put("/v4/spreadsheets/{spreadsheet_id}/values/{range_text:path}")
    async def put_values(spreadsheet_id: str, range_text: str, request: Request) -> JSONResponse:
        state._authorize(request, write=True)
        option = _option(request, "valueInputOption", None, ("RAW", "USER_ENTERED"))
        body = await read_json_object(request, _invalid_json)
        with state._lock:
            spreadsheet = state._spreadsheet(spreadsheet_id)
            answer = state._write(
                spreadsheet,
                range_text,
                body.get("values"),
                body.get("majorDimension") or "ROWS",
                option,
                _flag(request, "includeValuesInResponse"),
            )
        return _after_apply(state, request, answer)

    @app.post("/v4/spreadsheets/{spreadsheet_id}/values/{range_action:path}")
    async def values_action(
        spreadsheet_id: str, range_action: str, request: Request
    ) -> JSONResponse:
        range_text, _, action = range_action.rpartition(":")
        if action not in ("append", "clear") or not range_text:
            raise GoogleApiError(404, NOT_FOUND_MESSAGE)
        state._authorize(request, write=True)
        if action == "clear":
            with state._lock:
                spreadsheet = state._spreadsheet(spreadsheet_id)
                sheet, bounds = state._resolve(spreadsheet, range_text)
                for r, row in enumerate(sheet.rows):
                    if r < bounds.row_start or (bounds.row_end is not None and r > bounds.row_end):
                        continue
                    end = len(row) if bounds.col_end is None else bounds.col_end + 1
                    row[bounds.col_start : end] = [""] * len(row[bounds.col_start : end])
                spreadsheet.touch()
                answer = {"spreadsheetId": spreadsheet_id, "clearedRange": _a1(sheet, bounds)}
            return _after_apply(state, request, answer)
        option = _option(request, "valueInputOption", None, ("RAW", "USER_ENTERED"))
        insert = _option(request, "insertDataOption", "OVERWRITE", ("OVERWRITE", "INSERT_ROWS"))
        body = await read_json_object(request, _invalid_json)
        with state._lock:
            spreadsheet = state._spreadsheet(spreadsheet_id)
            answer = state._append(
                spreadsheet,
                range_text,
                body.get("values"),
                body.get("majorDimension") or "ROWS",
                option,
                insert == "INSERT_ROWS",
                _flag(request, "includeValuesInResponse"),
            )
        return _after_apply(state, request, answer)

    # Drive has quotas of its own, not modelled: its routes are not counted.
    @app.get("/drive/v3/files")
    async def list_files(request: Request) -> JSONResponse:
        state._authorize(request, write=False, charge=False)
        query = request.query_params.get("q", "")
        named = _DRIVE_NAME_QUERY.search(query)
        title = None
        if named is not None:
            title = re.sub(r"\\(.)", r"\1", named.group(1) or named.group(2) or "")
        with state._lock:
            files = [
                spreadsheet.drive_file()
                for spreadsheet in state._spreadsheets.values()
                if title is None or spreadsheet.title == title
            ]
        return JSONResponse({"kind": "drive#fileList", "incompleteSearch": False, "files": files})

    @app.get("/drive/v3/files/{file_id}")
    async def get_file(file_id: str, request: Request) -> JSONResponse:
        state._authorize(request, write=False, charge=False)
        with state._lock:
            spreadsheet = state._spreadsheets.get(file_id)
            if spreadsheet is None:
                raise GoogleApiError(404, f"File not found: {file_id}.")
            return JSONResponse(spreadsheet.drive_file())

    @app.post("/drive/v3/files")
    async def create_file(request: Request) -> JSONResponse:
        state._authorize(request, write=True, charge=False)
        body = await read_json_object(request, _invalid_json)
        if body.get("mimeType") != SPREADSHEET_MIME_TYPE:
            raise GoogleApiError(400, "The sandbox's Drive only creates Google Sheets files.")
        spreadsheet = state._create_from_body({"properties": {"title": body.get("name")}})
        with state._lock:
            file = spreadsheet.drive_file()
        return JSONResponse({k: file[k] for k in ("kind", "id", "name", "mimeType")})

    @app.get(f"{CONTROL_PREFIX}/spreadsheets")
    def list_spreadsheets() -> JSONResponse:
        return JSONResponse([s.to_dict() for s in state.spreadsheets.values()])

    install_emulator(app, state.core, error_response)
    return app


def _after_apply(state: SheetsState, request: Request, answer: dict[str, Any]) -> JSONResponse:
    """The write's answer, or the error of a `fail_after_apply` fault now that it is applied."""
    status = state._after_apply_status(request.method, relative_path(request.scope))
    if status is not None:
        return error_response(status, f"Internal error encountered. (request {uuid.uuid4()})")
    return JSONResponse(answer)

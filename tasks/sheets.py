"""Google Sheets tasks: a whole worksheet in one read, many rows in one append, a range update."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import gspread
import numpy as np
import pandas as pd
import requests
from google.auth import exceptions as google_auth_exceptions
from gspread.utils import absolute_range_name, rowcol_to_a1
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger
from urllib3.exceptions import MaxRetryError, NewConnectionError

from blocks.sheets import GoogleSheetsCredentials
from moltbot.errors import InputError, ServiceError
from moltbot.masking import mask_text
from moltbot.retrying import RetryPolicy, call_with_retries, retry_after_seconds

T = TypeVar("T")

SHEET_ROW = "sheet_row"
"""Name of the index of `read_worksheet`'s frames: the row number shown in the sheet (2, 3, …)."""

_ERROR_TEXT_LIMIT = 300
_UNPARSABLE_RANGE = "Unable to parse range"


def block_label(credentials: GoogleSheetsCredentials, block_name: str | None = None) -> str:
    """The block's name for messages: `block_name`, else its saved name, else ``unsaved``."""
    return block_name or getattr(credentials, "_block_document_name", None) or "unsaved"


def classify_sheets_error(exc: Exception, block: str) -> ServiceError | None:
    """Turn what gspread and google-auth raise into a `ServiceError` naming the block.

    Transient: 408, 429, 5xx, a token endpoint failure google-auth calls retryable, no answer
    (connection refused or dropped, timeout). Everything else is permanent. A 5xx, a timeout or
    a connection lost while waiting for the answer may have been applied (`maybe_applied`).
    Returns None for exceptions that are not service failures (bugs), which the caller re-raises.
    """
    prefix = f"Google Sheets block {block!r}"
    if isinstance(exc, gspread.exceptions.APIError):
        response = exc.response
        status = response.status_code
        if exc.code == -1:  # the body was not Google's JSON error (a proxy's page, say)
            text = f"{status} {response.reason}: {response.text.strip()[:_ERROR_TEXT_LIMIT]}"
        else:
            text = f"{status} {exc.error.get('status', 'UNKNOWN')}: {exc.error.get('message', '')}"
        return ServiceError.for_status(
            mask_text(f"{prefix}: {text}"),
            status,
            retry_after=retry_after_seconds(response.headers.get("Retry-After")),
        )
    if isinstance(exc, google_auth_exceptions.RefreshError):
        reason = str(exc.args[0]) if exc.args else type(exc).__name__
        return ServiceError(
            mask_text(f"{prefix}: the token endpoint refused the service account: {reason}"),
            transient=exc.retryable,
        )
    if isinstance(exc, google_auth_exceptions.TransportError | requests.RequestException):
        # google-auth wraps the requests exception of a failed token request.
        wrapped = exc.args[0] if exc.args and isinstance(exc.args[0], Exception) else None
        cause = (
            wrapped if isinstance(exc, google_auth_exceptions.TransportError) and wrapped else exc
        )
        late = " in time" if isinstance(cause, requests.Timeout) else ""
        what = f"no answer from the Sheets API{late}"
        return ServiceError(
            f"{prefix}: {what} ({type(cause).__name__})",
            transient=True,
            # A token request changes nothing; an API request whose answer was lost may have.
            maybe_applied=isinstance(exc, requests.RequestException) and _may_have_arrived(exc),
        )
    return None


def _may_have_arrived(exc: requests.RequestException) -> bool:
    """Whether a request that got no answer may have reached the API all the same: not when
    the connection was never made, yes after a timeout or a connection lost while waiting."""
    if isinstance(exc, requests.ConnectTimeout):
        return False
    if isinstance(exc, requests.ConnectionError):
        reason = exc.args[0] if exc.args else None
        never_made = isinstance(reason, MaxRetryError) and isinstance(
            reason.reason, NewConnectionError
        )
        return not never_made
    return isinstance(exc, requests.ReadTimeout | requests.exceptions.ChunkedEncodingError)


def _call(
    operation: Callable[[], T],
    block: str,
    describe: str,
    policy: RetryPolicy | None,
    before_retry: Callable[[ServiceError], None] | None = None,
) -> T:
    return call_with_retries(
        operation,
        classify=lambda exc: classify_sheets_error(exc, block),
        describe=f"sheets {block!r}: {describe}",
        policy=policy,
        before_retry=before_retry,
    )


def read_worksheet(
    credentials: GoogleSheetsCredentials,
    spreadsheet_id: str,
    worksheet: str,
    *,
    block_name: str | None = None,
    policy: RetryPolicy | None = None,
) -> pd.DataFrame:
    """Read a whole worksheet into a DataFrame with a single values request.

    The first row gives the column names (surrounding spaces removed; a blank header cell, or
    data right of the header, is named after its column letter: ``column_D``). Every value is a
    string as the sheet shows it, rows are padded to the header width, and completely empty rows
    are skipped. The index, named `SHEET_ROW`, is each row's number in the sheet, so messages
    can say "row 7". A sheet with only a header row gives an empty frame with those columns; an
    empty sheet gives an empty frame without columns.

    Raises:
        InputError: the spreadsheet does not exist, the worksheet does not exist (the message
            lists the worksheets; only then is a second, metadata request made), or the header
            has duplicate names.
        ServiceError: the service refused or failed, after retries of transient failures.
    """
    block = block_label(credentials, block_name)
    http = credentials.get_client().http_client
    target = absolute_range_name(worksheet)
    with _naming_bad_input(http, spreadsheet_id, worksheet, block, policy):
        answer = _call(
            lambda: http.values_get(spreadsheet_id, target),
            block,
            f"read {worksheet!r}",
            policy,
        )
    return worksheet_frame(answer.get("values", []), f"worksheet {worksheet!r}")


def worksheet_frame(values: Sequence[Sequence[Any]], label: str = "worksheet") -> pd.DataFrame:
    """The DataFrame `read_worksheet` makes of a values answer (header row first).

    Raises:
        InputError: duplicate column names in the header (named in the message).
    """
    if not values:
        return pd.DataFrame(index=pd.Index([], dtype="int64", name=SHEET_ROW))
    header = [str(cell).strip() for cell in values[0]]
    width = max(len(row) for row in values)
    header += [""] * (width - len(header))
    columns = [
        name or f"column_{rowcol_to_a1(1, number)[:-1]}"
        for number, name in enumerate(header, start=1)
    ]
    duplicates = sorted({name for name in columns if columns.count(name) > 1})
    if duplicates:
        named = ", ".join(repr(name) for name in duplicates)
        raise InputError(f"{label}: the header row repeats the column name(s) {named}")
    records, numbers = [], []
    for number, row in enumerate(values[1:], start=2):
        cells = [str(cell) for cell in row] + [""] * (width - len(row))
        if any(cells):
            records.append(cells)
            numbers.append(number)
    return pd.DataFrame(
        records,
        columns=columns,
        index=pd.Index(numbers, dtype="int64", name=SHEET_ROW),
        dtype=str,
    )


def append_rows(
    credentials: GoogleSheetsCredentials,
    spreadsheet_id: str,
    worksheet: str,
    rows: Sequence[Sequence[Any]],
    *,
    value_input_option: str = "RAW",
    block_name: str | None = None,
    policy: RetryPolicy | None = None,
) -> dict[str, Any]:
    """Append all `rows` below the worksheet's data with a single append request.

    An append is not idempotent. A 429 means the request was refused, so it is retried as is.
    After a 5xx or no answer the rows may have arrived all the same: the sheet is read again
    first, and when its last rows already equal `rows` the append is not sent again (the answer
    then has ``"alreadyApplied": True``). The check compares what the sheet shows, so a
    USER_ENTERED value that Sheets reformats (a formula, a date) can fail to match and be re-sent;
    appending rows identical to the sheet's current last rows right after such a failure would
    be taken as done.

    Args:
        credentials: the Sheets block.
        spreadsheet_id: the spreadsheet's id.
        worksheet: the worksheet's title.
        rows: the rows; None and NaN become empty cells, numpy numbers plain numbers, dates
            ISO text.
        value_input_option: ``RAW`` (text stays text) or ``USER_ENTERED`` (parsed as typed).
        block_name: the block's name for messages, when it was not loaded by name.
        policy: retry settings; `RetryPolicy.from_settings()` when None.

    Returns:
        The Sheets API's append answer (``updates.updatedRange`` says where the rows went).

    Raises:
        InputError: no such spreadsheet or worksheet.
        ServiceError: the service refused or failed, after retries.
    """
    values = [[_cell_value(value) for value in row] for row in rows]
    if not values:
        return {"spreadsheetId": spreadsheet_id, "updates": {"updatedRows": 0, "updatedCells": 0}}
    block = block_label(credentials, block_name)
    http = credentials.get_client().http_client
    target = absolute_range_name(worksheet)
    arrived = False

    def send() -> dict[str, Any]:
        if arrived:
            return {
                "spreadsheetId": spreadsheet_id,
                "updates": {"updatedRows": len(values), "updatedCells": sum(map(len, values))},
                "alreadyApplied": True,
            }
        return http.values_append(
            spreadsheet_id,
            target,
            params={"valueInputOption": value_input_option, "insertDataOption": "INSERT_ROWS"},
            body={"values": values},
        )

    def check_arrival(failure: ServiceError) -> None:
        nonlocal arrived
        if failure.status is not None and failure.status < 500:
            return  # refused (429, 408): nothing was written
        try:
            arrived = rows_at_end(
                credentials,
                spreadsheet_id,
                worksheet,
                values,
                value_input_option=value_input_option,
                block_name=block_name,
                policy=policy,
            )
        except ServiceError as exc:
            raise ServiceError(
                f"{failure}; the rows may have been appended, and checking failed too ({exc}), "
                "so they were not sent again",
                transient=False,
                status=failure.status,
                maybe_applied=True,
            ) from exc

    with _naming_bad_input(http, spreadsheet_id, worksheet, block, policy):
        return _call(
            send, block, f"append {len(values)} rows to {worksheet!r}", policy, check_arrival
        )


def rows_at_end(
    credentials: GoogleSheetsCredentials,
    spreadsheet_id: str,
    worksheet: str,
    rows: Sequence[Sequence[Any]],
    *,
    value_input_option: str = "RAW",
    block_name: str | None = None,
    policy: RetryPolicy | None = None,
) -> bool:
    """Whether the worksheet's last rows already equal `rows` (one read): how an append whose
    answer was lost is looked up before it is sent again.

    Raises:
        ServiceError: the read failed after retries.
    """
    values = [[_cell_value(value) for value in row] for row in rows]
    http = credentials.get_client().http_client
    shown = _call(
        lambda: http.values_get(spreadsheet_id, absolute_range_name(worksheet)).get("values", []),
        block_label(credentials, block_name),
        f"check whether the append to {worksheet!r} arrived",
        policy,
    )
    return bool(values) and _ends_with(shown, values, value_input_option)


def update_range(
    credentials: GoogleSheetsCredentials,
    spreadsheet_id: str,
    worksheet: str,
    cells: str,
    values: Sequence[Sequence[Any]],
    *,
    value_input_option: str = "RAW",
    block_name: str | None = None,
    policy: RetryPolicy | None = None,
) -> dict[str, Any]:
    """Write `values` into `cells` (``A2:C3``, or ``B5`` as the top-left cell) with one request.

    Writing the same values twice gives the same sheet, so every transient failure is retried.

    Returns:
        The Sheets API's update answer (``updatedRange``, ``updatedCells`` …).

    Raises:
        InputError: no such spreadsheet or worksheet.
        ServiceError: the service refused (e.g. 400 for a range outside the grid) or failed.
    """
    block = block_label(credentials, block_name)
    http = credentials.get_client().http_client
    body = {"values": [[_cell_value(value) for value in row] for row in values]}
    with _naming_bad_input(http, spreadsheet_id, worksheet, block, policy):
        return _call(
            lambda: http.values_update(
                spreadsheet_id,
                absolute_range_name(worksheet, cells),
                params={"valueInputOption": value_input_option},
                body=body,
            ),
            block,
            f"update {worksheet!r}!{cells}",
            policy,
        )


@contextmanager
def _naming_bad_input(
    http: gspread.HTTPClient,
    spreadsheet_id: str,
    worksheet: str,
    block: str,
    policy: RetryPolicy | None,
) -> Iterator[None]:
    """Re-raise a failure that stands for an unknown spreadsheet or worksheet as `InputError`."""
    try:
        yield
    except ServiceError as exc:
        bad_input = _bad_input(exc, http, spreadsheet_id, worksheet, block, policy)
        if bad_input is None:
            raise
        raise bad_input from exc


def _bad_input(
    exc: ServiceError,
    http: gspread.HTTPClient,
    spreadsheet_id: str,
    worksheet: str,
    block: str,
    policy: RetryPolicy | None,
) -> InputError | None:
    """The `InputError` a failure stands for (unknown spreadsheet or worksheet), if any."""
    prefix = f"Google Sheets block {block!r}"
    if exc.status == 404:
        detail = str(exc).removeprefix(f"{prefix}: ")
        return InputError(f"{prefix}: no spreadsheet {spreadsheet_id!r} ({detail})")
    if exc.status == 400 and _UNPARSABLE_RANGE in str(exc):
        # Only now is the metadata fetched, so the usual path stays one request.
        titles = _worksheet_titles(http, spreadsheet_id, block, policy)
        if worksheet not in titles:
            listed = ", ".join(repr(title) for title in titles) or "none"
            return InputError(
                f"{prefix}: spreadsheet {spreadsheet_id!r} has no worksheet {worksheet!r} "
                f"(worksheets: {listed})"
            )
    return None


def _worksheet_titles(
    http: gspread.HTTPClient, spreadsheet_id: str, block: str, policy: RetryPolicy | None
) -> list[str]:
    metadata = _call(
        lambda: http.fetch_sheet_metadata(spreadsheet_id),
        block,
        "list worksheets",
        policy,
    )
    return [sheet["properties"]["title"] for sheet in metadata.get("sheets", [])]


def _cell_value(value: Any) -> str | int | float | bool:
    """A JSON value the Sheets API accepts for one cell."""
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return ""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else ""
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return str(value)


def _ends_with(shown: list[list[str]], sent: list[list[Any]], value_input_option: str) -> bool:
    if len(shown) < len(sent):
        return False
    tail = shown[len(shown) - len(sent) :]
    return all(
        _same_row(row, expected, value_input_option)
        for row, expected in zip(tail, sent, strict=True)
    )


def _same_row(shown: list[str], sent: list[Any], value_input_option: str) -> bool:
    width = max(len(shown), len(sent))
    shown = shown + [""] * (width - len(shown))
    sent = sent + [""] * (width - len(sent))
    return all(
        _same_cell(cell, value, value_input_option) for cell, value in zip(shown, sent, strict=True)
    )


def _same_cell(shown: str, sent: Any, value_input_option: str) -> bool:
    """True when a cell showing `shown` is what writing `sent` gives (FORMATTED_VALUE)."""
    if isinstance(sent, bool):
        return shown.upper() == ("TRUE" if sent else "FALSE")
    if isinstance(sent, str) and (value_input_option == "RAW" or not sent.strip()):
        return shown == sent
    if isinstance(sent, str) and sent.startswith("'"):
        return shown == sent[1:]
    try:
        return math.isclose(float(shown.replace(",", "")), float(sent), rel_tol=1e-9)
    except ValueError:
        return shown == str(sent)


@task(name="read-worksheet", task_run_name="read-worksheet-{worksheet}", cache_policy=NO_CACHE)
def load_worksheet(
    credentials: GoogleSheetsCredentials,
    spreadsheet_id: str,
    worksheet: str,
    block_name: str | None = None,
) -> pd.DataFrame:
    """Load a whole worksheet as a DataFrame in one request (see `read_worksheet`).

    Args:
        credentials: the Sheets block, loaded once by the flow.
        spreadsheet_id: the spreadsheet's id (from its URL).
        worksheet: the worksheet's (tab's) title.
        block_name: the block's name for messages, when it was not loaded by name.

    Returns:
        One row per non-empty sheet row, all values strings, indexed by sheet row number.
    """
    frame = read_worksheet(credentials, spreadsheet_id, worksheet, block_name=block_name)
    get_run_logger().info("read %d rows from worksheet %r", len(frame), worksheet)
    return frame

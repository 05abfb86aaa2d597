"""Google Forms response sheets: parsing Forms timestamps, choosing the rows after a watermark."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd

from moltbot.errors import InputError

# What Google Forms writes in the timestamp column, by the spreadsheet's locale:
#   Korean:          2026. 11. 24 오후 3:12:45   (also with a dot after the day, or 24-hour)
#   English (US):    11/24/2026 15:12:45         (also 3:12:45 PM)
#   English (UK…):   24/11/2026 15:12:45         (day first; see `day_first`)
#   ISO-like:        2026-11-24 15:12:45         (a sheet formatted or filled by a script)
_KOREAN = (
    r"^\s*(?P<year>\d{4})\s*\.\s*(?P<month>\d{1,2})\s*\.\s*(?P<day>\d{1,2})\s*\.?\s+"
    r"(?:(?P<half>오전|오후)\s*)?(?P<hour>\d{1,2}):(?P<minute>\d{2})(?::(?P<second>\d{2}))?\s*$"
)
_SLASHED = (
    r"^\s*(?P<first>\d{1,2})/(?P<second_part>\d{1,2})/(?P<year>\d{4}),?\s+"
    r"(?P<hour>\d{1,2}):(?P<minute>\d{2})(?::(?P<second>\d{2}))?\s*(?P<half>[AaPp]\.?[Mm]\.?)?\s*$"
)
_ISO = (
    r"^\s*(?P<year>\d{4})-(?P<month>\d{1,2})-(?P<day>\d{1,2})[T ]"
    r"(?P<hour>\d{1,2}):(?P<minute>\d{2})(?::(?P<second>\d{2}))?\s*$"
)
_AFTERNOON = {"오후", "PM", "P.M."}


def parse_form_timestamps(
    values: pd.Series, timezone: str, *, day_first: bool | None = None
) -> pd.Series:
    """Parse a Forms timestamp column into UTC times; NaT where a cell cannot be read.

    The whole column is parsed at once (vectorised, fine for 100,000 rows). Slashed dates are
    read month first, as Forms writes them for US English, unless `day_first` is set, or the
    column itself shows it (a first number above 12 somewhere). A 12-hour time needs its
    오전/오후 or AM/PM; a time that does not exist (25:00, 2/30) is unreadable, not guessed.

    Args:
        values: the column as the sheet shows it (strings).
        timezone: the IANA timezone the sheet's times are in (the spreadsheet's setting).
        day_first: force the order of slashed dates; None detects it from the column.

    Returns:
        A `datetime64[ns, UTC]` series on the same index.
    """
    text = values.astype("string").fillna("")
    # Each format is tried only on the cells the previous ones did not match: a sheet is
    # almost always in one format, so the other patterns then run on (nearly) nothing.
    korean = text.str.extract(_KOREAN)
    rest = text[korean["year"].isna()]
    slashed = rest.str.extract(_SLASHED).reindex(text.index)
    rest = rest[slashed["year"].reindex(rest.index).isna()]
    iso = rest.str.extract(_ISO).reindex(text.index)
    first = pd.to_numeric(slashed["first"], errors="coerce")
    other = pd.to_numeric(slashed["second_part"], errors="coerce")
    if day_first is None:
        day_first = bool((first > 12).any()) and not bool((other > 12).any())
    slashed_fields = slashed.assign(
        month=other if day_first else first, day=first if day_first else other
    )
    parts = pd.DataFrame(index=values.index)
    for name in ("year", "month", "day", "hour", "minute", "second"):
        parts[name] = (
            pd.to_numeric(korean[name], errors="coerce")
            .fillna(pd.to_numeric(slashed_fields[name], errors="coerce"))
            .fillna(pd.to_numeric(iso[name], errors="coerce"))
        )
    parts["second"] = parts["second"].where(parts["year"].isna(), parts["second"].fillna(0))
    half = korean["half"].fillna(slashed["half"]).str.upper()
    has_half = half.notna()
    afternoon = half.isin(_AFTERNOON)
    hour = parts["hour"]
    # 12-hour clock: 12 AM is 0 h, 12 PM is 12 h; an hour above 12 with AM/PM is unreadable.
    twelve = hour.where(~has_half | (hour.between(1, 12)))
    parts["hour"] = (twelve % 12 + afternoon.astype(int) * 12).where(has_half, hour)
    fields = parts[["year", "month", "day", "hour", "minute", "second"]].astype("Float64")
    complete = (
        fields.notna().all(axis=1)
        & fields["hour"].between(0, 23)
        & fields["minute"].between(0, 59)
        & fields["second"].between(0, 59)
    ).fillna(False)
    local = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns]")
    if complete.any():
        # Impossible dates (2/30) become NaT here rather than rolling over into March.
        local[complete] = pd.to_datetime(fields[complete].astype("int64"), errors="coerce")
    localized = local.dt.tz_localize(timezone, ambiguous="NaT", nonexistent="NaT")
    return localized.dt.tz_convert("UTC")


def timestamp_column_of(frame: pd.DataFrame, timestamp_column: str | None) -> str:
    """The column holding the Forms timestamp: `timestamp_column`, or the first column.

    Raises:
        InputError: the sheet has no columns, or the named column is missing.
    """
    if len(frame.columns) == 0:
        raise InputError("the sheet is empty: not even a header row")
    if timestamp_column is None:
        return str(frame.columns[0])
    if timestamp_column not in frame.columns:
        raise InputError(
            f"timestamp column {timestamp_column!r} is not in the sheet "
            f"(columns: {', '.join(map(str, frame.columns))})"
        )
    return timestamp_column


@dataclass(frozen=True)
class ResponseWindow:
    """The responses a run is to consume, and the watermark position to commit after it.

    Attributes:
        rows: the new rows (index: sheet row numbers), every column as the sheet shows it.
        times: their parsed UTC timestamps (NaT where unreadable), same index.
        position: the position to commit once the window is delivered; None when empty.
        start: the earliest readable timestamp in the window (None when none is readable).
        end: the latest readable timestamp in the window.
        fingerprint: a short hash of the window (row numbers and timestamp cells), stable across
            re-runs of the same window: part of idempotency keys.
        resumed: True when this is the window an earlier, unfinished run planned.
        realigned: True when the sheet no longer matches the watermark (rows deleted, sorted or
            retimed) and new rows were chosen by timestamp instead of by row number.
    """

    rows: pd.DataFrame
    times: pd.Series
    position: dict[str, Any] | None
    start: datetime | None
    end: datetime | None
    fingerprint: str
    resumed: bool = False
    realigned: bool = False

    @property
    def first_row(self) -> int | None:
        """The first sheet row of the window."""
        return int(self.rows.index.min()) if len(self.rows) else None

    @property
    def last_row(self) -> int | None:
        """The last sheet row of the window."""
        return int(self.rows.index.max()) if len(self.rows) else None

    def as_pending(self) -> dict[str, Any] | None:
        """What to hold in the watermark while the window is being delivered."""
        return None if self.position is None else dict(self.position)


def select_window(
    frame: pd.DataFrame,
    times: pd.Series,
    *,
    timestamp_column: str,
    position: dict[str, Any] | None,
    pending: dict[str, Any] | None = None,
) -> ResponseWindow:
    """Choose the rows after the watermark `position`, bounded by a `pending` window if any.

    A position is ``{"row", "cell", "time"}``: the last consumed sheet row, the text of its
    timestamp cell (an anchor: it tells whether the row is still the same one) and the latest
    readable UTC timestamp consumed so far (ISO text).

    * No position: every row is new.
    * The anchor row still shows the same timestamp: the rows below it are new (so a row edited
      after it was consumed is never counted again, and unreadable timestamps do not matter).
    * Otherwise the sheet was reorganised: rows with a later timestamp than ``time``, plus rows
      below the old row number whose timestamp is unreadable, are new.
    * A `pending` window whose anchor still holds caps the new rows at its row: a run retried
      after a failure consumes exactly the window it planned, and later rows wait for the next.

    Args:
        frame: the sheet as `tasks.sheets.read_worksheet` returns it (index: sheet rows).
        times: `parse_form_timestamps` of the timestamp column.
        timestamp_column: the column the anchors refer to.
        position: the committed watermark position, or None.
        pending: the held window's end position, or None.
    """
    cells = frame[timestamp_column].astype(str) if len(frame.columns) else pd.Series(dtype=str)
    rows_after = frame.index.to_series(index=frame.index)
    realigned = False
    if position is None:
        selected = pd.Series(True, index=frame.index)
    elif _anchored(cells, position):
        selected = rows_after > int(position["row"])
    else:
        realigned = True
        since = _utc(position.get("time"))
        unreadable_below = times.isna() & (rows_after > int(position["row"]))
        later = times > since if since is not None else rows_after > int(position["row"])
        selected = later.fillna(False) | unreadable_below
    resumed = False
    if pending is not None and _anchored(cells, pending) and selected.any():
        capped = selected & (rows_after <= int(pending["row"]))
        if capped.any():
            selected, resumed = capped, True
    rows = frame[selected.to_numpy(dtype=bool)]
    window_times = times[selected.to_numpy(dtype=bool)]
    readable = window_times.dropna()
    start = readable.min().to_pydatetime() if len(readable) else None
    end = readable.max().to_pydatetime() if len(readable) else None
    new_position: dict[str, Any] | None = None
    if len(rows):
        last_row = int(rows.index.max())
        previous = _utc(position.get("time")) if position else None
        latest = max(filter(None, (previous, end)), default=None)
        new_position = {
            "row": last_row,
            "cell": str(cells[last_row]),
            "time": latest.isoformat() if latest is not None else None,
        }
    return ResponseWindow(
        rows=rows,
        times=window_times,
        position=new_position,
        start=start,
        end=end,
        fingerprint=_fingerprint(rows.index, cells[rows.index] if len(rows) else cells.iloc[:0]),
        resumed=resumed,
        realigned=realigned,
    )


def _anchored(cells: pd.Series, mark: dict[str, Any]) -> bool:
    row = int(mark["row"])
    return row in cells.index and str(cells[row]) == str(mark.get("cell"))


def _utc(text: str | None) -> pd.Timestamp | None:
    return None if not text else pd.Timestamp(text).tz_convert("UTC")


def _fingerprint(rows: pd.Index, cells: pd.Series) -> str:
    digest = hashlib.sha256()
    for row, cell in zip(rows, cells, strict=True):
        digest.update(f"{int(row)}\x1f{cell}\x1e".encode())
    return digest.hexdigest()[:12]

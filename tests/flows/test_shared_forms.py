"""Tests of Forms timestamp parsing and of choosing the rows after a watermark (no I/O)."""

from __future__ import annotations

import pandas as pd
import pytest

from flows.shared.forms import parse_form_timestamps, select_window, timestamp_column_of
from moltbot.errors import InputError
from tasks.sheets import worksheet_frame

SEOUL = "Asia/Seoul"


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("2026. 11. 24 오후 3:12:45", "2026-11-24 06:12:45"),
        ("2026. 11. 24. 오후 3:12:45", "2026-11-24 06:12:45"),
        ("2026. 11. 24 오전 12:05:00", "2026-11-23 15:05:00"),
        ("2026. 11. 24 오후 12:05:00", "2026-11-24 03:05:00"),
        ("2026. 11. 24 15:12:45", "2026-11-24 06:12:45"),
        ("11/24/2026 15:12:45", "2026-11-24 06:12:45"),
        ("11/24/2026 3:12:45 PM", "2026-11-24 06:12:45"),
        ("11/24/2026 12:00:00 AM", "2026-11-23 15:00:00"),
        ("2026-11-24 15:12:45", "2026-11-24 06:12:45"),
        ("2026-11-24T15:12", "2026-11-24 06:12:00"),
        ("  2026. 1. 2 오전 9:00:00 ", "2026-01-02 00:00:00"),
    ],
)
def test_forms_timestamps_in_korean_us_and_iso_formats_are_read_in_the_timezone(
    cell: str, expected: str
) -> None:
    parsed = parse_form_timestamps(pd.Series([cell]), SEOUL)

    assert parsed.iloc[0] == utc(expected)


@pytest.mark.parametrize(
    "cell",
    [
        "",
        "어제 오후",
        "2026. 2. 30 오후 1:00:00",  # no such day: not rolled into March
        "11/24/2026 13:00:00 PM",  # a 12-hour clock has no 13
        "11/24/2026 25:00:00",
        "11/24/2026 10:61:00",
        "24.11.2026 10:00",
        "2026-11-24",  # Forms always writes a time
    ],
)
def test_unreadable_timestamps_are_nat_never_guessed(cell: str) -> None:
    assert pd.isna(parse_form_timestamps(pd.Series([cell]), SEOUL).iloc[0])


def test_slashed_dates_are_read_day_first_when_the_column_shows_it() -> None:
    column = pd.Series(["24/11/2026 15:00:00", "01/02/2026 10:00:00"])

    parsed = parse_form_timestamps(column, SEOUL)

    assert list(parsed) == [utc("2026-11-24 06:00"), utc("2026-02-01 01:00")]
    assert parse_form_timestamps(column.iloc[1:], SEOUL).iloc[0] == utc("2026-01-02 01:00")
    forced = parse_form_timestamps(column.iloc[1:], SEOUL, day_first=True)
    assert forced.iloc[0] == utc("2026-02-01 01:00")


def test_parsing_keeps_the_index_and_a_utc_dtype() -> None:
    column = pd.Series(["2026. 11. 24 오후 3:12:45", None], index=[7, 9])

    parsed = parse_form_timestamps(column, "UTC")

    assert list(parsed.index) == [7, 9]
    assert str(parsed.dtype) == "datetime64[ns, UTC]"
    assert parsed.iloc[0] == utc("2026-11-24 15:12:45") and pd.isna(parsed.iloc[1])


def test_the_timestamp_column_is_the_first_unless_named() -> None:
    frame = worksheet_frame([["타임스탬프", "이름"], ["2026. 11. 24 오후 3:12:45", "김"]])

    assert timestamp_column_of(frame, None) == "타임스탬프"
    assert timestamp_column_of(frame, "이름") == "이름"
    with pytest.raises(InputError, match="'제출 시각' is not in the sheet"):
        timestamp_column_of(frame, "제출 시각")
    with pytest.raises(InputError, match="empty"):
        timestamp_column_of(worksheet_frame([]), None)


# --------------------------------------------------------------------------- windows

HEADER = ["타임스탬프", "의견"]
ROWS = [
    ["2026. 11. 24 오전 9:00:00", "좋아요"],  # sheet row 2
    ["2026. 11. 24 오전 10:00:00", "보통"],  # 3
    ["언젠가", "시간이 이상한 행"],  # 4
    ["2026. 11. 24 오전 11:00:00", "별로"],  # 5
]


def sheet(rows: list[list[str]]) -> tuple[pd.DataFrame, pd.Series]:
    frame = worksheet_frame([HEADER, *rows])
    return frame, parse_form_timestamps(frame["타임스탬프"], SEOUL)


def window(rows: list[list[str]], position=None, pending=None):
    frame, times = sheet(rows)
    return select_window(
        frame, times, timestamp_column="타임스탬프", position=position, pending=pending
    )


def test_without_a_watermark_every_row_is_new_and_the_position_is_the_last_row() -> None:
    chosen = window(ROWS)

    assert list(chosen.rows.index) == [2, 3, 4, 5]
    assert (chosen.first_row, chosen.last_row) == (2, 5)
    assert chosen.start == utc("2026-11-24 00:00") and chosen.end == utc("2026-11-24 02:00")
    assert chosen.position == {
        "row": 5,
        "cell": "2026. 11. 24 오전 11:00:00",
        "time": "2026-11-24T02:00:00+00:00",
    }
    assert not chosen.resumed and not chosen.realigned


def test_rows_below_the_anchor_are_new_and_an_edited_old_row_is_not_counted_again() -> None:
    first = window(ROWS[:2])
    edited = [ROWS[0], [ROWS[1][0], "수정된 답변"], *ROWS[2:]]

    chosen = window(edited, position=first.position)

    assert list(chosen.rows.index) == [4, 5]
    assert chosen.position["row"] == 5


def test_nothing_new_gives_an_empty_window_without_a_position() -> None:
    first = window(ROWS)

    chosen = window(ROWS, position=first.position)

    assert chosen.rows.empty and chosen.position is None and chosen.as_pending() is None
    assert chosen.start is None and chosen.first_row is None


def test_a_header_only_sheet_gives_an_empty_window() -> None:
    chosen = window([])

    assert chosen.rows.empty and chosen.position is None


def test_a_held_window_is_replanned_exactly_even_when_rows_arrived_since() -> None:
    planned = window(ROWS[:2])
    later = [*ROWS, ["2026. 11. 24 오후 12:00:00", "새 답변"]]

    retried = window(later, position=None, pending=planned.as_pending())

    assert list(retried.rows.index) == [2, 3]
    assert retried.resumed
    assert retried.fingerprint == planned.fingerprint
    assert retried.position == planned.position
    after = window(later, position=retried.position)
    assert list(after.rows.index) == [4, 5, 6]


def test_a_held_window_whose_anchor_changed_is_ignored() -> None:
    planned = window(ROWS[:2])
    reordered = [ROWS[1], ROWS[0], *ROWS[2:]]

    retried = window(reordered, pending=planned.as_pending())

    assert not retried.resumed
    assert list(retried.rows.index) == [2, 3, 4, 5]


def test_when_rows_above_the_watermark_were_deleted_new_rows_are_chosen_by_time() -> None:
    first = window(ROWS[:2])  # consumed up to 10:00 (row 3)
    # Row 2 was deleted: everything moved up one row, then two answers arrived.
    shifted = [ROWS[1], ROWS[2], ROWS[3], ["2026. 11. 24 오후 12:00:00", "새 답변"]]

    chosen = window(shifted, position=first.position)

    assert chosen.realigned
    # 10:00 was consumed already; the unreadable row now sits at row 3, not below the old
    # row 3, so it is taken as already seen; later times are new.
    assert list(chosen.rows["의견"]) == ["별로", "새 답변"]
    assert chosen.position["row"] == 5


def test_the_fingerprint_changes_with_the_rows_of_the_window() -> None:
    assert window(ROWS[:2]).fingerprint != window(ROWS[:3]).fingerprint
    assert window(ROWS[:2]).fingerprint == window(ROWS[:2]).fingerprint

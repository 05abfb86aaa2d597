"""Sheets tasks with the real gspread against the sandbox: one request per batch, safe retries."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from blocks.sheets import GoogleSheetsCredentials
from moltbot.errors import InputError, ServiceError
from moltbot.retrying import recorded_sleeps
from moltbot.sandbox import Sandbox
from moltbot.sandbox.sheets import SheetsState
from tasks.sheets import (
    SHEET_ROW,
    append_rows,
    read_worksheet,
    update_range,
    worksheet_frame,
)
from tests.sandbox.helpers import sheets_block

FORM = "Form Responses 1"
HEADER = ["타임스탬프", "이름", "이메일", "문의 내용"]


@pytest.fixture
def sheets(sandbox: Sandbox) -> SheetsState:
    return sandbox.state.sheets


@pytest.fixture
def credentials(
    sandbox: Sandbox, sheets_credentials: GoogleSheetsCredentials
) -> GoogleSheetsCredentials:
    """The sandbox's service account; its access token is fetched once, before the test."""
    # Fetch the token now, so request counts below are the task's own requests.
    sid = sandbox.state.sheets.create_spreadsheet("warm-up")
    sheets_credentials.get_client().http_client.fetch_sheet_metadata(sid)
    sandbox.state.sheets.reset()
    return sheets_credentials


def statuses(sheets: SheetsState) -> list[tuple[str, int]]:
    """(method, status) of every logged request."""
    return [(r.method, r.status) for r in sheets.core.requests]


def test_a_10000_row_sheet_is_read_with_exactly_one_request(sheets, credentials) -> None:
    rows = [
        [f"2026-11-{i % 28 + 1:02d}", f"고객{i}", f"user{i}@example.com", "배송 문의"]
        for i in range(10_000)
    ]
    sid = sheets.create_spreadsheet("설문", {FORM: [HEADER, *rows]})

    frame = read_worksheet(credentials, sid, FORM, block_name="sandbox-sheets")

    assert [(r.method, r.path) for r in sheets.core.requests] == [
        ("GET", f"/v4/spreadsheets/{sid}/values/'{FORM}'")
    ]
    assert frame.shape == (10_000, 4)
    assert list(frame.columns) == HEADER
    assert frame.index.name == SHEET_ROW
    assert frame.index[0] == 2 and frame.index[-1] == 10_001
    assert frame.loc[10_001, "이름"] == "고객9999"
    assert all(str(dtype) == "str" for dtype in frame.dtypes)


def test_values_are_strings_padded_to_the_header_and_empty_rows_skipped(
    sheets, credentials
) -> None:
    sid = sheets.create_spreadsheet(
        "ragged",
        {FORM: [[" 이름 ", "", "점수"], ["가", "x", 90], [], ["나"], ["다", "", "", "extra"]]},
    )

    frame = read_worksheet(credentials, sid, FORM)

    assert list(frame.columns) == ["이름", "column_B", "점수", "column_D"]
    assert frame.index.tolist() == [2, 4, 5]
    assert frame.to_dict("list") == {
        "이름": ["가", "나", "다"],
        "column_B": ["x", "", ""],
        "점수": ["90", "", ""],
        "column_D": ["", "", "extra"],
    }


def test_header_only_sheet_gives_empty_frame_with_columns_and_empty_sheet_none(sheets, credentials):
    sid = sheets.create_spreadsheet("empty", {"header": [HEADER], "blank": []})

    header_only = read_worksheet(credentials, sid, "header")
    blank = read_worksheet(credentials, sid, "blank")

    assert list(header_only.columns) == HEADER and header_only.empty
    assert blank.columns.empty and blank.empty
    assert [r.path for r in sheets.core.requests] == [
        f"/v4/spreadsheets/{sid}/values/'{n}'" for n in ("header", "blank")
    ]


def test_duplicate_headers_are_bad_input_naming_them() -> None:
    with pytest.raises(InputError, match=r"repeats the column name\(s\) '이메일'"):
        worksheet_frame([["이메일", "이름", "이메일"], ["a", "b", "c"]], "worksheet 'x'")


def test_missing_worksheet_is_bad_input_listing_the_worksheets(sheets, credentials) -> None:
    sid = sheets.create_spreadsheet("tabs", {FORM: [HEADER], "요약": []})

    with pytest.raises(InputError) as raised:
        read_worksheet(credentials, sid, "응답", block_name="sandbox-sheets")

    assert str(raised.value) == (
        f"Google Sheets block 'sandbox-sheets': spreadsheet {sid!r} has no worksheet '응답' "
        f"(worksheets: '{FORM}', '요약')"
    )
    # The metadata request is made only after the values request failed.
    assert statuses(sheets) == [("GET", 400), ("GET", 200)]


def test_unknown_spreadsheet_is_bad_input_naming_id_and_block(sheets, credentials) -> None:
    with pytest.raises(InputError) as raised:
        read_worksheet(credentials, "no-such-id", FORM, block_name="ops-sheets")

    assert str(raised.value) == (
        "Google Sheets block 'ops-sheets': no spreadsheet 'no-such-id' "
        "(404 NOT_FOUND: Requested entity was not found.)"
    )
    assert statuses(sheets) == [("GET", 404)]  # not retried


def test_permission_denied_fails_at_once_with_google_message(sheets, credentials) -> None:
    sid = sheets.create_spreadsheet("locked", {FORM: [HEADER]})
    sheets.core.inject_fault(403, count=None, message="The caller does not have permission")

    with pytest.raises(ServiceError) as raised:
        read_worksheet(credentials, sid, FORM, block_name="sandbox-sheets")

    assert str(raised.value) == (
        "Google Sheets block 'sandbox-sheets': 403 PERMISSION_DENIED: "
        "The caller does not have permission"
    )
    assert raised.value.transient is False
    assert statuses(sheets) == [("GET", 403)]


def test_429_with_retry_after_is_retried_once_after_the_wait(sheets, credentials) -> None:
    sid = sheets.create_spreadsheet("busy", {FORM: [HEADER, ["a", "b", "c", "d"]]})
    sheets.core.inject_fault(429, retry_after=1, path="/values/")

    with recorded_sleeps() as waits:
        frame = read_worksheet(credentials, sid, FORM)

    assert len(frame) == 1
    assert statuses(sheets) == [("GET", 429), ("GET", 200)]
    assert waits == [1.0]  # the service's Retry-After, recorded instead of waited out


def test_500s_are_retried_until_an_answer(sheets, credentials) -> None:
    sid = sheets.create_spreadsheet("flaky", {FORM: [HEADER]})
    sheets.core.inject_fault(500, count=2)

    frame = read_worksheet(credentials, sid, FORM)

    assert list(frame.columns) == HEADER
    assert statuses(sheets) == [("GET", 500), ("GET", 500), ("GET", 200)]


def test_a_hang_past_the_timeout_is_retried(sandbox, sheets) -> None:
    block = sheets_block(sandbox.base_url, timeout_seconds=0.3)
    sid = sheets.create_spreadsheet("slow", {FORM: [HEADER]})
    sheets.core.inject_fault(kind="hang", seconds=0.8, path="/values/")

    with recorded_sleeps() as waits:
        frame = read_worksheet(block, sid, FORM)

    assert list(frame.columns) == HEADER
    assert len(waits) == 1  # the timed-out read, then its retry: the hang was not waited out
    # The held request is logged (504, "hang") only when the emulator lets it go.
    deadline = time.monotonic() + 5
    while sheets.core.count() < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(statuses(sheets)) == [("GET", 200), ("GET", 504)]


def test_quota_exhausted_is_transient_and_gives_up_after_the_attempts(sheets, credentials) -> None:
    sid = sheets.create_spreadsheet("quota", {FORM: [HEADER]})
    sheets.set_quota(reads_per_minute=1)
    read_worksheet(credentials, sid, FORM)

    with pytest.raises(ServiceError) as raised:
        read_worksheet(credentials, sid, FORM, block_name="sandbox-sheets")

    assert raised.value.status == 429 and raised.value.transient
    assert str(raised.value).startswith(
        "Google Sheets block 'sandbox-sheets': 429 RESOURCE_EXHAUSTED: "
        "Quota exceeded for quota metric 'Read requests'"
    )
    # One read allowed, then the policy's 4 attempts all refused.
    assert statuses(sheets) == [("GET", 200)] + [("GET", 429)] * 4


def test_many_rows_are_appended_with_one_request(sheets, credentials) -> None:
    sid = sheets.create_spreadsheet("append", {FORM: [HEADER]})
    rows = [
        ["2026-11-24", f"고객{i}", f"c{i}@example.com", "환불 요청: '급함'"] for i in range(500)
    ]

    answer = append_rows(credentials, sid, FORM, rows)

    assert answer["updates"]["updatedRows"] == 500
    assert answer["updates"]["updatedRange"] == f"'{FORM}'!A2:D501"
    [request] = sheets.core.requests
    assert (request.method, request.path) == (
        "POST",
        f"/v4/spreadsheets/{sid}/values/'{FORM}':append",
    )
    assert "insertDataOption=INSERT_ROWS" in request.query
    assert sheets.values(sid, FORM)[1:] == rows


def test_append_converts_pandas_and_numpy_values(sheets, credentials) -> None:
    sid = sheets.create_spreadsheet("types", {"S": []})
    frame = pd.DataFrame(
        {
            "n": [np.int64(3), np.int64(4)],
            "x": [1.5, np.nan],
            "d": pd.to_datetime(["2026-11-24", None]),
        }
    )

    append_rows(credentials, sid, "S", frame.itertuples(index=False))

    assert sheets.values(sid, "S") == [["3", "1.5", "2026-11-24T00:00:00"], ["4"]]


def test_empty_append_makes_no_request(sheets, credentials) -> None:
    sid = sheets.create_spreadsheet("none", {"S": []})

    assert append_rows(credentials, sid, "S", [])["updates"]["updatedRows"] == 0
    assert sheets.core.count() == 0


def test_append_to_a_missing_worksheet_is_bad_input(sheets, credentials) -> None:
    sid = sheets.create_spreadsheet("tabs", {FORM: [HEADER]})

    with pytest.raises(
        InputError, match=r"has no worksheet '기록' \(worksheets: 'Form Responses 1'\)"
    ):
        append_rows(credentials, sid, "기록", [["a"]])


def test_an_append_that_failed_after_being_applied_is_not_sent_again(sheets, credentials) -> None:
    sid = sheets.create_spreadsheet("once", {FORM: [HEADER]})
    sheets.fail_after_apply(1, path=":append$")
    rows = [["2026-11-24", "김민수", "m@example.com", "문의"], ["2026-11-24", "이서연", "", 7]]

    answer = append_rows(credentials, sid, FORM, rows)

    assert answer["alreadyApplied"] is True
    assert sheets.values(sid, FORM) == [HEADER, rows[0], ["2026-11-24", "이서연", "", "7"]]
    assert statuses(sheets) == [("POST", 500), ("GET", 200)]


def test_an_append_whose_connection_dropped_before_arriving_is_sent_again(
    sheets, credentials
) -> None:
    sid = sheets.create_spreadsheet("dropped", {FORM: [HEADER]})
    sheets.core.inject_fault(kind="drop", path=":append$")
    rows = [["2026-11-24", "박지훈", "p@example.com", "재발송"]]

    answer = append_rows(credentials, sid, FORM, rows)

    assert "alreadyApplied" not in answer
    assert sheets.values(sid, FORM) == [HEADER, *rows]
    assert statuses(sheets) == [("POST", 0), ("GET", 200), ("POST", 200)]


def test_an_append_refused_with_429_is_retried_without_checking(sheets, credentials) -> None:
    sid = sheets.create_spreadsheet("refused", {FORM: [HEADER]})
    sheets.core.inject_fault(429, retry_after=0, path=":append$")

    append_rows(credentials, sid, FORM, [["a", "b", "c", "d"]])

    assert statuses(sheets) == [("POST", 429), ("POST", 200)]
    assert len(sheets.values(sid, FORM)) == 2


def test_update_range_writes_in_place_and_retries_5xx(sheets, credentials) -> None:
    sid = sheets.create_spreadsheet("update", {FORM: [HEADER, ["a", "b", "c", "대기"]]})
    sheets.core.inject_fault(503, method="PUT")

    answer = update_range(credentials, sid, FORM, "D2", [["처리 완료"]])

    assert answer["updatedRange"] == f"'{FORM}'!D2"
    assert sheets.values(sid, FORM)[1] == ["a", "b", "c", "처리 완료"]
    assert statuses(sheets) == [("PUT", 503), ("PUT", 200)]


@pytest.mark.slow
def test_load_worksheet_task_in_a_flow(prefect_api, sheets, credentials) -> None:
    from prefect import flow

    from tasks.sheets import load_worksheet

    sid = sheets.create_spreadsheet("흐름", {FORM: [HEADER, ["t1", "가", "a@x.kr", "문의"]]})

    @flow
    def read(block: GoogleSheetsCredentials) -> pd.DataFrame:
        return load_worksheet(block, sid, FORM, block_name="sandbox-sheets")

    assert read(credentials)["이름"].tolist() == ["가"]


def test_an_append_through_the_effects_layer_is_looked_up_not_repeated(
    sheets, credentials, tmp_path
) -> None:
    from moltbot.effects import EffectsRuntime, Intent, Route, perform
    from moltbot.effects.services import SheetsAppendExecutor
    from moltbot.state.ledger import Ledger

    sid = sheets.create_spreadsheet("기록", {"처리 기록": [["행", "상태"]]})
    executor = SheetsAppendExecutor(credentials, "sandbox-sheets")

    def intent(row: str) -> Intent:
        return Intent(
            key=f"test:log:{row}",
            automation="test",
            kind="sheets_append",
            target=sid,
            payload={"spreadsheet_id": sid, "worksheet": "처리 기록", "rows": [[row, "접수"]]},
            route=Route((executor.name,)),
        )

    with Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite3'}") as ledger:
        runtime = EffectsRuntime(ledger=ledger, executors={executor.name: executor})
        [first] = perform([intent("2")], runtime)
        # A run that appended row 3 and died before recording it: its claim is taken over at
        # once (the holder is gone) and the sheet is read before anything is appended again.
        ledger.claim("test:log:3", automation="test", kind="sheets_append", target=sid,
                     holder="gone-host/1/1", flow_run_id=None)  # fmt: skip
        append_rows(credentials, sid, "처리 기록", [["3", "접수"]])
        runtime.holder_is_dead = lambda effect: effect.holder == "gone-host/1/1"
        [recovered] = perform([intent("3")], runtime)
        [again] = perform([intent("2")], runtime)

    assert (first.status, recovered.status, recovered.recovered) == ("done", "done", True)
    assert again.status == "already_done"
    assert sheets.values(sid, "처리 기록") == [["행", "상태"], ["2", "접수"], ["3", "접수"]]

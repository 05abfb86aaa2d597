"""Google Sheets v4 emulator, driven by the real gspread and google-auth, and by httpx."""

from __future__ import annotations

import re
from collections.abc import Iterator

import gspread
import httpx
import pytest

from blocks.sheets import GoogleSheetsCredentials
from moltbot.sandbox import Sandbox
from moltbot.sandbox.sheets import (
    SANDBOX_SHEETS_TOKEN,
    SheetsState,
    generate_service_account_info,
)
from tests.sandbox.helpers import sheets_block

AUTH = {"Authorization": f"Bearer {SANDBOX_SHEETS_TOKEN}"}


@pytest.fixture
def sheets(sandbox: Sandbox) -> SheetsState:
    """The session sandbox's Sheets state (reset around each test by conftest.py)."""
    return sandbox.state.sheets


@pytest.fixture
def gc(sheets_credentials: GoogleSheetsCredentials) -> gspread.Client:
    """The real gspread client, through the block, on the sandbox's service account."""
    return sheets_credentials.get_client()


@pytest.fixture(scope="module")
def api(sandbox_server: Sandbox) -> Iterator[httpx.Client]:
    """httpx on the Sheets mount, with the fixed sandbox token."""
    with httpx.Client(base_url=f"{sandbox_server.base_url}/sheets", headers=AUTH, timeout=5) as c:
        yield c


def test_korean_titles_and_values_round_trip_through_gspread(sheets, gc) -> None:
    sid = sheets.create_spreadsheet(
        "설문 결과", {"응답 시트": [["이름", "의견"]], "Q1: Leads/EU's": []}
    )

    spreadsheet = gc.open_by_key(sid)
    responses = spreadsheet.worksheet("응답 시트")
    responses.append_rows([["김민수", "좋아요: 아주 '만족'"], ["이서연", "배송이 느려요"]])
    odd = spreadsheet.worksheet("Q1: Leads/EU's")
    odd.update([["구분", "값"], ["합계", 3]], "A1")

    assert spreadsheet.title == "설문 결과"
    assert responses.get_all_records() == [
        {"이름": "김민수", "의견": "좋아요: 아주 '만족'"},
        {"이름": "이서연", "의견": "배송이 느려요"},
    ]
    assert odd.get("A2:B2") == [["합계", "3"]]
    assert sheets.values(sid, "Q1: Leads/EU's") == [["구분", "값"], ["합계", "3"]]
    # Starlette decodes the percent-encoded range; quotes stay doubled as the client sent them.
    put = f"/v4/spreadsheets/{sid}/values/'Q1: Leads/EU''s'!A1"
    assert sheets.core.count("PUT", re.escape(put)) == 1


def test_metadata_has_grid_sizes_and_append_grows_the_grid(sheets, gc) -> None:
    sid = sheets.create_spreadsheet("grid", {"Data": [["h"]] + [["x"]] * 999})
    worksheet = gc.open_by_key(sid).sheet1

    worksheet.append_rows([["a"], ["b"]], insert_data_option="INSERT_ROWS")
    worksheet.append_row(["c"])  # OVERWRITE (the default) still adds the rows it needs

    assert (worksheet.row_count, worksheet.col_count) == (1000 + 3, 26)
    assert sheets.grid_size(sid, "Data") == (1003, 26)
    assert sheets.values(sid, "Data")[-3:] == [["a"], ["b"], ["c"]]


def test_reads_are_ragged_and_typed_as_formatted_strings(sheets, api) -> None:
    sid = sheets.create_spreadsheet("t", {"S": [["a", "", "c", ""], [], ["", 2, 2.5, True, None]]})

    whole = api.get(f"/v4/spreadsheets/{sid}/values/S").json()
    columns = api.get(f"/v4/spreadsheets/{sid}/values/S!A1:C", params={"majorDimension": "COLUMNS"})
    empty = api.get(f"/v4/spreadsheets/{sid}/values/S!F1:G9").json()

    assert whole == {
        "range": "S!A1:Z1000",
        "majorDimension": "ROWS",
        "values": [["a", "", "c"], [], ["", "2", "2.5", "TRUE"]],
    }
    assert columns.json()["values"] == [["a"], ["", "", "2"], ["c", "", "2.5"]]
    assert empty == {"range": "S!F1:G9", "majorDimension": "ROWS"}


@pytest.mark.parametrize(
    ("range_text", "expected"),
    [
        ("'It''s'!B2", [["5"]]),
        ("'It''s'!A1:B2", [["1", "2"], ["4", "5"]]),
        ("'It''s'!B:C", [["2", "3"], ["5", "6"]]),
        ("'It''s'!2:2", [["4", "5", "6"]]),
        ("'It''s'!B2:C", [["5", "6"]]),
        ("'It''s'", [["1", "2", "3"], ["4", "5", "6"]]),
        ("C2:A1", [["1", "2", "3"], ["4", "5", "6"]]),  # no title: the first sheet
    ],
)
def test_a1_ranges(sheets, api, range_text: str, expected: list[list[str]]) -> None:
    sid = sheets.create_spreadsheet("a1", {"It's": [[1, 2, 3], [4, 5, 6]]})

    response = api.get(f"/v4/spreadsheets/{sid}/values/{range_text}")

    assert response.status_code == 200, response.text
    assert response.json()["values"] == expected


@pytest.mark.parametrize(
    ("range_text", "message"),
    [
        ("Missing!A1", "Unable to parse range: Missing!A1"),
        ("'Open!A1", "Unable to parse range: 'Open!A1"),
        ("S!A1:A2000", "Range (S!A1:A2000) exceeds grid limits. Max rows: 1000, max columns: 26"),
    ],
)
def test_bad_ranges_answer_400_invalid_argument(sheets, api, range_text, message) -> None:
    sid = sheets.create_spreadsheet("bad", {"S": [["x"]]})

    response = api.get(f"/v4/spreadsheets/{sid}/values/{range_text}")

    assert response.status_code == 400
    assert response.json() == {
        "error": {"code": 400, "message": message, "status": "INVALID_ARGUMENT"}
    }


def test_user_entered_parses_numbers_and_raw_keeps_text(sheets, api) -> None:
    sid = sheets.create_spreadsheet("input", {"S": []})
    url = f"/v4/spreadsheets/{sid}/values/S:append"
    row = ["007", "'007", "true", "=1+1", 3.0]

    api.post(url, params={"valueInputOption": "RAW"}, json={"values": [row]})
    api.post(url, params={"valueInputOption": "USER_ENTERED"}, json={"values": [row]})
    missing = api.post(url, json={"values": [row]})

    assert sheets.values(sid, "S") == [
        ["007", "'007", "true", "=1+1", "3"],
        ["7", "007", "TRUE", "=1+1", "3"],
    ]
    assert missing.status_code == 400
    assert missing.json()["error"]["message"] == "'valueInputOption' is required but not specified"


def test_put_checks_the_range_and_null_leaves_a_cell_alone(sheets, api) -> None:
    sid = sheets.create_spreadsheet("put", {"S": [["a", "b"]]})

    fits = api.put(
        f"/v4/spreadsheets/{sid}/values/S!A1:B1",
        params={"valueInputOption": "RAW"},
        json={"values": [[None, "B"]]},
    )
    too_big = api.put(
        f"/v4/spreadsheets/{sid}/values/S!A1:B1",
        params={"valueInputOption": "RAW"},
        json={"values": [["x"], ["y"]]},
    )

    assert fits.json()["updatedRange"] == "S!A1:B1"
    assert sheets.values(sid, "S") == [["a", "B"]]
    assert too_big.status_code == 400
    assert "tried writing to row [2]" in too_big.json()["error"]["message"]


def test_batch_get_add_sheet_and_batch_update_through_gspread(sheets, gc) -> None:
    sid = sheets.create_spreadsheet("batch", {"주문": [["sku", "qty"], ["A-1", 3]]})
    spreadsheet = gc.open_by_key(sid)

    added = spreadsheet.add_worksheet("재고 현황", rows=50, cols=4)
    added.update([["sku", "stock"], ["A-1", 12]], "A1")
    answer = spreadsheet.values_batch_get(["'주문'!A2:B2", "'재고 현황'"])

    assert [vr["values"] for vr in answer["valueRanges"]] == [
        [["A-1", "3"]],
        [["sku", "stock"], ["A-1", "12"]],
    ]
    assert sheets.sheet_titles(sid) == ["주문", "재고 현황"]
    assert sheets.grid_size(sid, "재고 현황") == (50, 4)
    assert [vr["range"] for vr in answer["valueRanges"]] == ["'주문'!A2:B2", "'재고 현황'!A1:D50"]


def test_batch_update_is_all_or_nothing(sheets, api) -> None:
    sid = sheets.create_spreadsheet("atomic", {"S": []})

    response = api.post(
        f"/v4/spreadsheets/{sid}:batchUpdate",
        json={
            "requests": [
                {"addSheet": {"properties": {"title": "T"}}},
                {"addSheet": {"properties": {"title": "S"}}},
            ]
        },
    )

    assert response.status_code == 400
    assert 'A sheet with the name "S" already exists' in response.json()["error"]["message"]
    assert sheets.sheet_titles(sid) == ["S"]


def test_create_spreadsheet_over_http_as_the_real_api(sheets, api) -> None:
    response = api.post(
        "/v4/spreadsheets",
        json={
            "properties": {"title": "월간 보고"},
            "sheets": [{"properties": {"title": "요약", "gridProperties": {"rowCount": 10}}}],
        },
    )

    body = response.json()
    assert response.status_code == 200
    assert body["properties"]["title"] == "월간 보고"
    assert body["sheets"][0]["properties"]["gridProperties"] == {"rowCount": 10, "columnCount": 26}
    assert body["spreadsheetUrl"].endswith(f"/d/{body['spreadsheetId']}/edit")
    assert sheets.sheet_titles(body["spreadsheetId"]) == ["요약"]


def test_gspread_create_and_open_by_title_use_the_drive_routes(sheets, gc) -> None:
    created = gc.create("새 스프레드시트")

    opened = gc.open("새 스프레드시트")

    assert opened.id == created.id
    assert opened.sheet1.title == "Sheet1"
    assert sheets.find_spreadsheets("새 스프레드시트") == [created.id]


def test_service_account_flow_goes_through_the_token_endpoint(sandbox, sheets) -> None:
    token_uri = f"{sandbox.base_url}/sheets/token"
    info = generate_service_account_info(
        token_uri, client_email="flow@moltbot-sandbox.iam.gserviceaccount.com"
    )
    sheets.trust_service_account(info)
    sid = sheets.create_spreadsheet("token", {"S": [["ok"]]})
    block = sheets_block(sandbox.base_url, info)

    values = block.get_client().http_client.values_get(sid, "S")

    assert values["values"] == [["ok"]]
    assert [(r.method, r.path, r.status) for r in sheets.core.requests] == [
        ("POST", "/token", 200),
        ("GET", f"/v4/spreadsheets/{sid}/values/S", 200),
    ]


def test_token_endpoint_refuses_a_key_it_never_issued(sandbox) -> None:
    from google.auth.exceptions import RefreshError
    from google.auth.transport.requests import Request
    from google.oauth2.service_account import Credentials

    info = generate_service_account_info(f"{sandbox.base_url}/sheets/token")
    credentials = Credentials.from_service_account_info(info, scopes=gspread.auth.DEFAULT_SCOPES)

    with pytest.raises(RefreshError, match="invalid_grant: Invalid JWT Signature"):
        credentials.refresh(Request())


def test_token_endpoint_speaks_oauth_errors(api) -> None:
    unsupported = api.post("/token", data={"grant_type": "password", "assertion": "x"})
    malformed = api.post(
        "/token",
        data={
            "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
            "assertion": "not-a-jwt",
        },
    )

    assert unsupported.status_code == 400
    assert unsupported.json()["error"] == "unsupported_grant_type"
    assert malformed.json()["error"] == "invalid_grant"


@pytest.mark.parametrize("header", [None, "Bearer wrong-token", f"Basic {SANDBOX_SHEETS_TOKEN}"])
def test_wrong_or_missing_token_is_401_unauthenticated(sandbox, sheets, header) -> None:
    sid = sheets.create_spreadsheet("auth")
    headers = {"Authorization": header} if header else {}

    response = httpx.get(f"{sandbox.base_url}/sheets/v4/spreadsheets/{sid}", headers=headers)

    assert response.status_code == 401
    assert response.json()["error"]["status"] == "UNAUTHENTICATED"
    assert response.json()["error"]["code"] == 401


def test_unknown_spreadsheet_is_404_and_gspread_says_not_found(sheets, gc, api) -> None:
    response = api.get("/v4/spreadsheets/nope")

    assert response.status_code == 404
    assert response.json() == {
        "error": {"code": 404, "message": "Requested entity was not found.", "status": "NOT_FOUND"}
    }
    with pytest.raises(gspread.SpreadsheetNotFound):
        gc.open_by_key("nope")


def test_read_quota_per_user_answers_429_resource_exhausted_without_retry_after(
    sheets, api
) -> None:
    sid = sheets.create_spreadsheet("quota")
    sheets.set_quota(reads_per_minute=2, writes_per_minute=None)

    statuses = [api.get(f"/v4/spreadsheets/{sid}").status_code for _ in range(3)]
    refused = api.get(f"/v4/spreadsheets/{sid}")
    write = api.post(
        f"/v4/spreadsheets/{sid}/values/Sheet1:append",
        params={"valueInputOption": "RAW"},
        json={"values": [["x"]]},
    )

    assert statuses == [200, 200, 429]
    error = refused.json()["error"]
    assert (error["code"], error["status"]) == (429, "RESOURCE_EXHAUSTED")
    assert error["message"].startswith("Quota exceeded for quota metric 'Read requests'")
    assert error["details"][0]["reason"] == "RATE_LIMIT_EXCEEDED"
    assert "retry-after" not in refused.headers
    assert write.status_code == 200  # writes have their own quota


def test_quota_is_per_user(sheets, gc, api) -> None:
    sid = sheets.create_spreadsheet("per-user")
    sheets.set_quota(reads_per_minute=1)
    assert api.get(f"/v4/spreadsheets/{sid}").status_code == 200
    assert api.get(f"/v4/spreadsheets/{sid}").status_code == 429

    # The service account is another user, with its own minute.
    assert gc.http_client.fetch_sheet_metadata(sid)["spreadsheetId"] == sid


def test_default_quota_is_60_per_minute_and_reset_restores_it(sheets, api) -> None:
    sid = sheets.create_spreadsheet("sixty")
    codes = [api.get(f"/v4/spreadsheets/{sid}").status_code for _ in range(61)]
    sheets.reset()
    sid = sheets.create_spreadsheet("after reset")

    assert codes.count(200) == 60
    assert codes[-1] == 429
    assert api.get(f"/v4/spreadsheets/{sid}").status_code == 200


@pytest.mark.parametrize(
    ("status", "google_status"),
    [
        (429, "RESOURCE_EXHAUSTED"),
        (500, "INTERNAL"),
        (503, "UNAVAILABLE"),
        (403, "PERMISSION_DENIED"),
    ],
)
def test_injected_faults_use_google_status_names(sheets, api, status, google_status) -> None:
    sid = sheets.create_spreadsheet("faults")
    sheets.core.inject_fault(status, path="/values/")

    failed = api.get(f"/v4/spreadsheets/{sid}/values/Sheet1")
    passed = api.get(f"/v4/spreadsheets/{sid}/values/Sheet1")

    assert failed.status_code == status
    assert failed.json()["error"]["status"] == google_status
    assert passed.status_code == 200
    assert [r.fault for r in sheets.core.requests] == ["status", None]


def test_fail_after_apply_writes_then_answers_500(sheets, api) -> None:
    sid = sheets.create_spreadsheet("after", {"S": [["h"]]})
    sheets.fail_after_apply(1, path=":append$")

    response = api.post(
        f"/v4/spreadsheets/{sid}/values/S:append",
        params={"valueInputOption": "RAW"},
        json={"values": [["applied"]]},
    )

    assert response.status_code == 500
    assert response.json()["error"]["status"] == "INTERNAL"
    assert sheets.values(sid, "S") == [["h"], ["applied"]]


def test_reset_forgets_spreadsheets_logs_faults_and_trust(sandbox, sheets, api) -> None:
    sid = sheets.create_spreadsheet("gone")
    sheets.core.inject_fault(500)
    sheets.fail_after_apply(2)
    info = generate_service_account_info(f"{sandbox.base_url}/sheets/token")
    sheets.trust_service_account(info)

    sheets.reset()

    assert sheets.spreadsheets == {}
    assert sheets.core.requests == [] and sheets.core.pending_faults == []
    assert api.get(f"/v4/spreadsheets/{sid}").status_code == 404


def test_control_route_lists_spreadsheets_without_logging(sheets, api) -> None:
    sid = sheets.create_spreadsheet("보기", {"S": [["a", 1]]})

    listed = api.get("/_sandbox/spreadsheets").json()

    assert listed == [
        {
            "spreadsheetId": sid,
            "title": "보기",
            "sheets": [{"title": "S", "rowCount": 1000, "columnCount": 26, "values": [["a", "1"]]}],
        }
    ]
    assert sheets.core.requests == []

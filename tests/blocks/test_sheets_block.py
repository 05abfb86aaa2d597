"""The Google Sheets credentials block: URL rewriting, timeouts, secrets, errors naming it."""

from __future__ import annotations

import uuid

import gspread
import pytest

from blocks.sheets import GoogleSheetsCredentials, RewritingHTTPClient, rewrite_google_url
from moltbot.errors import ServiceError
from moltbot.masking import mask_text
from moltbot.retrying import recorded_sleeps
from moltbot.sandbox import Sandbox
from moltbot.sandbox.sheets import generate_service_account_info, sandbox_service_account_info
from tasks.sheets import read_worksheet
from tests.sandbox.helpers import sheets_block


@pytest.mark.parametrize(
    ("url", "base", "expected"),
    [
        (
            "https://sheets.googleapis.com/v4/spreadsheets/k/values/%27A%27",
            "http://127.0.0.1:8765/sheets",
            "http://127.0.0.1:8765/sheets/v4/spreadsheets/k/values/%27A%27",
        ),
        (
            "https://www.googleapis.com/drive/v3/files?q=x",
            "http://127.0.0.1:8765/sheets/",
            "http://127.0.0.1:8765/sheets/drive/v3/files?q=x",
        ),
        (
            "https://sheets.googleapis.com/v4/spreadsheets/k",
            None,
            "https://sheets.googleapis.com/v4/spreadsheets/k",
        ),
        (
            "https://example.com/https://sheets.googleapis.com/x",
            "http://local",
            "https://example.com/https://sheets.googleapis.com/x",
        ),
    ],
)
def test_google_urls_are_rewritten_only_when_a_base_url_is_set(url, base, expected) -> None:
    assert rewrite_google_url(url, base) == expected


def test_get_client_is_gspread_with_the_plain_rewriting_client_and_bounded_timeouts(sandbox):
    client = sheets_block(sandbox.base_url, timeout_seconds=12).get_client()
    production = GoogleSheetsCredentials(
        service_account_info=sandbox_service_account_info("https://oauth2.googleapis.com/token"),
        timeout_seconds=2,
    ).get_client()

    assert isinstance(client, gspread.Client)
    assert type(client.http_client) is RewritingHTTPClient  # no gspread back-off retries
    assert client.http_client.api_base_url == f"{sandbox.base_url}/sheets"
    assert client.http_client.timeout == (5.0, 12)
    assert production.http_client.api_base_url is None
    assert production.http_client.timeout == (2, 2)


def test_get_client_registers_the_private_key_with_the_log_masker(sandbox) -> None:
    info = generate_service_account_info(f"{sandbox.base_url}/sheets/token")
    block = GoogleSheetsCredentials(service_account_info=info)
    pem_line = info["private_key"].splitlines()[5]

    block.get_client()

    assert pem_line not in mask_text(f"key: {info['private_key']}")
    assert mask_text(info["private_key_id"]) == "***"
    assert info["private_key"] not in repr(block)


def test_real_service_account_flow_then_one_request_per_read(sandbox) -> None:
    sheets = sandbox.state.sheets
    info = generate_service_account_info(f"{sandbox.base_url}/sheets/token")
    sheets.trust_service_account(info)
    sid = sheets.create_spreadsheet("흐름", {"응답": [["이름"], ["김"]]})
    block = sheets_block(sandbox.base_url, info)

    first = read_worksheet(block, sid, "응답")
    second = read_worksheet(block, sid, "응답")  # a new client, the same held token

    assert first.equals(second)
    assert [(r.method, r.path) for r in sheets.core.requests] == [
        ("POST", "/token"),
        ("GET", f"/v4/spreadsheets/{sid}/values/'응답'"),
        ("GET", f"/v4/spreadsheets/{sid}/values/'응답'"),
    ]


@pytest.mark.parametrize("token_held", [False, True], ids=["token-endpoint-down", "api-down"])
def test_a_stopped_emulator_gives_an_error_within_10_seconds(token_held: bool) -> None:
    with Sandbox() as doomed:
        info = generate_service_account_info(f"{doomed.base_url}/sheets/token")
        doomed.state.sheets.trust_service_account(info)
        sid = doomed.state.sheets.create_spreadsheet("down", {"S": [["a"]]})
        block = sheets_block(doomed.base_url, info)
        if token_held:
            read_worksheet(block, sid, "S")

    with recorded_sleeps() as waits, pytest.raises(ServiceError) as raised:
        read_worksheet(block, sid, "S", block_name="sandbox-sheets")

    assert str(raised.value) == (
        "Google Sheets block 'sandbox-sheets': no answer from the Sheets API (ConnectionError)"
    )
    assert raised.value.transient is True
    assert len(waits) == 3  # four attempts, then the failure: reported in seconds


@pytest.mark.slow
def test_saved_block_round_trips_and_a_wrong_key_error_names_it(prefect_api, sandbox) -> None:
    name = f"sheets-wrong-key-{uuid.uuid4().hex[:8]}"
    untrusted = generate_service_account_info(f"{sandbox.base_url}/sheets/token")
    sheets_block(sandbox.base_url, untrusted).save(name)
    sid = sandbox.state.sheets.create_spreadsheet("x", {"S": [["a"]]})

    loaded = GoogleSheetsCredentials.load(name)
    with pytest.raises(ServiceError) as raised:
        read_worksheet(loaded, sid, "S")

    assert loaded.service_account_info.get_secret_value() == untrusted
    assert loaded.api_base_url == f"{sandbox.base_url}/sheets"
    assert str(raised.value) == (
        f"Google Sheets block {name!r}: the token endpoint refused the service account: "
        "invalid_grant: Invalid JWT Signature."
    )
    assert raised.value.transient is False
    assert untrusted["private_key"] not in str(raised.value)

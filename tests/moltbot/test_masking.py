"""Tests of secret and personal-data masking in text and in log records."""

from __future__ import annotations

import io
import logging
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from moltbot.masking import (
    MaskingFilter,
    add_masking_filter,
    install_log_masking,
    mask_text,
    register_secret,
)
from tests.e2e.servers import HANG_GUARD_SECONDS


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail kim.minsu@acme.co.kr now", "mail ***@acme.co.kr now"),
        ("cc: ops+alerts@example.com.", "cc: ***@example.com."),
        ("call +82 10-1234-5678 today", "call *** today"),
        ("call +1 (555) 123-4567", "call ***"),
        ("sms to +821012345678", "sms to ***"),
        ("고객 연락처 010-1234-5678 입니다", "고객 연락처 *** 입니다"),
        ("고객 연락처 01012345678", "고객 연락처 ***"),
        ("office 02-123-4567", "office ***"),
        ("office 031 123 4567", "office ***"),
        ("card 1234-5678-9012-3456", "card ***"),
        (
            "POST https://hooks.slack.com/services/T0123ABCD/B0456EFGH/aBcDeFgH1234567890xyz",
            "POST https://hooks.slack.com/services/T0123ABCD/B0456EFGH/***",
        ),
        ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig-123", "Authorization: Bearer ***"),
        ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "Authorization: Basic ***"),
        ("GET /v1?password=hunter22&page=2", "GET /v1?password=***&page=2"),
        ("token=abc123 api_key=k-999 secret=s3cr3t", "token=*** api_key=*** secret=***"),
        ("access_token=ya29.a0Af; user=kim", "access_token=***; user=kim"),
        ('{"client_secret": "abc def", "id": 7}', '{"client_secret": "***", "id": 7}'),
        ("{'password': 'p@ss'}", "{'password': '***'}"),
        ("X-Api-Key: 0f9e8d7c6b", "X-Api-Key: ***"),
        (
            "postgresql://moltbot:S3cret!@db.example.com:5432/ledger",
            "postgresql://moltbot:***@db.example.com:5432/ledger",
        ),
        ("redis://:pw1234@cache:6379/0", "redis://:***@cache:6379/0"),
        ("bot token xoxb-123456789012-abcdefABCDEF", "bot token ***"),
    ],
)
def test_masks_secrets_and_personal_data(text: str, expected: str) -> None:
    assert mask_text(text) == expected
    assert mask_text(expected) == expected  # masking is idempotent


@pytest.mark.parametrize(
    "text",
    [
        "report for 2026-11-24",
        "window 2026-11-24 2026-11-30",
        "2026-11-24T10:00:00+09:00 and 2026.11.24",
        "at 10:30:00, then 23:59",
        "order A-1001 and ORD-2026-000123",
        "total 1234567.5 KRW, before 12345678.50",
        "revenue 1,234,567,890 won and 123 456 789 won",
        "delta +1234567.50 (+12.5%)",
        "host 192.168.100.200, python 3.11.7",
        "주문 알림: 김철수 님의 주문 A-1001 이 2026년 11월 24일 완료되었습니다",
        "the bearer of bad news; Bearer token; Basic settings; basic information",
        "secret_name=ops-webhook tokens=42 max_tokens=1000",
        "https://example.com:8080/path?page=2",
        "",
    ],
)
def test_leaves_ordinary_text_alone(text: str) -> None:
    assert mask_text(text) == text


def test_registered_secrets_are_masked_everywhere() -> None:
    secret = f"s-{uuid.uuid4().hex}"
    register_secret(secret)

    assert mask_text(f"config {secret}; again:{secret}!") == "config ***; again:***!"


def test_longer_secret_is_masked_whole_when_it_contains_a_shorter_one() -> None:
    short = uuid.uuid4().hex[:10]
    long = f"{short}-{uuid.uuid4().hex}"
    register_secret(short)
    register_secret(long)

    assert mask_text(f"x {long} y") == "x *** y"


def test_short_secrets_are_ignored() -> None:
    register_secret("abc")
    register_secret("")

    assert mask_text("abc abcd") == "abc abcd"


def test_secrets_registered_from_many_threads_are_all_masked() -> None:
    secrets = [f"t{index}-{uuid.uuid4().hex}" for index in range(16)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(register_secret, secrets))

    assert mask_text(" ".join(secrets)) == " ".join(["***"] * 16)


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A private logger whose only handler writes to a StringIO through the masking filter."""
    stream = io.StringIO()
    handler = add_masking_filter(logging.StreamHandler(stream))
    logger = logging.getLogger(f"moltbot.test.{uuid.uuid4().hex}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield logger, stream
    logger.removeHandler(handler)


def test_filter_masks_message_and_arguments(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured

    logger.info("sent to %s with token=%s (%d rows)", "lee@example.com", "abc123", 3)

    assert stream.getvalue() == "sent to ***@example.com with token=*** (3 rows)\n"


def test_filter_masks_exceptions_without_touching_the_original(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured
    error = ValueError("login failed: password=hunter22 for park@example.com")
    records: list[logging.LogRecord] = []
    logger.addHandler(_Recorder(records))

    try:
        raise error
    except ValueError:
        logger.exception("delivery to %s failed", "010-1234-5678")

    output = stream.getvalue()
    assert "delivery to *** failed" in output
    assert "password=***" in output
    assert "***@example.com" in output
    for leaked in ("hunter22", "park@", "010-1234-5678"):
        assert leaked not in output
    # Formatters that read exc_info directly see a masked copy of the same type.
    shown = records[0].exc_info[1]
    assert isinstance(shown, ValueError)
    assert str(shown) == "login failed: password=*** for ***@example.com"
    assert str(error) == "login failed: password=hunter22 for park@example.com"


class _Recorder(logging.Handler):
    """A handler after the masking one, keeping records as a JSON formatter would read them."""

    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__()
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_filter_leaves_broken_format_strings_to_the_handler() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%d rows", ("many",), None)

    assert MaskingFilter().filter(record) is True
    assert record.args == ("many",)


def test_add_masking_filter_is_idempotent() -> None:
    handler = logging.StreamHandler(io.StringIO())

    add_masking_filter(handler)
    add_masking_filter(handler)

    assert sum(isinstance(f, MaskingFilter) for f in handler.filters) == 1


def test_install_log_masking_covers_root_and_prefect_handlers() -> None:
    root_handler = logging.StreamHandler(io.StringIO())
    prefect_stream = io.StringIO()
    prefect_handler = logging.StreamHandler(prefect_stream)
    prefect_logger = logging.getLogger(f"prefect.moltbot_test_{uuid.uuid4().hex}")
    prefect_logger.propagate = False
    root = logging.getLogger()
    # install_log_masking touches every root handler (pytest's too): restore them afterwards.
    saved_filters = {handler: list(handler.filters) for handler in root.handlers}
    root.addHandler(root_handler)
    prefect_logger.addHandler(prefect_handler)
    try:
        install_log_masking()
        install_log_masking()

        prefect_logger.warning("webhook rejected for %s", "choi@example.com")
    finally:
        root.removeHandler(root_handler)
        prefect_logger.removeHandler(prefect_handler)
        for handler, filters in saved_filters.items():
            handler.filters[:] = filters

    for handler in (root_handler, prefect_handler):
        assert sum(isinstance(f, MaskingFilter) for f in handler.filters) == 1
    assert prefect_stream.getvalue() == "webhook rejected for ***@example.com\n"


def test_register_model_secrets_masks_every_secret_field_of_a_block() -> None:
    from blocks import EmailChannel, SlackIncomingWebhook
    from moltbot.masking import register_model_secrets

    slack = SlackIncomingWebhook(url="https://hooks.example.net/hook/zq81-unique-webhook")
    email = EmailChannel(
        smtp_host="smtp.example.com",
        password="pw-unique-9931",
        sender="bot@example.com",
        recipients=["ops@example.com"],
    )
    register_model_secrets(slack)
    register_model_secrets(email)

    masked = mask_text(
        "posting to https://hooks.example.net/hook/zq81-unique-webhook with pw-unique-9931"
    )

    assert masked == "posting to *** with ***"


PEM = "-----BEGIN PRIVATE KEY-----\nMIIunique8812\n-----END PRIVATE KEY-----\n"


def test_secret_dict_entries_that_are_secrets_are_masked_addresses_are_not() -> None:
    from blocks import GoogleSheetsCredentials
    from moltbot.masking import register_model_secrets

    block = GoogleSheetsCredentials(
        service_account_info={
            "type": "service_account",
            "private_key_id": "kid-unique-4471",
            "private_key": PEM,
            "client_email": "bot@proj.iam.gserviceaccount.com",
            "token_uri": "https://oauth2.example.org/token-endpoint-7731",
            "nested": {"refresh_token": "rt-unique-5521"},
        }
    )
    register_model_secrets(block)

    masked = mask_text(
        "key kid-unique-4471 rt-unique-5521 via https://oauth2.example.org/token-endpoint-7731"
    )

    assert masked == "key *** *** via https://oauth2.example.org/token-endpoint-7731"
    assert "MIIunique8812" not in mask_text(f"signing with {PEM}")


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("주민등록번호 900101-1234567", "주민등록번호 ***"),
        ("card 4111 1111 1111 1111 declined", "card *** declined"),
        ("card 4111-1111-1111-1111", "card ***"),
        ("pan 5500005555555559", "pan ***"),
        ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fw", "jwt ***"),
        ("token ntn_1234567890abcdefghijABCDE", "token ***"),
        ("jira ATATT3xFfGF0abcdefghijklmnopqrstu", "jira ***"),
        (
            '{"private_key": "-----BEGIN PRIVATE KEY-----\\nMIIEv\\n-----END PRIVATE KEY-----\\n"}',
            '{"private_key": "***"}',
        ),
        # A service-account key file's secret entries, and a key quoted under another name.
        ('"private_key_id": "3f9a0c2b"', '"private_key_id": "***"'),
        (
            "key -----BEGIN RSA PRIVATE KEY-----\nMIIEv\n-----END RSA PRIVATE KEY----- end",
            "key *** end",
        ),
        # A key cut short by a length limit: its body goes all the same.
        ('body {"k": "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkq', 'body {"k": "***'),
        ("google ya29.a0AfH6SMBx3kq9Rz0bYtW8-vLq", "google ***"),
        ("maps AIzaSyA1b2C3d4E5f6G7h8I9j0KlMnOpQrStUvW", "maps ***"),
        ("slack xoxp-1234567890-abcdefghij", "slack ***"),
        ("slack xapp-1-A0123456789-abcdef", "slack ***"),
        ("slack xoxe.xoxp-1-Mi0yLTEyMzQ1Njc4", "slack ***"),
        ("amex 3782 822463 10005", "amex ***"),
        ("외국인등록번호 850315-5123456", "외국인등록번호 ***"),
    ],
)
def test_korean_identity_numbers_cards_and_token_shapes_are_masked(text: str, masked: str) -> None:
    assert mask_text(text) == masked
    assert mask_text(masked) == masked  # idempotent


@pytest.mark.parametrize(
    "text",
    [
        "order 1234567890123 shipped",  # 13 digits, not Luhn-valid: an id, not a card
        "ORD-20261203-0042 ₩1,424,000",
        "2026-12-03T21:00:00+09:00",
        "birthday 900101 only",
        "900101-9234567",  # 9 is not a resident-number sex/century digit
    ],
)
def test_ids_amounts_and_dates_stay_readable(text: str) -> None:
    assert mask_text(text) == text


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("환불 계좌: 국민은행 123456-01-234567", "환불 계좌: 국민은행 ***"),
        ("계좌번호 110-773-124680 (예금주 김민수)", "계좌번호 *** (예금주 김민수)"),
        ("신한은행 110 773 124680으로", "신한은행 ***으로"),
        ("예금주: 김민수, 3333-01-2345678", "예금주: 김민수, ***"),
        ("refund to account no. 1234 5678 9012", "refund to account no. ***"),
        ("Account number: 00123456789", "Account number: ***"),
        ("acct #98765432", "acct #***"),
    ],
)
def test_labelled_bank_account_numbers_are_masked_the_label_stays(text: str, masked: str) -> None:
    assert mask_text(text) == masked
    assert mask_text(masked) == masked


@pytest.mark.parametrize(
    "text",
    [
        "은행 점검 2026-11-24 09:00",  # a date after the label
        "계좌 3개, 총 1,234,567원",  # a count and an amount
        "account 712020:00000000-0000-4000-8000-00000000a002",  # a Jira account id
        "12345678 units, no label",  # a number without a label
    ],
)
def test_unlabelled_numbers_and_dates_near_a_label_stay(text: str) -> None:
    assert mask_text(text) == text


@pytest.mark.parametrize(
    "text",
    [
        "010-1234-5678",
        "010 1234 5678",
        "010-1234 5678",
        "01012345678",
        "010.1234.5678",
        "02-123-4567",
        "(02) 123-4567",
        "(031)123-4567",
        "0212345678",
        "031-1234-5678",
        "0311234567",
        "070-1234-5678",
        "0505-123-4567",
        "+82-2-123-4567",
        "+82 10-1234-5678",
    ],
)
def test_korean_mobile_and_landline_numbers_are_masked_in_every_form(text: str) -> None:
    assert mask_text(f"연락처 {text} 입니다") == "연락처 *** 입니다"


@pytest.mark.parametrize(
    "text",
    [
        "1588-1234",  # a company's representative number: not personal
        "02.12.2026",
        "0.2123456789",
        "ORD-0212345678",
        "2026-11-24 02:12:34",
    ],
)
def test_numbers_that_only_look_korean_stay(text: str) -> None:
    assert mask_text(text) == text


def test_email_keeps_its_domain_also_when_url_encoded() -> None:
    assert mask_text("GET /users?email=canary.lee%40example.co.kr&x=1") == (
        "GET /users?email=***%40example.co.kr&x=1"
    )


@pytest.mark.parametrize(
    ("emails", "phones", "expected"),
    [
        ("keep-domain", True, "***@acme.kr, ***, card ***"),
        ("mask", True, "***, ***, card ***"),
        ("keep", False, "kim@acme.kr, 010-1234-5678, card ***"),
    ],
)
def test_routes_may_keep_addresses_and_phones_never_cards(
    emails: str, phones: bool, expected: str
) -> None:
    text = "kim@acme.kr, 010-1234-5678, card 4111 1111 1111 1111"

    assert mask_text(text, emails=emails, phones=phones) == expected


def test_records_are_masked_when_created_whatever_handles_them() -> None:
    from moltbot.masking import install_record_masking

    install_record_masking()  # import moltbot did it already: a second call changes nothing
    stream = io.StringIO()
    # A bare handler, as Prefect adds its API handler after moltbot is imported: no filter.
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger(f"moltbot.test.{uuid.uuid4().hex}")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        logger.warning("refund %s to 계좌 110-773-124680", "lee@example.com")
        try:
            raise RuntimeError("rrn 900101-1234567")
        except RuntimeError:
            logger.exception("failed for %s", "010-1234-5678")
    finally:
        logger.removeHandler(handler)

    output = stream.getvalue()
    assert output.startswith("refund ***@example.com to 계좌 ***\nfailed for ***\n")
    assert "RuntimeError: rrn ***" in output
    for leaked in ("lee@", "110-773-124680", "010-1234-5678", "900101-1234567"):
        assert leaked not in output


def test_records_keep_their_arguments_when_there_is_nothing_to_mask() -> None:
    record = logging.getLogger("moltbot.test").makeRecord(
        "moltbot.test", logging.INFO, __file__, 1, '%s "%s %s"', ("127.0.0.1", "GET", "/"), None
    )

    assert record.args == ("127.0.0.1", "GET", "/")  # uvicorn's access formatter needs them


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("kim@example.com으로 보내 주세요", "***@example.com으로 보내 주세요"),
        ("010-1234-5678로 연락", "***로 연락"),
        ("번호010-1234-5678", "번호***"),
        ("900101-1234567입니다", "***입니다"),
        ("카드4111111111111111입니다", "카드***입니다"),
        ("토큰ntn_1234567890abcdefghijABCDE을", "토큰***을"),
    ],
)
def test_korean_words_written_against_the_value_do_not_hide_it(text: str, masked: str) -> None:
    # Hangul counts as a word character in Python's regular expressions: the patterns' word
    # boundaries are ASCII ones, or a particle such as 으로 would keep the address readable.
    assert mask_text(text) == masked


def test_a_secret_url_registers_its_token_parts_too() -> None:
    token = f"{uuid.uuid4().hex[:24]}"
    register_secret(
        f"https://hooks.example.org/services/T0001/B0002/{token}?sig=ab12cd34ef56gh78ij"
    )
    register_secret(f"https://bot:pw-{token[:6]}@chat.example.org/hook")

    assert mask_text(f"upstream failed for {token}") == "upstream failed for ***"
    assert mask_text("sig ab12cd34ef56gh78ij") == "sig ***"
    assert mask_text(f"login pw-{token[:6]} refused") == "login *** refused"
    assert mask_text("services T0001 B0002 at hooks.example.org") == (
        "services T0001 B0002 at hooks.example.org"
    )


def test_moltbot_errors_are_masked_when_made() -> None:
    from moltbot.errors import DeliveryFailed, InputError, ServiceError

    refused = ServiceError.for_status("Jira answered 400: customer kim@example.com", 400)
    failed = DeliveryFailed("1 failure: card 4111 1111 1111 1111", {"deliveries": []})

    # The message is the run's state message, event and audit row: no log filter sees it.
    assert str(InputError("row 3: 900101-1234567 is not a date")) == "row 3: *** is not a date"
    assert str(refused) == "Jira answered 400: customer ***@example.com"
    assert (refused.status, refused.transient) == (400, False)
    assert str(failed) == "1 failure: card ***" and failed.result == {"deliveries": []}


def test_a_process_that_imports_a_flow_masks_what_prefect_ships_to_its_api() -> None:
    import subprocess
    import sys
    from pathlib import Path

    # What a flow run started by `serve` or a worker does first: import the flow's module, then
    # log through Prefect's run loggers, whose API handler no moltbot command set up.
    script = """
import logging
import flows.daily_report.flow
import prefect.main
from prefect.logging.handlers import APILogHandler

[api] = logging.getLogger("prefect.flow_runs").handlers
assert isinstance(api, APILogHandler) and not api.filters
logger = logging.getLogger("prefect.flow_runs")
record = logger.makeRecord(
    logger.name, logging.INFO, "flow.py", 1, "to %s", ("kim@example.com",), None
)
print(api.format(record))
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[2],
        timeout=HANG_GUARD_SECONDS,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout == "to ***@example.com\n"

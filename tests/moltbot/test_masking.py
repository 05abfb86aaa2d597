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
            '{"private_key": "***\\n"}',
        ),
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

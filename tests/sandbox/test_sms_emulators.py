"""Twilio and Solapi emulators, driven by the official `twilio` and `solapi` clients."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from solapi import SolapiMessageService
from solapi.error.MessageNotReceiveError import MessageNotReceivedError
from solapi.model import RequestMessage
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from moltbot.sandbox import Sandbox
from moltbot.sandbox.solapi import SANDBOX_API_KEY, SANDBOX_API_SECRET, SANDBOX_SENDER
from moltbot.sandbox.twilio import (
    SANDBOX_ACCOUNT_SID,
    SANDBOX_API_KEY_SECRET,
    SANDBOX_API_KEY_SID,
    SANDBOX_AUTH_TOKEN,
    SANDBOX_FROM_NUMBER,
)

KOREAN = "결제 API 응답 지연: 평균 3.2초"


def twilio_client(sandbox: Sandbox, token: str = SANDBOX_AUTH_TOKEN) -> Client:
    client = Client(SANDBOX_ACCOUNT_SID, token)
    client.api.base_url = f"{sandbox.base_url}/twilio"
    return client


def solapi_service(sandbox: Sandbox, secret: str = SANDBOX_API_SECRET) -> SolapiMessageService:
    service = SolapiMessageService(SANDBOX_API_KEY, secret)
    service.base_url = f"{sandbox.base_url}/solapi"
    return service


def test_twilio_create_answers_201_queued_with_segments_as_a_string(sandbox: Sandbox) -> None:
    created = twilio_client(sandbox).messages.create(
        to="+821012345678", from_=SANDBOX_FROM_NUMBER, body=KOREAN
    )
    raw = httpx.post(
        f"{sandbox.base_url}/twilio/2010-04-01/Accounts/{SANDBOX_ACCOUNT_SID}/Messages.json",
        data={"To": "+15551234567", "From": SANDBOX_FROM_NUMBER, "Body": "a" * 161},
        auth=(SANDBOX_ACCOUNT_SID, SANDBOX_AUTH_TOKEN),
    )

    assert created.sid.startswith("SM") and len(created.sid) == 34
    assert created.status == "queued" and created.num_segments == "1"
    assert raw.status_code == 201 and raw.json()["num_segments"] == "2"
    [korean, ascii_text] = sandbox.state.twilio.messages
    assert (korean.body, korean.encoding, korean.to) == (KOREAN, "UCS-2", "+821012345678")
    assert (ascii_text.encoding, ascii_text.num_segments) == ("GSM-7", 2)


def test_twilio_api_key_authenticates_and_a_wrong_token_is_20003(sandbox: Sandbox) -> None:
    with_key = Client(SANDBOX_API_KEY_SID, SANDBOX_API_KEY_SECRET, account_sid=SANDBOX_ACCOUNT_SID)
    with_key.api.base_url = f"{sandbox.base_url}/twilio"

    assert with_key.api.v2010.accounts(SANDBOX_ACCOUNT_SID).fetch().status == "active"
    with pytest.raises(TwilioRestException) as refused:
        twilio_client(sandbox, "wrong").messages.create(
            to="+821012345678", from_=SANDBOX_FROM_NUMBER, body="x"
        )
    assert (refused.value.status, refused.value.code) == (401, 20003)
    assert sandbox.state.twilio.messages == []


@pytest.mark.parametrize(
    ("setup", "to", "status", "code"),
    [
        (lambda state: None, "010-1234-5678", 400, 21211),
        (lambda state: state.unsubscribe("+821012345678"), "+821012345678", 400, 21610),
        (lambda state: state.block_region("+82"), "+821012345678", 400, 21408),
        (lambda state: state.exceed_concurrency(), "+821012345678", 429, 20429),
    ],
)
def test_twilio_refusals_carry_twilio_codes(sandbox: Sandbox, setup, to, status, code) -> None:
    setup(sandbox.state.twilio)

    with pytest.raises(TwilioRestException) as refused:
        twilio_client(sandbox).messages.create(to=to, from_=SANDBOX_FROM_NUMBER, body="x")

    assert (refused.value.status, refused.value.code) == (status, code)


def test_twilio_injected_429_has_retry_after_and_code_20429(sandbox: Sandbox) -> None:
    sandbox.state.twilio.inject_fault(429, retry_after=7)
    url = f"{sandbox.base_url}/twilio/2010-04-01/Accounts/{SANDBOX_ACCOUNT_SID}/Messages.json"

    answer = httpx.post(url, data={"To": "+15551234567", "From": SANDBOX_FROM_NUMBER, "Body": "x"})

    assert answer.status_code == 429 and answer.headers["Retry-After"] == "7"
    assert answer.json()["code"] == 20429


def test_solapi_send_many_detail_accepts_korean_and_picks_sms_by_bytes(sandbox: Sandbox) -> None:
    response = solapi_service(sandbox).send(
        [
            RequestMessage(from_=SANDBOX_SENDER, to="010-1234-5678", text="가" * 45),
            RequestMessage(from_=SANDBOX_SENDER, to="01098765432", text="가" * 46),
        ]
    )

    assert response.group_info.count.registered_success == 2
    [short, long] = sandbox.state.solapi.messages
    assert (short.to, short.type, short.size, short.text) == ("01012345678", "SMS", 90, "가" * 45)
    assert (long.type, long.size) == ("LMS", 92)


@pytest.mark.parametrize(
    ("message", "code"),
    [
        (RequestMessage(from_=SANDBOX_SENDER, to="01012345678", text="배포 😀"), "1029"),
        (
            RequestMessage(from_=SANDBOX_SENDER, to="01012345678", text="가" * 46, type="SMS"),
            "1031",
        ),
        (RequestMessage(from_=SANDBOX_SENDER, to="01012345678", text="a" * 2001), "1031"),
        (RequestMessage(from_="0299999999", to="01012345678", text="서버"), "1062"),
    ],
)
def test_solapi_refuses_messages_with_its_status_codes(sandbox: Sandbox, message, code) -> None:
    with pytest.raises(MessageNotReceivedError) as refused:
        solapi_service(sandbox).send(message)

    assert [failed.status_code for failed in refused.value.failed_messages] == [code]
    assert sandbox.state.solapi.messages == []
    assert sandbox.state.solapi.refused == [(code, "01012345678")]


def signed_header(date: str, salt: str, *, spelling: str = "apiKey=") -> str:
    signature = hmac.new(
        SANDBOX_API_SECRET.encode(), (date + salt).encode(), hashlib.sha256
    ).hexdigest()
    return (
        f"HMAC-SHA256 {spelling}{SANDBOX_API_KEY}, date={date}, salt={salt}, signature={signature}"
    )


def test_solapi_auth_keys_case_insensitive_and_a_signature_is_used_once(sandbox: Sandbox) -> None:
    date = datetime.now(UTC).isoformat()
    header = signed_header(date, "salt-0123456789", spelling="APIKEY=")
    url = f"{sandbox.base_url}/solapi/cash/v1/balance"

    first = httpx.get(url, headers={"Authorization": header})
    again = httpx.get(url, headers={"Authorization": header})

    assert first.status_code == 200 and first.json()["balance"] == 10000
    assert again.status_code == 403 and again.json()["errorCode"] == "DuplicatedSignature"


@pytest.mark.parametrize(
    ("offset_minutes", "error"), [(14, None), (-14, None), (16, "RequestTimeTooSkewed")]
)
def test_solapi_clock_skew_of_15_minutes(sandbox: Sandbox, offset_minutes, error) -> None:
    server_now = datetime.now(UTC) + timedelta(minutes=offset_minutes)
    sandbox.state.solapi.clock = lambda: server_now

    if error is None:
        assert solapi_service(sandbox).get_balance().balance == 10000
    else:
        with pytest.raises(Exception) as refused:
            solapi_service(sandbox).get_balance()
        assert refused.value.args[0] == error


def test_solapi_wrong_secret_is_signature_mismatch(sandbox: Sandbox) -> None:
    with pytest.raises(Exception) as refused:
        solapi_service(sandbox, "wrong-secret").get_balance()

    assert refused.value.args[0] == "SignatureDoesNotMatch"

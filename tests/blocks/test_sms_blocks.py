"""Twilio and Solapi SMS blocks against the sandbox, alone and as links of an effects route."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from blocks import SolapiSms, TwilioSms
from moltbot.blockcheck import check_block
from moltbot.effects import ChannelExecutor, EffectsRuntime, Route, perform
from moltbot.effects.executors import message_intent
from moltbot.errors import DeliveryError
from moltbot.messages import Message
from moltbot.retrying import RetryPolicy
from moltbot.sandbox import Sandbox
from moltbot.sandbox.solapi import SANDBOX_API_KEY, SANDBOX_API_SECRET, SANDBOX_SENDER
from moltbot.sandbox.twilio import SANDBOX_ACCOUNT_SID, SANDBOX_AUTH_TOKEN, SANDBOX_FROM_NUMBER
from moltbot.sms import carrier_bytes, sms_segments
from moltbot.state.ledger import Ledger

LINK = "https://moltbot.example/alerts/42"
ONCALL = "+821012345678"
ROUTE = Route(("oncall-sms-twilio", "oncall-sms-solapi"))


def alert(item: str = "1") -> Message:
    return Message(
        key=f"service-health:{item}",
        automation="service-health",
        severity="critical",
        title="결제 API 응답 지연",
        text=(
            "결제 API 응답 시간이 지난 5분 동안 평균 3.2초로 기준 1초를 넘었습니다. "
            "최근 배포와 데이터베이스 연결 수를 확인하고 필요하면 롤백하세요. 🚨\n" + LINK
        ),
    )


def twilio_block(sandbox: Sandbox, **fields: object) -> TwilioSms:
    values: dict[str, object] = {
        "account_sid": SANDBOX_ACCOUNT_SID,
        "auth_token": SANDBOX_AUTH_TOKEN,
        "from_number": SANDBOX_FROM_NUMBER,
        "to_numbers": [ONCALL],
        "base_url": f"{sandbox.base_url}/twilio",
    }
    return TwilioSms(**(values | fields))


def solapi_block(sandbox: Sandbox, **fields: object) -> SolapiSms:
    values: dict[str, object] = {
        "api_key": SANDBOX_API_KEY,
        "api_secret": SANDBOX_API_SECRET,
        "from_number": SANDBOX_SENDER,
        "to_numbers": ["010-1234-5678"],
        "base_url": f"{sandbox.base_url}/solapi",
    }
    return SolapiSms(**(values | fields))


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 3, 3, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def ledger(tmp_path: Path):
    with Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite3'}") as opened:
        yield opened


@pytest.fixture
def waits() -> list[float]:
    return []


@pytest.fixture
def runtime(sandbox: Sandbox, ledger: Ledger, waits: list[float]):
    def build(twilio: TwilioSms | None = None) -> EffectsRuntime:
        return EffectsRuntime(
            ledger=ledger,
            executors={
                "oncall-sms-twilio": ChannelExecutor(
                    "oncall-sms-twilio", twilio or twilio_block(sandbox)
                ),
                "oncall-sms-solapi": ChannelExecutor("oncall-sms-solapi", solapi_block(sandbox)),
            },
            retry=RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02),
            hold_wait_seconds=0,
            clock=Clock(),
            sleep=waits.append,
        )

    return build


def test_korean_alert_is_one_twilio_segment_with_the_link_kept(sandbox: Sandbox) -> None:
    sid = twilio_block(sandbox).send(alert())

    [received] = sandbox.state.twilio.messages
    assert received.sid == sid and received.to == ONCALL
    assert received.num_segments == 1 and received.encoding == "UCS-2"
    lines = received.body.split("\n")
    assert lines[0] == "결제 API 응답 지연" and lines[-1] == LINK
    assert lines[1].endswith("…")  # cut after a whole word
    assert "결제 API 응답 시간이".startswith(lines[1][:10])
    assert sms_segments(received.body).characters <= 70


def test_korean_alert_is_one_solapi_lms_or_sms_by_the_blocks_max_type(sandbox: Sandbox) -> None:
    solapi_block(sandbox).send(alert("lms"))
    solapi_block(sandbox, max_type="SMS").send(alert("sms"))

    [lms, sms] = sandbox.state.solapi.messages
    assert (lms.type, sms.type) == ("LMS", "SMS")
    assert lms.text.endswith(LINK) and sms.text.endswith(LINK)
    assert "롤백하세요." in lms.text and "🚨" not in lms.text  # whole, emoji dropped
    assert carrier_bytes(sms.text) <= 90 and sms.size == carrier_bytes(sms.text)
    assert sms.text.split("\n")[1].endswith("…")


def test_to_numbers_are_validated_with_one_line_naming_the_field(sandbox: Sandbox) -> None:
    with pytest.raises(ValidationError) as bad:
        twilio_block(sandbox, to_numbers=[ONCALL, "010-1234-5678"])
    with pytest.raises(ValidationError) as bad_korean:
        solapi_block(sandbox, to_numbers=["12345"])

    # Our own line names the position, never the number (pydantic adds the input itself).
    [error] = bad.value.errors()
    assert error["msg"] == "Value error, to_numbers[1] is not an E.164 number (+ and country code)"
    [korean_error] = bad_korean.value.errors()
    assert "to_numbers[0] is not a Korean phone number" in korean_error["msg"]


def test_auth_failure_is_one_permanent_line_naming_the_saved_block(
    sandbox: Sandbox, prefect_api: str
) -> None:
    name = f"oncall-sms-{uuid.uuid4().hex[:6]}"
    twilio_block(sandbox, auth_token="wrong-token-4711").save(name)
    solapi_block(sandbox, api_secret="wrong-secret-4711").save(name)

    with pytest.raises(DeliveryError) as twilio_refused:
        TwilioSms.load(name).send(alert())
    with pytest.raises(DeliveryError) as solapi_refused:
        SolapiSms.load(name).send(alert())

    for refused, secret in ((twilio_refused, "4711"), (solapi_refused, "4711")):
        text = str(refused.value)
        assert "\n" not in text and secret not in text and not refused.value.transient
    assert str(twilio_refused.value).startswith(f"Twilio SMS block {name!r}: ")
    assert "20003" in str(twilio_refused.value)
    assert str(solapi_refused.value).startswith(f"Solapi SMS block {name!r}: ")
    assert "SignatureDoesNotMatch" in str(solapi_refused.value)


def test_a_refused_recipient_is_skipped_and_all_refused_is_permanent(sandbox: Sandbox) -> None:
    other = "+821098765432"
    sandbox.state.twilio.unsubscribe(ONCALL)

    sid = twilio_block(sandbox, to_numbers=[ONCALL, other]).send(alert())
    with pytest.raises(DeliveryError, match=r"recipient 1: 21610") as refused:
        twilio_block(sandbox).send(alert("2"))

    assert [m.to for m in sandbox.state.twilio.messages] == [other]
    assert sid == sandbox.state.twilio.messages[0].sid
    assert not refused.value.transient


@pytest.mark.parametrize(
    ("fault", "retry_after"),
    [
        (lambda state: state.inject_fault(429, retry_after=7), 7.0),  # Retry-After honoured
        (lambda state: state.exceed_concurrency(), None),  # 20429 names no wait: backoff
        (lambda state: state.inject_fault(503), None),
        (lambda state: state.inject_fault(500, kind="drop"), None),
    ],
    ids=["429-retry-after", "429-no-retry-after", "503", "dropped"],
)
def test_twilio_transient_failure_is_retried_and_delivered_once(
    sandbox: Sandbox, runtime, waits, fault, retry_after
) -> None:
    fault(sandbox.state.twilio)

    [outcome] = perform([message_intent(alert(), ROUTE)], runtime())

    assert outcome.status == "done" and outcome.via == "oncall-sms-twilio"
    assert len(sandbox.state.twilio.messages) == 1
    assert sandbox.state.solapi.messages == []
    # One wait: the server's Retry-After when it named one, else the policy's short backoff.
    [waited] = waits
    assert waited == retry_after if retry_after else 0 < waited <= 0.02


@pytest.mark.parametrize(
    "fault",
    [
        lambda state: state.inject_fault(429, count=1000, retry_after=5),
        lambda state: state.inject_fault(503, count=1000),
        lambda state: state.inject_fault(500, kind="drop", count=1000),
    ],
    ids=["429", "503", "dropped"],
)
def test_twilio_down_fails_over_to_solapi_once(sandbox: Sandbox, runtime, fault) -> None:
    fault(sandbox.state.twilio)

    [outcome] = perform([message_intent(alert(), ROUTE)], runtime())
    [again] = perform([message_intent(alert(), ROUTE)], runtime())

    assert outcome.status == "done" and outcome.via == "oncall-sms-solapi"
    assert [t.link for t in outcome.tried] == ["oncall-sms-twilio"]
    assert again.status == "already_done"
    [received] = sandbox.state.solapi.messages
    assert received.text.startswith("결제 API 응답 지연\n") and received.text.endswith(LINK)
    assert sandbox.state.twilio.messages == []


@pytest.mark.parametrize(
    "fault",
    [
        lambda state: state.inject_fault(429),
        lambda state: state.inject_fault(503),
        lambda state: state.inject_fault(500, kind="drop"),
    ],
    ids=["429", "503", "dropped"],
)
def test_solapi_transient_failure_is_retried_and_delivered_once(
    sandbox: Sandbox, runtime, waits, fault
) -> None:
    route = Route(("oncall-sms-solapi", "oncall-sms-twilio"))
    fault(sandbox.state.solapi)

    [outcome] = perform([message_intent(alert(), route)], runtime())

    assert outcome.status == "done" and outcome.via == "oncall-sms-solapi"
    assert len(sandbox.state.solapi.messages) == 1 and sandbox.state.twilio.messages == []
    # The solapi client keeps no response headers: a Retry-After cannot reach us; backoff.
    [waited] = waits
    assert 0 < waited <= 0.02


def test_solapi_auth_failure_fails_over_to_twilio(sandbox: Sandbox, ledger, waits) -> None:
    route = Route(("oncall-sms-solapi", "oncall-sms-twilio"))
    runtime = EffectsRuntime(
        ledger=ledger,
        executors={
            "oncall-sms-solapi": ChannelExecutor(
                "oncall-sms-solapi", solapi_block(sandbox, api_secret="wrong")
            ),
            "oncall-sms-twilio": ChannelExecutor("oncall-sms-twilio", twilio_block(sandbox)),
        },
        retry=RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02),
        hold_wait_seconds=0,
        sleep=waits.append,
    )

    [outcome] = perform([message_intent(alert(), route)], runtime)

    assert outcome.via == "oncall-sms-twilio" and "SignatureDoesNotMatch" in outcome.tried[0].error
    assert waits == []  # a refused login is not retried
    assert len(sandbox.state.twilio.messages) == 1


def test_dry_run_previews_the_shortened_text_and_its_cost(sandbox: Sandbox, runtime) -> None:
    [outcome] = perform([message_intent(alert(), ROUTE)], runtime(), dry_run=True)

    text = twilio_block(sandbox).text(alert())
    count = sms_segments(text)
    assert outcome.preview.lines == [
        *text.split("\n"),
        f"(1 segment(s), UCS-2, {count.characters} characters; 1 recipient(s))",
    ]
    assert count.segments == 1 and outcome.preview.lines[-2] == LINK
    assert sandbox.state.twilio.attempts == 0 and sandbox.state.twilio.messages == []


def test_blocks_test_checks_both_with_an_authenticated_no_op(
    sandbox: Sandbox, prefect_api: str
) -> None:
    name = f"sms-check-{uuid.uuid4().hex[:6]}"
    twilio_block(sandbox).save(f"{name}-twilio")
    solapi_block(sandbox).save(f"{name}-solapi")
    twilio_block(sandbox, auth_token="wrong-4711").save(f"{name}-bad")

    twilio = check_block(f"{name}-twilio")
    solapi = check_block(f"{name}-solapi")
    bad = check_block(f"{name}-bad")

    assert twilio.ok and "no message was sent" in twilio.detail
    assert solapi.ok and "balance 10,000" in solapi.detail
    assert bad.ok is False and "20003" in bad.detail and "4711" not in bad.detail
    assert sandbox.state.twilio.messages == [] and sandbox.state.solapi.messages == []
    assert sandbox.state.twilio.core.count("GET", r"/Accounts/AC[0-9a-f]+\.json$") == 2
    assert sandbox.state.solapi.core.count("GET", r"^/cash/v1/balance$") == 1

"""Solapi messages v4 emulator (mounted at /solapi): HMAC auth, send-many/detail, balance."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from moltbot.sandbox.kit import (
    CONTROL_PREFIX,
    EmulatorCore,
    RouteFault,
    install_emulator,
    read_json_object,
)
from moltbot.sms import (
    SOLAPI_LMS_BYTES,
    SOLAPI_SMS_BYTES,
    carrier_bytes,
    is_carrier_encodable,
)

SANDBOX_API_KEY = "NCSSANDBOX0000001"
SANDBOX_API_SECRET = "sandbox-solapi-api-secret-0000000000"
SANDBOX_ACCOUNT_ID = "26120300000001"
SANDBOX_SENDER = "0212345678"
"""The one pre-registered sending number (발신번호) of the sandbox account."""

# authentication/api-key.md: a signature is refused ±15 minutes off the server's clock, and
# once used it may not be used again within those 15 minutes.
MAX_SKEW = timedelta(minutes=15)
_SEND_ROUTE = r"^/messages/v4/send-many"
_AUTH_PART = re.compile(r"\s*([A-Za-z]+)=([^,\s]*)\s*,?")
# message-status-codes.md: what each refusal code means.
STATUS_MESSAGES = {
    "2000": "정상 접수(이통사로 접수 예정) ",
    "1010": "필수 입력 값 미입력",
    "1013": "제목은 문자 타입이 'SMS'일 경우 사용이 불가능합니다.",
    "1025": "잘못된 메시지 타입",
    "1029": "문자메시지의 경우 EUC-KR(완성형 한글) 범위 안에 있는 문자만 사용 합니다.",
    "1031": "SMS는 90byte LMS, MMS는 2000byte 까지 사용 가능 합니다.",
    "1062": "발신번호 미등록",
}
_LIMITS = {"SMS": SOLAPI_SMS_BYTES, "LMS": SOLAPI_LMS_BYTES, "MMS": SOLAPI_LMS_BYTES}
_PRICES = {"SMS": 8.4, "LMS": 27.5, "MMS": 72.0}
_FAULT_CODES = {429: "TooManyRequests"}


@dataclass(frozen=True)
class SolapiMessage:
    """A message the emulator accepted (status 2000).

    Attributes:
        message_id: Solapi's message id.
        group_id: the send's group id.
        to: recipient digits.
        sender: the registered sending number.
        text: the text as received (Korean intact).
        type: ``SMS`` or ``LMS`` (given, or chosen by its bytes).
        size: its EUC-KR bytes.
        received_at: when it arrived (UTC).
    """

    message_id: str
    group_id: str
    to: str
    sender: str
    text: str
    type: str
    size: int
    received_at: datetime


class SolapiState:
    """In-memory state of the Solapi emulator.

    Attributes:
        messages: accepted messages, oldest first.
        refused: refused messages as (status code, recipient), oldest first.
        senders: registered sending numbers; others are refused with 1062.
        core: request log and injected faults.
        clock: the server's clock (UTC) for the ±15-minute check; tests replace it.
    """

    def __init__(self, clock: Callable[[], datetime] | None = None) -> None:
        self.core = EmulatorCore("solapi")
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()
        self._messages: list[SolapiMessage] = []
        self._refused: list[tuple[str, str]] = []
        self._signatures: dict[str, datetime] = {}
        self.senders: set[str] = {SANDBOX_SENDER}

    @property
    def messages(self) -> list[SolapiMessage]:
        with self._lock:
            return list(self._messages)

    @property
    def refused(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._refused)

    @property
    def attempts(self) -> int:
        """Send requests received, accepted, refused or faulted."""
        return self.core.count("POST", _SEND_ROUTE)

    def inject_fault(
        self, status: int, count: int = 1, *, retry_after: int | None = None, kind: str = "status"
    ) -> RouteFault:
        """Make the next `count` sends answer `status` (``{"errorCode","errorMessage"}``)
        or, with ``kind="drop"``, lose their connection."""
        return self.core.inject_fault(
            status,
            kind=kind,
            count=count,
            retry_after=retry_after,
            path=_SEND_ROUTE,  # type: ignore[arg-type]
        )

    def clear_faults(self) -> None:
        self.core.clear_faults()

    def reset(self) -> None:
        """No messages, signatures or faults; the real clock; only the sandbox sender."""
        self.core.reset()
        with self._lock:
            self._messages.clear()
            self._refused.clear()
            self._signatures.clear()
        self.clock = lambda: datetime.now(UTC)
        self.senders = {SANDBOX_SENDER}

    def check_authorization(self, header: str) -> str | None:
        """The error code for an ``Authorization`` header, None when it is valid (and then
        its signature is used up for 15 minutes)."""
        method, _, rest = header.strip().partition(" ")
        if method.upper() != "HMAC-SHA256":
            return "InvalidAPIKey"
        # The official Python client spells `ApiKey=` and `Date=`; the docs `apiKey=`, `date=`.
        parts = {key.lower(): value for key, value in _AUTH_PART.findall(rest)}
        if parts.get("apikey") != SANDBOX_API_KEY:
            return "InvalidAPIKey"
        try:
            date = datetime.fromisoformat(parts.get("date", ""))
        except ValueError:
            return "RequestTimeTooSkewed"
        if date.tzinfo is None:
            date = date.replace(tzinfo=UTC)
        now = self.clock()
        if abs(now - date) > MAX_SKEW:
            return "RequestTimeTooSkewed"
        salt, signature = parts.get("salt", ""), parts.get("signature", "")
        expected = hmac.new(
            SANDBOX_API_SECRET.encode(), (parts.get("date", "") + salt).encode(), hashlib.sha256
        ).hexdigest()
        if not 12 <= len(salt) <= 64 or not hmac.compare_digest(expected, signature):
            return "SignatureDoesNotMatch"
        with self._lock:
            self._signatures = {
                used: at for used, at in self._signatures.items() if now - at <= MAX_SKEW
            }
            if signature in self._signatures:
                return "DuplicatedSignature"
            self._signatures[signature] = now
        return None

    def _record(self, message: SolapiMessage) -> None:
        with self._lock:
            self._messages.append(message)

    def _refuse(self, code: str, to: str) -> None:
        with self._lock:
            self._refused.append((code, to))


def solapi_error(status: int, code: str, message: str) -> JSONResponse:
    """Solapi's error body (the client raises ``Exception(errorCode, errorMessage)``)."""
    return JSONResponse({"errorCode": code, "errorMessage": message}, status_code=status)


def _fault_response(status: int, message: str) -> Response:
    return solapi_error(status, _FAULT_CODES.get(status, "InternalError"), message)


def _message_status(message: dict[str, Any], senders: set[str]) -> tuple[str, str]:
    """(status code, type) of one message of a send."""
    text, to, sender = message.get("text"), message.get("to"), message.get("from")
    if not isinstance(text, str) or not text or not isinstance(to, str) or not sender:
        return "1010", "SMS"
    if not is_carrier_encodable(text):
        return "1029", str(message.get("type") or "SMS")
    size = carrier_bytes(text)
    kind = message.get("type")
    if kind is None:
        kind = "SMS" if size <= SOLAPI_SMS_BYTES else "LMS"  # autoTypeDetect
    kind = str(kind).upper()
    if kind not in _LIMITS:
        return "1025", kind
    if kind == "SMS" and message.get("subject"):
        return "1013", kind
    if size > _LIMITS[kind]:
        return "1031", kind
    if str(sender).replace("-", "") not in senders:
        return "1062", kind
    return "2000", kind


def _group_info(group_id: str, accepted: list[SolapiMessage], failed: int) -> dict[str, Any]:
    """The `groupInfo` object, with every field solapi's `GroupMessageResponse` requires."""
    stamp = datetime.now(UTC).isoformat()
    counts: dict[str, dict[str, float]] = {}
    for message in accepted:
        counts.setdefault(message.type.lower(), {"82": 0})["82"] += 1
    requested = sum(_PRICES[message.type] for message in accepted)
    cash = {"requested": requested, "replacement": 0, "refund": 0, "sum": requested}
    zero = {"requested": 0, "replacement": 0, "refund": 0, "sum": 0}
    return {
        "count": {
            "total": len(accepted) + failed,
            "sentTotal": 0,
            "sentSuccess": 0,
            "sentPending": 0,
            "sentReplacement": 0,
            "refund": 0,
            "registeredFailed": failed,
            "registeredSuccess": len(accepted),
        },
        "countForCharge": counts,
        "balance": cash,
        "point": zero,
        "app": {"profit": {"sms": 0, "lms": 0}, "appId": None},
        "log": [{"createAt": stamp, "message": "메시지 그룹이 생성되었습니다."}],
        "status": "SENDING" if accepted else "FAILED",
        "allowDuplicates": False,
        "isRefunded": False,
        "accountId": SANDBOX_ACCOUNT_ID,
        "masterAccountId": None,
        "apiVersion": "4",
        "groupId": group_id,
        "price": {"82": {kind.lower(): price for kind, price in _PRICES.items()}},
        "dateCreated": stamp,
        "dateUpdated": stamp,
    }


def create_solapi_app(state: SolapiState) -> FastAPI:
    """Build the Solapi sub-app (mounted under ``/solapi``) serving `state`."""
    app = FastAPI(title="moltbot sandbox: Solapi messages v4")

    def auth_error(request: Request) -> Response | None:
        code = state.check_authorization(request.headers.get("authorization", ""))
        return None if code is None else solapi_error(403, code, f"{code} (moltbot sandbox)")

    @app.post("/messages/v4/send-many/detail")
    async def send_many(request: Request) -> Response:
        refused = auth_error(request)
        if refused is not None:
            return refused
        try:
            body = await read_json_object(request, lambda problem: ValueError(problem))
        except ValueError as exc:
            return solapi_error(400, "ValidationError", f"body is {exc}")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return solapi_error(400, "ValidationError", "messages is required")
        group_id = "G4V" + secrets.token_hex(10).upper()
        accepted: list[SolapiMessage] = []
        failed: list[dict[str, Any]] = []
        items: list[dict[str, Any]] = []
        for message in messages:
            message = message if isinstance(message, dict) else {}
            code, kind = _message_status(message, state.senders)
            message_id = "M4V" + secrets.token_hex(10).upper()
            to = str(message.get("to") or "")
            if code != "2000":
                state._refuse(code, to)
                failed.append(
                    {
                        "to": to,
                        "from": message.get("from"),
                        "type": kind,
                        "statusMessage": STATUS_MESSAGES.get(code, code),
                        "country": str(message.get("country") or "82"),
                        "messageId": message_id,
                        "statusCode": code,
                        "accountId": SANDBOX_ACCOUNT_ID,
                    }
                )
                continue
            text = str(message["text"])
            record = SolapiMessage(
                message_id,
                group_id,
                to,
                str(message["from"]),
                text,
                kind,
                carrier_bytes(text),
                datetime.now(UTC),
            )
            state._record(record)
            accepted.append(record)
            items.append(
                {
                    "messageId": message_id,
                    "statusCode": "2000",
                    "statusMessage": STATUS_MESSAGES["2000"],
                }
            )
        return JSONResponse(
            {
                "failedMessageList": failed,
                "groupInfo": _group_info(group_id, accepted, len(failed)),
                "messageList": items,
            }
        )

    @app.get("/cash/v1/balance")
    def balance(request: Request) -> Response:
        refused = auth_error(request)
        if refused is not None:
            return refused
        return JSONResponse(
            {"balance": 10000, "point": 0, "accountId": SANDBOX_ACCOUNT_ID, "minimumCash": 0}
        )

    install_emulator(app, state.core, _fault_response)

    @app.get(f"{CONTROL_PREFIX}/messages")
    def list_messages() -> JSONResponse:
        return JSONResponse(
            [
                {
                    "messageId": m.message_id,
                    "groupId": m.group_id,
                    "to": m.to,
                    "from": m.sender,
                    "text": m.text,
                    "type": m.type,
                    "bytes": m.size,
                    "receivedAt": m.received_at.isoformat(),
                }
                for m in state.messages
            ]
        )

    return app

"""Twilio Messages API emulator (mounted at /twilio): create a message, fetch the account."""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from moltbot.sandbox.kit import CONTROL_PREFIX, EmulatorCore, RouteFault, install_emulator
from moltbot.sms import TWILIO_MAX_CHARS, sms_segments

API_VERSION = "2010-04-01"
SANDBOX_ACCOUNT_SID = "AC" + "5a" * 16
SANDBOX_AUTH_TOKEN = "sandbox-twilio-auth-token"
SANDBOX_API_KEY_SID = "SK" + "5b" * 16
SANDBOX_API_KEY_SECRET = "sandbox-twilio-api-key-secret"
SANDBOX_FROM_NUMBER = "+15005550006"

_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_MESSAGES_ROUTE = r"^/2010-04-01/Accounts/[^/]+/Messages\.json$"
# twilio.com/docs/api/errors/<code>: the Twilio code each HTTP status of a fault carries.
_FAULT_CODES = {401: 20003, 404: 20404, 429: 20429, 500: 20500, 503: 20503}
ERROR_MESSAGES: dict[int, str] = {
    20003: "Authenticate",
    20404: "The requested resource was not found",
    20429: "Too Many Requests",
    20500: "An internal server error has occurred",
    20503: "Service unavailable",
    21211: "The 'To' number is not a valid phone number.",
    21408: "Permission to send an SMS has not been enabled for the region indicated by the 'To' "
    "number.",
    21602: "Message body is required.",
    21603: "The 'From' phone number is required.",
    21604: "The 'To' phone number is required.",
    21610: "Attempt to send to unsubscribed recipient",
    21617: "The concatenated message body exceeds the 1600 character limit.",
}


@dataclass(frozen=True)
class TwilioMessage:
    """A message the emulator accepted (answered 201 queued).

    Attributes:
        sid: ``SM`` + 32 hex digits.
        account_sid: the account it was sent on.
        to: recipient (E.164).
        sender: the From number, or None when a Messaging Service sent it.
        messaging_service_sid: the Messaging Service, if one was named.
        body: the text as received (Korean intact).
        num_segments: billed segments by the GSM-7/UCS-2 rules (`moltbot.sms.sms_segments`).
        encoding: ``GSM-7`` or ``UCS-2``.
        received_at: when it arrived (UTC).
    """

    sid: str
    account_sid: str
    to: str
    sender: str | None
    messaging_service_sid: str | None
    body: str
    num_segments: int
    encoding: str
    received_at: datetime

    def to_dict(self) -> dict[str, Any]:
        """Twilio's Message resource for it (what create answers)."""
        stamp = format_datetime(self.received_at)
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{self.sid}.json"
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": self.body,
            "date_created": stamp,
            "date_sent": None,
            "date_updated": stamp,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": self.sender,
            "messaging_service_sid": self.messaging_service_sid,
            "num_media": "0",
            "num_segments": str(self.num_segments),
            "price": None,
            "price_unit": "USD",
            "sid": self.sid,
            "status": "accepted" if self.messaging_service_sid else "queued",
            "subresource_uris": {"media": uri.replace(".json", "/Media.json")},
            "to": self.to,
            "uri": uri,
        }


class TwilioState:
    """In-memory state of the Twilio emulator: accounts, keys, messages, refusals, faults.

    Attributes:
        messages: accepted messages, oldest first.
        unsubscribed: numbers that replied STOP (answer 21610).
        blocked_prefixes: number prefixes outside the Geo Permissions (answer 21408).
        core: request log and injected faults (`moltbot.sandbox.kit`).
    """

    def __init__(self) -> None:
        self.core = EmulatorCore("twilio", messages={})
        self._lock = threading.Lock()
        self._messages: list[TwilioMessage] = []
        self._unsubscribed: set[str] = set()
        self._blocked_prefixes: set[str] = set()
        self._over_concurrency = 0

    @property
    def messages(self) -> list[TwilioMessage]:
        with self._lock:
            return list(self._messages)

    @property
    def attempts(self) -> int:
        """Message creates received, accepted, refused or faulted."""
        return self.core.count("POST", _MESSAGES_ROUTE)

    def messages_to(self, number: str) -> list[TwilioMessage]:
        """Accepted messages for one recipient."""
        return [message for message in self.messages if message.to == number]

    def unsubscribe(self, number: str) -> None:
        """Make `number` answer 21610, as after the recipient replied STOP."""
        with self._lock:
            self._unsubscribed.add(number)

    def block_region(self, prefix: str) -> None:
        """Make numbers starting with `prefix` (``+82``) answer 21408 (Geo Permissions)."""
        with self._lock:
            self._blocked_prefixes.add(prefix)

    def exceed_concurrency(self, count: int = 1) -> None:
        """Make the next `count` creates answer Twilio's own 429 (error 20429, too many
        concurrent requests), which names no ``Retry-After``; `inject_fault` (429) sends one."""
        with self._lock:
            self._over_concurrency += count

    def inject_fault(
        self, status: int, count: int = 1, *, retry_after: int | None = None, kind: str = "status"
    ) -> RouteFault:
        """Make the next `count` message creates answer `status` (Twilio's error JSON with
        its code: 429 → 20429) or, with ``kind="drop"``, lose their connection."""
        return self.core.inject_fault(
            status,
            kind=kind,
            count=count,
            retry_after=retry_after,
            path=_MESSAGES_ROUTE,  # type: ignore[arg-type]
        )

    def clear_faults(self) -> None:
        self.core.clear_faults()

    def reset(self) -> None:
        """No messages, refusals or faults."""
        self.core.reset()
        with self._lock:
            self._messages.clear()
            self._unsubscribed.clear()
            self._blocked_prefixes.clear()
            self._over_concurrency = 0

    def _take_concurrency_refusal(self) -> bool:
        with self._lock:
            if self._over_concurrency <= 0:
                return False
            self._over_concurrency -= 1
            return True

    def _refusal(self, to: str) -> int | None:
        with self._lock:
            if to in self._unsubscribed:
                return 21610
            if any(to.startswith(prefix) for prefix in self._blocked_prefixes):
                return 21408
        return None

    def _record(self, message: TwilioMessage) -> None:
        with self._lock:
            self._messages.append(message)


def twilio_error(status: int, code: int, message: str | None = None) -> JSONResponse:
    """Twilio's error body (`TwilioRestException` reads code, message, more_info, status)."""
    return JSONResponse(
        {
            "code": code,
            "message": message or ERROR_MESSAGES.get(code, "Error"),
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
        status_code=status,
    )


def _fault_response(status: int, message: str) -> Response:
    code = _FAULT_CODES.get(status, 20500 if status >= 500 else 21000)
    return twilio_error(status, code, ERROR_MESSAGES.get(code, message))


def _authenticated_account(request: Request, account_sid: str) -> bool:
    header = request.headers.get("authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    if account_sid != SANDBOX_ACCOUNT_SID:
        return False
    return (user, password) in (
        (SANDBOX_ACCOUNT_SID, SANDBOX_AUTH_TOKEN),
        (SANDBOX_API_KEY_SID, SANDBOX_API_KEY_SECRET),
    )


def create_twilio_app(state: TwilioState) -> FastAPI:
    """Build the Twilio sub-app (mounted under ``/twilio``) serving `state`."""
    app = FastAPI(title="moltbot sandbox: Twilio Messages")

    @app.post(f"/{API_VERSION}/Accounts/{{account_sid}}/Messages.json")
    async def create_message(account_sid: str, request: Request) -> Response:
        if not _authenticated_account(request, account_sid):
            return twilio_error(401, 20003)
        if state._take_concurrency_refusal():
            return twilio_error(429, 20429)
        form = parse_qs((await request.body()).decode("utf-8"), keep_blank_values=True)

        def field(name: str) -> str | None:
            values = form.get(name)
            return values[0] if values else None

        to, body = field("To"), field("Body")
        sender, service = field("From"), field("MessagingServiceSid")
        if not to:
            return twilio_error(400, 21604)
        if not _E164.fullmatch(to):
            return twilio_error(400, 21211)
        if not sender and not service:
            return twilio_error(400, 21603)
        if not body:
            return twilio_error(400, 21602)
        count = sms_segments(body)
        if count.characters > TWILIO_MAX_CHARS:
            return twilio_error(400, 21617)
        refusal = state._refusal(to)
        if refusal is not None:
            return twilio_error(400, refusal)
        message = TwilioMessage(
            sid="SM" + secrets.token_hex(16),
            account_sid=account_sid,
            to=to,
            sender=sender,
            messaging_service_sid=service,
            body=body,
            num_segments=count.segments,
            encoding=count.encoding,
            received_at=datetime.now(UTC),
        )
        state._record(message)
        return JSONResponse(message.to_dict(), status_code=201)

    @app.get(f"/{API_VERSION}/Accounts/{{account_sid}}.json")
    def fetch_account(account_sid: str, request: Request) -> Response:
        if not _authenticated_account(request, account_sid):
            return twilio_error(401, 20003)
        return JSONResponse(
            {
                "sid": account_sid,
                "friendly_name": "moltbot sandbox",
                "status": "active",
                "type": "Full",
                "uri": f"/{API_VERSION}/Accounts/{account_sid}.json",
            }
        )

    install_emulator(app, state.core, _fault_response)

    @app.get(f"{CONTROL_PREFIX}/messages")
    def list_messages() -> JSONResponse:
        return JSONResponse([message.to_dict() for message in state.messages])

    return app

"""SMS channel blocks: Twilio Messages (official `twilio` client) and Solapi (official `solapi`)."""

from __future__ import annotations

import re
from typing import Any, Literal, Self

import httpx
import requests
from prefect.blocks.core import Block
from pydantic import Field, PrivateAttr, SecretStr, field_validator, model_validator

from blocks.rotation import SecretSetAt, SecretStamped
from moltbot.errors import DeliveryError
from moltbot.messages import Message
from moltbot.ratelimits import RateLimiter, rate_gate
from moltbot.retrying import retry_after_seconds
from moltbot.sms import (
    SOLAPI_LMS_BYTES,
    SOLAPI_SMS_BYTES,
    ByteBudget,
    SegmentBudget,
    carrier_bytes,
    message_sms_parts,
    shorten_for_sms,
    sms_segments,
    to_carrier_charset,
)

E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_KOREAN_NUMBER = re.compile(r"^0\d{7,10}$")
_TWILIO_HOST = re.compile(r"^https://[^/]+\.twilio\.com")

# twilio.com/docs/api/errors/<code>: refusals of one recipient, not of the account or message.
TWILIO_RECIPIENT_CODES: dict[int, str] = {
    21211: "not a valid phone number",
    21408: "its region is not enabled in Geo Permissions",
    21610: "it has unsubscribed (replied STOP)",
    21608: "a trial account may only send to verified numbers",
    21614: "not a mobile number",
}
TWILIO_AUTH_CODE = 20003
TWILIO_TOO_MANY_REQUESTS = 20429
# Solapi's 403 auth errors (solapi/documents authentication/api-key.md).
SOLAPI_AUTH_CODES = frozenset(
    {"InvalidAPIKey", "SignatureDoesNotMatch", "RequestTimeTooSkewed", "DuplicatedSignature"}
)
SOLAPI_TOO_MANY_REQUESTS = "TooManyRequests"


def _block_label(block: Block, kind: str) -> str:
    name = getattr(block, "_block_document_name", None)
    return f"{kind} block {name!r}" if name else f"{kind} block"


def _validate_numbers(numbers: list[str], field: str, pattern: re.Pattern[str], form: str) -> None:
    for index, number in enumerate(numbers):
        if not pattern.fullmatch(number):
            # The number itself is personal data: name its position, not its digits.
            raise ValueError(f"{field}[{index}] is not {form}")


class _LocalTwilioHttp:
    """Builds the `twilio` HTTP client that sends to `base_url` instead of ``*.twilio.com``
    (INTEGRATIONS-2.md §2) and keeps the last answer's ``Retry-After``."""

    @staticmethod
    def build(base_url: str | None, timeout: float) -> Any:
        from twilio.http.http_client import TwilioHttpClient

        class LocalTwilioHttp(TwilioHttpClient):
            retry_after: str | None = None

            def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
                if base_url:
                    url = _TWILIO_HOST.sub(base_url.rstrip("/"), url)
                response = super().request(method, url, *args, **kwargs)
                self.retry_after = (response.headers or {}).get("Retry-After")
                return response

        return LocalTwilioHttp(timeout=timeout)


class TwilioSms(SecretStamped, Block):
    """Sends alerts as SMS through Twilio's Messages API with the official `twilio` client.

    The text is the alert's title, essentials and link, shortened at word boundaries to at
    most `max_segments` billed segments (a Korean text is UCS-2: 70 characters in one).

    Attributes:
        account_sid: the account (``AC`` + 32 hex), from the Twilio Console.
        auth_token: the account's Auth Token; or give `api_key_sid` and `api_key_secret`.
        api_key_sid: an API key (``SK…``), instead of the Auth Token.
        api_key_secret: the API key's secret.
        from_number: the sending Twilio number (E.164); or `messaging_service_sid`.
        messaging_service_sid: a Messaging Service (``MG…``) that picks the sender.
        to_numbers: the recipients (E.164, ``+821012345678``).
        base_url: another API host (the sandbox: ``http://127.0.0.1:PORT/twilio``).
        max_segments: most billed segments one alert may take.
    """

    _block_type_name = "Twilio SMS Channel"  # Prefect's own notification block is "Twilio SMS"
    _block_type_slug = "moltbot-twilio-sms"
    _description = "moltbot channel: SMS through Twilio's Messages API."

    account_sid: str = Field(pattern=r"^AC[0-9a-fA-F]{32}$", description="Account SID (AC…).")
    auth_token: SecretStr | None = Field(default=None, description="Auth Token of the account.")
    api_key_sid: str | None = Field(
        default=None, pattern=r"^SK[0-9a-fA-F]{32}$", description="API key SID (SK…)."
    )
    api_key_secret: SecretStr | None = Field(default=None, description="API key secret.")
    from_number: str | None = Field(default=None, description="Sending number, E.164.")
    messaging_service_sid: str | None = Field(
        default=None, pattern=r"^MG[0-9a-fA-F]{32}$", description="Messaging Service SID."
    )
    to_numbers: list[str] = Field(min_length=1, description="Recipients, E.164 (+8210…).")
    base_url: str | None = Field(
        default=None, description="API host instead of api.twilio.com (the sandbox)."
    )
    max_segments: int = Field(default=1, ge=1, le=10, description="Most segments per alert.")
    timeout_seconds: float = Field(default=10.0, gt=0, description="Timeout of one request.")
    secret_set_at: SecretSetAt = None
    # Recipients that already have a message (by message key), so a retry after a failure
    # on the second recipient does not text the first one again.
    _sent: dict[str, dict[str, str]] = PrivateAttr(default_factory=dict)

    @field_validator("to_numbers")
    @classmethod
    def _e164(cls, numbers: list[str]) -> list[str]:
        _validate_numbers(numbers, "to_numbers", E164, "an E.164 number (+ and country code)")
        return numbers

    @model_validator(mode="after")
    def _one_credential_and_sender(self) -> Self:
        if (self.auth_token is None) == (self.api_key_sid is None or self.api_key_secret is None):
            raise ValueError("give auth_token, or api_key_sid with api_key_secret (one of them)")
        if (self.from_number is None) == (self.messaging_service_sid is None):
            raise ValueError("give from_number or messaging_service_sid (one of them)")
        if self.from_number is not None:
            _validate_numbers([self.from_number], "from_number", E164, "an E.164 number")
        return self

    def text(self, message: Message) -> str:
        """The SMS body `send` sends for `message`: shortened to `max_segments` segments."""
        title, essentials, link = message_sms_parts(message)
        return shorten_for_sms(
            title, essentials, link, budget=SegmentBudget(max_segments=self.max_segments)
        )

    def preview_lines(self, message: Message) -> list[str]:
        """What a dry run shows: the text, its segment count and encoding, the recipients."""
        text = self.text(message)
        count = sms_segments(text)
        return [
            *text.splitlines(),
            f"({count.segments} segment(s), {count.encoding}, {count.characters} characters; "
            f"{len(self.to_numbers)} recipient(s))",
        ]

    def get_client(self) -> Any:
        """The official `twilio` REST client, sending to `base_url` when one is set."""
        from twilio.rest import Client

        http = _LocalTwilioHttp.build(self.base_url, self.timeout_seconds)
        if self.auth_token is not None:
            return Client(self.account_sid, self.auth_token.get_secret_value(), http_client=http)
        assert self.api_key_secret is not None
        return Client(
            self.api_key_sid,
            self.api_key_secret.get_secret_value(),
            account_sid=self.account_sid,
            http_client=http,
        )

    def send(self, message: Message, *, rate_limiter: RateLimiter | None = None) -> str | None:
        """Text `message` to every recipient; return the message SIDs, comma-separated.

        A recipient Twilio refuses for itself (21211, 21408, 21610 …) is skipped; the others
        still get the text. Each request first waits for ``[rate_limits.twilio]``.

        Raises:
            DeliveryError: permanent for a refused login (20003) or when every recipient was
                refused; transient for 429/20429, 5xx and connection errors (recipients
                already texted are not texted again when this block retries).
        """
        text = self.text(message)
        label = _block_label(self, "Twilio SMS")
        client = self.get_client()
        gate = rate_gate("twilio", self.account_sid, rate_limiter)
        sent = self._sent.setdefault(message.key, {})
        refused: list[str] = []
        for index, number in enumerate(self.to_numbers):
            if number in sent:
                continue
            if gate is not None:
                gate.wait()
            sender: dict[str, str] = (
                {"from_": self.from_number}
                if self.from_number
                else {"messaging_service_sid": self.messaging_service_sid or ""}
            )
            try:
                created = client.messages.create(to=number, body=text, **sender)
            except requests.RequestException as exc:
                raise _transport_error(f"{label}: Twilio", exc) from None
            except Exception as exc:  # TwilioRestException / TwilioServiceException
                code, status = _twilio_code(exc)
                if code is None and status is None:
                    raise
                if code in TWILIO_RECIPIENT_CODES:
                    refused.append(f"recipient {index + 1}: {code} {TWILIO_RECIPIENT_CODES[code]}")
                    continue
                raise _twilio_error(label, code, status, client.http_client.retry_after) from None
            sent[number] = str(created.sid)
        if not sent:
            raise DeliveryError(
                f"{label}: Twilio refused every recipient ({'; '.join(refused)})",
                transient=False,
                status=400,
            )
        return ",".join(sent[number] for number in self.to_numbers if number in sent)


def _twilio_code(exc: Exception) -> tuple[int | None, int | None]:
    from twilio.base.exceptions import TwilioRestException, TwilioServiceException

    if isinstance(exc, TwilioRestException | TwilioServiceException):
        code = exc.code if isinstance(exc.code, int) else None
        return code, int(exc.status)
    return None, None


def _twilio_error(
    label: str, code: int | None, status: int | None, retry_after: str | None
) -> DeliveryError:
    status = status or 500
    if code == TWILIO_AUTH_CODE or status == 401:
        return DeliveryError(
            f"{label}: Twilio refused the credentials ({TWILIO_AUTH_CODE} authenticate); check "
            "the block's account_sid and auth_token (or API key)",
            transient=False,
            status=401,
        )
    if code == TWILIO_TOO_MANY_REQUESTS:
        status = 429
    return DeliveryError.for_status(
        f"{label}: Twilio answered {status} (error {code})",
        status,
        retry_after=retry_after_seconds(retry_after),
    )


def _transport_error(what: str, exc: BaseException) -> DeliveryError:
    """A transport failure: transient; possibly applied unless the connection never opened."""
    never_sent = _never_connected(exc)
    return DeliveryError(
        f"{what} unreachable ({type(exc).__name__})"
        if never_sent
        else f"{what} gave no answer ({type(exc).__name__})",
        transient=True,
        maybe_applied=not never_sent,
    )


def _never_connected(exc: BaseException) -> bool:
    from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return True
    if isinstance(exc, requests.ConnectTimeout):
        return True
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, NewConnectionError | ConnectTimeoutError):
            return True
        pending += [arg for arg in current.args if isinstance(arg, BaseException)]
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            pending.append(reason)
        if current.__cause__ is not None:
            pending.append(current.__cause__)
        if current.__context__ is not None:
            pending.append(current.__context__)
    return False


def _korean_number(number: str) -> str:
    digits = number.replace("-", "").replace(" ", "")
    if digits.startswith("+82"):
        digits = "0" + digits[3:]
    return digits


class SolapiSms(SecretStamped, Block):
    """Sends alerts as Korean SMS or LMS through Solapi with the official `solapi` client.

    The text keeps to EUC-KR (emoji are dropped) and is shortened at word boundaries to one
    SMS (90 bytes, a Hangul syllable 2) or, when `max_type` is LMS, one LMS (2,000 bytes):
    an SMS when it fits, else an LMS.

    Attributes:
        api_key: the API key (``NCS…``) from solapi.com's API Key page.
        api_secret: its secret.
        from_number: the sending number, registered in Solapi beforehand (발신번호 등록).
        to_numbers: recipients (``010-1234-5678``, ``01012345678`` or ``+821012345678``).
        base_url: the API host (the sandbox: ``http://127.0.0.1:PORT/solapi``).
        max_type: ``SMS`` to never send the dearer LMS, ``LMS`` to allow up to 2,000 bytes.
    """

    _block_type_name = "Solapi SMS Channel"
    _block_type_slug = "moltbot-solapi-sms"
    _description = "moltbot channel: Korean SMS/LMS through Solapi."

    api_key: str = Field(min_length=1, description="API key (NCS…).")
    api_secret: SecretStr = Field(description="API secret.")
    from_number: str = Field(description="Registered sending number (발신번호).")
    to_numbers: list[str] = Field(min_length=1, description="Recipients (010-…).")
    base_url: str = Field(default="https://api.solapi.com", description="API host.")
    max_type: Literal["SMS", "LMS"] = Field(
        default="LMS", description="Longest message type allowed: SMS (90 bytes) or LMS."
    )
    secret_set_at: SecretSetAt = None

    @field_validator("from_number")
    @classmethod
    def _sender(cls, number: str) -> str:
        _validate_numbers(
            [_korean_number(number)], "from_number", re.compile(r"^\d{7,12}$"), "a phone number"
        )
        return _korean_number(number)

    @field_validator("to_numbers")
    @classmethod
    def _recipients(cls, numbers: list[str]) -> list[str]:
        normalized = [_korean_number(number) for number in numbers]
        _validate_numbers(
            normalized, "to_numbers", _KOREAN_NUMBER, "a Korean phone number (010-1234-5678)"
        )
        return normalized

    def text(self, message: Message) -> str:
        """The text `send` sends: EUC-KR only, shortened to one SMS or LMS."""
        title, essentials, link = message_sms_parts(message)
        limit = SOLAPI_LMS_BYTES if self.max_type == "LMS" else SOLAPI_SMS_BYTES
        return shorten_for_sms(
            to_carrier_charset(title),
            to_carrier_charset(essentials),
            link,
            budget=ByteBudget(limit),
        )

    @staticmethod
    def message_type(text: str) -> Literal["SMS", "LMS"]:
        """SMS when `text` fits 90 bytes, else LMS."""
        return "SMS" if carrier_bytes(text) <= SOLAPI_SMS_BYTES else "LMS"

    def preview_lines(self, message: Message) -> list[str]:
        """What a dry run shows: the text, SMS or LMS with its bytes, the recipients."""
        text = self.text(message)
        return [
            *text.splitlines(),
            f"({self.message_type(text)}, {carrier_bytes(text)} bytes; "
            f"{len(self.to_numbers)} recipient(s))",
        ]

    def get_client(self) -> Any:
        """The official `SolapiMessageService`, sending to `base_url`."""
        from solapi import SolapiMessageService

        service = SolapiMessageService(self.api_key, self.api_secret.get_secret_value())
        service.base_url = self.base_url.rstrip("/")
        return service

    def send(self, message: Message, *, rate_limiter: RateLimiter | None = None) -> str | None:
        """Send `message` to every recipient in one request; return Solapi's group id.

        Raises:
            DeliveryError: permanent for refused credentials (403) or every message refused
                (unregistered sender 1062, text 1029/1031); transient for 429, 5xx and
                connection errors.
        """
        from solapi.error.MessageNotReceiveError import MessageNotReceivedError
        from solapi.model import RequestMessage

        text = self.text(message)
        kind = self.message_type(text)
        label = _block_label(self, "Solapi SMS")
        gate = rate_gate("solapi", self.api_key, rate_limiter)
        if gate is not None:
            gate.wait()
        service = self.get_client()
        messages = [
            RequestMessage(from_=self.from_number, to=number, text=text, type=kind)
            for number in self.to_numbers
        ]
        try:
            response = service.send(messages)
        except MessageNotReceivedError as exc:
            codes = sorted({failed.status_code for failed in exc.failed_messages})
            raise DeliveryError(
                f"{label}: Solapi refused every message (status {', '.join(codes)})",
                transient=False,
                status=400,
            ) from None
        except httpx.TransportError as exc:
            raise _transport_error(f"{label}: Solapi", exc) from None
        except Exception as exc:
            # The client raises a bare Exception(errorCode, errorMessage) for any 4xx/5xx.
            if type(exc) is not Exception or not exc.args:
                raise
            raise _solapi_error(label, str(exc.args[0])) from None
        return str(response.group_info.group_id)


def _solapi_error(label: str, code: str) -> DeliveryError:
    if code in SOLAPI_AUTH_CODES:
        return DeliveryError(
            f"{label}: Solapi refused the credentials ({code}); check the block's api_key and "
            "api_secret (and this host's clock)",
            transient=False,
            status=403,
        )
    if code == SOLAPI_TOO_MANY_REQUESTS:
        return DeliveryError.for_status(f"{label}: Solapi answered 429 ({code})", 429)
    if code == "UnknownError":  # what the client raises for every 5xx
        return DeliveryError.for_status(f"{label}: Solapi failed (5xx)", 500)
    return DeliveryError(f"{label}: Solapi refused the request ({code})", transient=False)

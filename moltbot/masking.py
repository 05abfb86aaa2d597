"""Masking of secrets and personal data in text and log records, with a process-wide registry."""

from __future__ import annotations

import copy
import logging
import re
import threading
from datetime import date
from types import TracebackType

from pydantic import BaseModel, Secret, SecretStr

MASK = "***"

# Values shorter than this would mask ordinary words and numbers everywhere.
_MIN_SECRET_LENGTH = 4

_secrets_lock = threading.Lock()
_secrets: set[str] = set()
_secrets_pattern: re.Pattern[str] | None = None

# `scheme://user:password@host`: only the password goes; the user name helps debugging.
_URL_CREDENTIALS = re.compile(r"(?P<prefix>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s/:@]*):[^\s/@]+@")

# Slack incoming-webhook path: team and bot ids are not secret, the last segment is.
_SLACK_WEBHOOK = re.compile(r"(?P<prefix>/services/T[A-Za-z0-9_]+/B[A-Za-z0-9_]+/)[A-Za-z0-9_\-]+")

# Slack tokens travel outside headers too (config dumps, error bodies).
_SLACK_TOKEN = re.compile(r"\bxox[abposr]-[A-Za-z0-9\-]{10,}")

_BEARER = re.compile(r"\b(?P<scheme>Bearer)\s+(?P<token>[A-Za-z0-9\-._~+/]+=*)", re.IGNORECASE)
_BASIC = re.compile(r"\b(?P<scheme>Basic)\s+(?P<token>[A-Za-z0-9+/]+={0,2})", re.IGNORECASE)

# `password=…`, `api_key: …`, `"client_secret": "…"`, `X-Api-Key: …`; the name may carry a prefix
# (access_token, client_secret) but must end in one of the words, so `secret_name=x` stays.
_KEY_VALUE = re.compile(
    r"(?P<prefix>(?<![A-Za-z0-9])[A-Za-z0-9_\-]*"
    r"(?:password|passwd|token|api[_\-]?key|secret)"
    r"[\"']?\s*[=:]\s*)"
    r"(?P<value>\"[^\"]*\"|'[^']*'|[^\s&,;\"'<>]+)",
    re.IGNORECASE,
)

# Tokens recognisable by their own shape, wherever they travel (an error body, a config dump).
_TOKEN_SHAPES = re.compile(
    r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"  # a JWT
    r"|\b(?:secret_|ntn_)[A-Za-z0-9]{20,}"  # a Notion integration token
    r"|\bATATT[A-Za-z0-9_\-=]{20,}"  # an Atlassian API token
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----",  # a PEM key
    re.DOTALL,
)
# A Korean resident registration number: birth date, a hyphen, a 1-8 sex/century digit, six more.
_RESIDENT_NUMBER = re.compile(
    r"(?<![\w\-])\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])-[1-8]\d{6}(?![\w\-])"
)
# A payment card number: 13 to 19 digits, alone or in groups of 4 (masked only if Luhn-valid).
_CARD_NUMBER = re.compile(
    r"(?<![\w\-])(?:\d{4}[ \-]){3}\d{1,7}(?![\w\-])|(?<![\w\-.])\d{13,19}(?![\w\-]|[.,]\d)"
)

_EMAIL = re.compile(
    r"(?<![\w.%+\-])[A-Za-z0-9._%+\-]+@"
    r"(?P<domain>[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,})\b"
)

# International numbers: `+82 10-1234-5678`, `+1 (555) 123-4567` (separators required, so a signed
# amount like +1234567.5 is left alone), or E.164 without separators (`+821012345678`).
_PHONE_INTERNATIONAL = re.compile(
    r"(?<![\w+])\+\d{1,3}(?:[ .\-]\(?\d{1,4}\)?){2,5}(?![\w\-]|[.,]\d)"
    r"|(?<![\w+])\+[1-9]\d{9,14}(?![\w\-]|[.,]\d)"
)
# Korean mobile numbers written without separators: 010-1234-5678 as 01012345678.
_PHONE_KOREAN_MOBILE = re.compile(r"(?<![\w.\-])01[016789]\d{7,8}(?![\w\-]|[.,]\d)")
# Digit groups joined by one consistent separator (`010-1234-5678`, `02 123 4567`); the digit count
# and the checks in `_mask_phone` keep dates, IP addresses and grouped amounts out.
_PHONE_GROUPED = re.compile(
    r"(?<![\w.+/:\-])(?:\(\d{2,4}\)|\d{2,4})(?P<sep>[ .\-])\d{2,4}(?:(?P=sep)\d{2,4}){1,3}"
    r"(?![\w/:\-]|[.,]\d)"
)
_DATE_INSIDE = re.compile(
    r"(?<!\d)(?P<y>(?:19|20)\d{2})[\-./](?P<m>\d{1,2})[\-./](?P<d>\d{1,2})(?!\d)"
)
_MIN_PHONE_DIGITS = 9


def register_secret(value: str) -> None:
    """Mask `value` wherever it appears from now on, in this process.

    Args:
        value: A secret (token, password, webhook URL). Values shorter than 4 characters are
            ignored because masking them would garble ordinary text.
    """
    if not value or len(value) < _MIN_SECRET_LENGTH:
        return
    global _secrets_pattern
    with _secrets_lock:
        if value in _secrets:
            return
        _secrets.add(value)
        # Longest first, so a secret that contains another one is masked whole.
        ordered = sorted(_secrets, key=len, reverse=True)
        _secrets_pattern = re.compile("|".join(re.escape(secret) for secret in ordered))


# Entries of a secret dict (a service-account key) that are themselves secrets; addresses such as
# `token_uri` are not, and masking them would only garble logs.
_SECRET_ENTRY = re.compile(r"key|token|secret|password|credential", re.IGNORECASE)


def _register_secret_entries(value: object, entry: str | None = None) -> None:
    if isinstance(value, dict):
        for name, item in value.items():
            _register_secret_entries(item, str(name))
    elif isinstance(value, list | tuple):
        for item in value:
            _register_secret_entries(item, entry)
    elif isinstance(value, str) and (
        entry is None
        or (_SECRET_ENTRY.search(entry) and not entry.lower().endswith(("_uri", "_url")))
    ):
        register_secret(value)


def register_model_secrets(model: BaseModel) -> None:
    """Register every secret value of a pydantic model (a block), nested models included.

    `SecretStr` values are registered whole; in a secret dict (Prefect's `SecretDict`, e.g. a
    service-account key) the entries whose names say key, token, secret, password or credential.

    Args:
        model: e.g. a channel or credentials block just loaded from Prefect.
    """
    for name in type(model).model_fields:
        value = getattr(model, name, None)
        values = value if isinstance(value, list | tuple) else [value]
        for item in values:
            if isinstance(item, SecretStr):
                register_secret(item.get_secret_value())
            elif isinstance(item, Secret):
                _register_secret_entries(item.get_secret_value())
            elif isinstance(item, BaseModel):
                register_model_secrets(item)


def mask_text(text: str) -> str:
    """Return `text` with secrets and personal data replaced by `***`.

    Masks registered secrets, credentials in URLs, Slack webhook tokens, `Bearer`/`Basic`
    credentials, `password=`/`token=`/`api_key=`/`secret=` pairs, JWTs, Notion and Atlassian
    tokens, PEM private keys, Korean resident registration numbers, Luhn-valid card numbers,
    e-mail addresses (the domain is kept) and phone numbers. Dates, times, amounts and order ids
    are left alone. Masking is idempotent.

    Args:
        text: Any text bound for a log, an artifact, the ledger or an exception.

    Returns:
        The masked text.
    """
    if not text:
        return text
    # Registered secrets go first: the generic patterns below could cut a secret in half and leave
    # the other half readable.
    pattern = _secrets_pattern
    if pattern is not None:
        text = pattern.sub(MASK, text)
    text = _URL_CREDENTIALS.sub(rf"\g<prefix>:{MASK}@", text)
    text = _SLACK_WEBHOOK.sub(rf"\g<prefix>{MASK}", text)
    text = _SLACK_TOKEN.sub(MASK, text)
    text = _BEARER.sub(_mask_bearer, text)
    text = _BASIC.sub(_mask_basic, text)
    text = _KEY_VALUE.sub(_mask_key_value, text)
    text = _TOKEN_SHAPES.sub(MASK, text)
    text = _RESIDENT_NUMBER.sub(MASK, text)
    text = _CARD_NUMBER.sub(_mask_card, text)
    text = _EMAIL.sub(rf"{MASK}@\g<domain>", text)
    text = _PHONE_INTERNATIONAL.sub(_mask_phone, text)
    text = _PHONE_KOREAN_MOBILE.sub(MASK, text)
    return _PHONE_GROUPED.sub(_mask_phone, text)


def _mask_card(match: re.Match[str]) -> str:
    digits = [int(digit) for digit in re.sub(r"\D", "", match[0])]
    if not 13 <= len(digits) <= 19:
        return match[0]
    # Luhn: double every second digit from the right; a card number's sum ends in 0. Other long
    # numbers (order ids, timestamps) mostly fail it and stay readable.
    total = sum(
        digit if position % 2 == 0 else (digit * 2 - 9 if digit > 4 else digit * 2)
        for position, digit in enumerate(reversed(digits))
    )
    return MASK if total % 10 == 0 else match[0]


def _mask_bearer(match: re.Match[str]) -> str:
    token = match["token"]
    # "bearer of bad news": a lowercase English word is not a token.
    if len(token) < 8 or (token.isalpha() and token.islower()):
        return match[0]
    return f"{match['scheme']} {MASK}"


def _mask_basic(match: re.Match[str]) -> str:
    token = match["token"]
    # HTTP Basic credentials are padded base64 (length a multiple of 4); "Basic settings" is not.
    looks_encoded = not (token.isalpha() and token[1:].islower())
    if len(token) < 8 or len(token) % 4 or not looks_encoded:
        return match[0]
    return f"{match['scheme']} {MASK}"


def _mask_key_value(match: re.Match[str]) -> str:
    value = match["value"]
    if value.strip("\"'") in ("", MASK):
        return match[0]
    quote = value[0] if value[0] in "\"'" else ""
    return f"{match['prefix']}{quote}{MASK}{quote}"


def _mask_phone(match: re.Match[str]) -> str:
    found = match[0]
    groups = re.findall(r"\d+", found)
    if sum(len(group) for group in groups) < _MIN_PHONE_DIGITS:
        return found
    if found.startswith("+"):
        return MASK
    separator = match["sep"]
    if _contains_date(found):
        return found
    if separator == "." and len(groups) == 4 and all(len(g) <= 3 and int(g) <= 255 for g in groups):
        return found  # an IPv4 address
    if separator in (" ", ".") and len(groups[0]) <= 3 and all(len(g) == 3 for g in groups[1:]):
        return found  # thousands grouping of an amount: 123 456 789
    return MASK


def _contains_date(text: str) -> bool:
    for found in _DATE_INSIDE.finditer(text):
        try:
            date(int(found["y"]), int(found["m"]), int(found["d"]))
        except ValueError:
            continue
        return True
    return False


class MaskingFilter(logging.Filter):
    """Logging filter that masks the message, its arguments and any exception text of a record.

    The formatted message replaces `record.msg` and `record.args` is cleared, so every handler
    that formats the record later sees the masked text. Exception tracebacks are rendered once,
    masked, and cached in `record.exc_text`, which standard formatters reuse; the exception object
    in `record.exc_info` is swapped for a masked copy of the same type only when its message held
    something to mask. The filter never drops a record.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Mask `record` in place; always returns True."""
        try:
            message = record.getMessage()
        except Exception:
            # A broken format string: leave it for the handler's own error reporting.
            return True
        record.msg = mask_text(message)
        record.args = None
        has_exception = isinstance(record.exc_info, tuple) and record.exc_info[1] is not None
        if has_exception and not record.exc_text:
            # Rendered once here so that formatters reuse the masked text instead of the raw one.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_text(record.exc_text)
        if has_exception:
            record.exc_info = _masked_exc_info(record.exc_info)
        if record.stack_info:
            record.stack_info = mask_text(record.stack_info)
        return True


def _masked_exc_info(
    exc_info: tuple[type[BaseException], BaseException, TracebackType | None],
) -> tuple[type[BaseException], BaseException, TracebackType | None]:
    exc_type, exc, tb = exc_info
    message = str(exc)
    masked = mask_text(message)
    if masked == message:
        return exc_info
    # Formatters that read exc_info directly (JSON, rich) would otherwise print the raw message.
    # A copy keeps the type for isinstance checks; the original exception is never modified.
    try:
        stand_in = copy.copy(exc)
        stand_in.args = (masked,)
        if mask_text(str(stand_in)) != str(stand_in):
            raise ValueError("type renders more than its args")
    except Exception:
        stand_in = Exception(masked)
    stand_in.__cause__ = None
    stand_in.__context__ = None
    stand_in.__suppress_context__ = True
    return exc_type, stand_in.with_traceback(tb), tb


_FILTER = MaskingFilter()


def add_masking_filter(handler: logging.Handler) -> logging.Handler:
    """Attach the shared `MaskingFilter` to `handler` unless it already has one.

    Args:
        handler: Any logging handler, e.g. one a test or a CLI command creates.

    Returns:
        The same handler, for chaining.
    """
    if not any(isinstance(existing, MaskingFilter) for existing in handler.filters):
        handler.addFilter(_FILTER)
    return handler


def install_log_masking() -> None:
    """Add masking to every handler of the root logger and of the `prefect` logger tree.

    Filters go on handlers, not loggers, because records propagated from child loggers skip the
    filters of the parent loggers. Only handlers that exist now are covered, so call this after
    Prefect has configured logging (importing `prefect` does). Safe to call repeatedly.
    """
    loggers: list[logging.Logger] = [logging.getLogger()]
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and (
            name == "prefect" or name.startswith("prefect.")
        ):
            loggers.append(logger)
    for logger in loggers:
        for handler in list(logger.handlers):
            add_masking_filter(handler)

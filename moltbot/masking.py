"""Masking of secrets and personal data in text and log records, with a process-wide registry."""

from __future__ import annotations

import contextlib
import copy
import logging
import re
import threading
from datetime import date
from types import TracebackType
from typing import Literal
from urllib.parse import parse_qsl, urlsplit

from pydantic import BaseModel, Secret, SecretStr

MASK = "***"

# Values shorter than this would mask ordinary words and numbers everywhere.
_MIN_SECRET_LENGTH = 4

_secrets_lock = threading.Lock()
_secrets: set[str] = set()
_secrets_pattern: re.Pattern[str] | None = None
_factory_lock = threading.Lock()

# `scheme://user:password@host`: only the password goes; the user name helps debugging.
_URL_CREDENTIALS = re.compile(
    r"(?P<prefix>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s/:@]*):[^\s/@]+@", re.ASCII
)

# Slack incoming-webhook path: team and bot ids are not secret, the last segment is.
_SLACK_WEBHOOK = re.compile(
    r"(?P<prefix>/services/T[A-Za-z0-9_]+/B[A-Za-z0-9_]+/)[A-Za-z0-9_\-]+", re.ASCII
)

# Slack tokens travel outside headers too (config dumps, error bodies): bot, user, app,
# configuration and refresh tokens (`xoxb-`, `xoxp-`, `xapp-`, `xoxe.xoxp-`, `xoxe-`).
_SLACK_TOKEN = re.compile(r"\b(?:xox[abposre](?:\.xox[a-z])?|xapp)-[A-Za-z0-9\-]{10,}", re.ASCII)

_BEARER = re.compile(
    r"\b(?P<scheme>Bearer)\s+(?P<token>[A-Za-z0-9\-._~+/]+=*)", re.IGNORECASE | re.ASCII
)
_BASIC = re.compile(
    r"\b(?P<scheme>Basic)\s+(?P<token>[A-Za-z0-9+/]+={0,2})", re.IGNORECASE | re.ASCII
)

# `password=…`, `api_key: …`, `"client_secret": "…"`, `X-Api-Key: …`; the name may carry a prefix
# (access_token, client_secret) but must end in one of the words, so `secret_name=x` stays.
_KEY_VALUE = re.compile(
    r"(?P<prefix>(?<![A-Za-z0-9])[A-Za-z0-9_\-]*"
    r"(?:password|passwd|passphrase|token|api[_\-]?key|access[_\-]?key|secret"
    r"|private[_\-]?key(?:[_\-]?id)?)"
    r"[\"']?\s*[=:]\s*)"
    r"(?P<value>\"[^\"]*\"|'[^']*'|[^\s&,;\"'<>]+)",
    re.IGNORECASE | re.ASCII,
)

# Tokens recognisable by their own shape, wherever they travel (an error body, a config dump).
_TOKEN_SHAPES = re.compile(
    r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"  # a JWT
    r"|\b(?:secret_|ntn_)[A-Za-z0-9]{20,}"  # a Notion integration token
    r"|\bATATT[A-Za-z0-9_\-=]{20,}"  # an Atlassian API token
    r"|\bya29\.[A-Za-z0-9_\-]{20,}"  # a Google OAuth access token
    r"|\bAIza[A-Za-z0-9_\-]{35}"  # a Google API key
    r"|\b1//0[A-Za-z0-9_\-]{30,}"  # a Google OAuth refresh token
    # A PEM private key (a service account's `private_key`), whole or cut short by a length
    # limit: then its base64 body, with real or JSON-escaped line breaks, goes to the end.
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----"
    r"(?:.*?-----END [A-Z ]*PRIVATE KEY-----|(?:[A-Za-z0-9+/=\s]|\\[nr])*)",
    re.DOTALL | re.ASCII,
)
# A Korean resident registration number: birth date, a hyphen, a 1-8 sex/century digit, six more.
_RESIDENT_NUMBER = re.compile(
    r"(?<![\w\-])\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])-[1-8]\d{6}(?![\w\-])",
    re.ASCII,
)
# A payment card number: 13 to 19 digits, alone or in groups of 4 (masked only if Luhn-valid).
_CARD_NUMBER = re.compile(
    r"(?<![\w\-])(?:(?:\d{4}[ \-]){3}\d{1,7}|\d{4}[ \-]\d{6}[ \-]\d{4,5})(?![\w\-])"  # 4-6-5: Amex
    r"|(?<![\w\-.])\d{13,19}(?![\w\-]|[.,]\d)",
    re.ASCII,
)
# A bank account number, recognisable only by its label: `계좌번호: 110-123-456789`,
# `국민은행 123456-01-234567`, `account no. 1234 5678 90`. The label may be followed by a bank
# name or a colon (no digits), then at least 8 digits in groups; the label stays readable.
_BANK_ACCOUNT = re.compile(
    r"(?P<label>(?:계좌(?:\s*번호)?|예금주|은행|account\s*(?:no\.?|number|#)|acct\.?|bank\s+account)"
    r"[^\d\n]{0,20}?)"
    r"(?P<number>(?<![\w\-])\d(?:[ \-]?\d){7,24})(?![\w\-])",
    re.IGNORECASE | re.ASCII,
)

# The local part goes, the domain stays (it says which organisation, not who). `%40` is an
# `@` inside a URL's query (`?email=kim%40example.com`, as clients log request URLs).
_EMAIL = re.compile(
    r"(?<![\w.%+\-])[A-Za-z0-9._%+\-]+?(?P<at>@|%40)"
    r"(?P<domain>[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,})\b",
    re.ASCII,
)

# International numbers: `+82 10-1234-5678`, `+1 (555) 123-4567` (separators required, so a signed
# amount like +1234567.5 is left alone), or E.164 without separators (`+821012345678`).
_PHONE_INTERNATIONAL = re.compile(
    r"(?<![\w+])\+\d{1,3}(?:[ .\-]\(?\d{1,4}\)?){2,5}(?![\w\-]|[.,]\d)"
    r"|(?<![\w+])\+[1-9]\d{9,14}(?![\w\-]|[.,]\d)",
    re.ASCII,
)
# Korean numbers by their prefix, with any separators or none: mobile (010…), Seoul (02) and
# regional landlines (031…064), internet phones (070), personal numbers (050x); the area code
# may be in brackets: `(02) 123-4567`, `0311234567`, `010 1234-5678`.
_PHONE_KOREAN = re.compile(
    r"(?<![\w.+/:\-])(?:\(0\d{1,3}\)\s?|0(?:1[016789]|2|[3-6][1-5]|70|50[2-8])[ .\-]?)"
    r"\d{3,4}[ .\-]?\d{4}(?![\w\-]|[.,]\d)",
    re.ASCII,
)
# Digit groups joined by one consistent separator (`010-1234-5678`, `02 123 4567`); the digit count
# and the checks in `_mask_phone` keep dates, IP addresses and grouped amounts out.
_PHONE_GROUPED = re.compile(
    r"(?<![\w.+/:\-])(?:\(\d{2,4}\)|\d{2,4})(?P<sep>[ .\-])\d{2,4}(?:(?P=sep)\d{2,4}){1,3}"
    r"(?![\w/:\-]|[.,]\d)",
    re.ASCII,
)
_DATE_INSIDE = re.compile(
    r"(?<!\d)(?P<y>(?:19|20)\d{2})[\-./](?P<m>\d{1,2})[\-./](?P<d>\d{1,2})(?!\d)",
    re.ASCII,
)
_MIN_PHONE_DIGITS = 9


# A path segment or query value of a secret URL this long, with letters and digits, is a token
# on its own (a Slack webhook's last segment): errors and logs may quote it without the URL.
_URL_TOKEN_MIN_LENGTH = 16


def register_secret(value: str) -> None:
    """Mask `value` wherever it appears from now on, in this process.

    A secret URL (a webhook) also registers its parts that are secrets on their own: its
    password, and its path segments and query values that look like tokens.

    Args:
        value: A secret (token, password, webhook URL). Values shorter than 4 characters are
            ignored because masking them would garble ordinary text.
    """
    values = [value, *_url_secret_parts(value)] if value else []
    global _secrets_pattern
    with _secrets_lock:
        added = [
            item for item in values if len(item) >= _MIN_SECRET_LENGTH and item not in _secrets
        ]
        if not added:
            return
        _secrets.update(added)
        # Longest first, so a secret that contains another one is masked whole.
        ordered = sorted(_secrets, key=len, reverse=True)
        _secrets_pattern = re.compile("|".join(re.escape(secret) for secret in ordered))


def _url_secret_parts(value: str) -> list[str]:
    if "://" not in value or any(char.isspace() for char in value):
        return []
    try:
        url = urlsplit(value)
        password = url.password
    except ValueError:
        return []
    candidates = [*url.path.split("/"), *(item for _, item in parse_qsl(url.query))]
    tokens = [
        candidate
        for candidate in candidates
        if len(candidate) >= _URL_TOKEN_MIN_LENGTH
        and any(char.isdigit() for char in candidate)
        and any(char.isalpha() for char in candidate)
    ]
    return [password, *tokens] if password else tokens


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


EmailMasking = Literal["keep-domain", "mask", "keep"]
"""What `mask_text` does with an e-mail address: `***@example.com`, `***`, or nothing."""


def mask_text(text: str, *, emails: EmailMasking = "keep-domain", phones: bool = True) -> str:
    """Return `text` with secrets and personal data replaced by `***`.

    Masks registered secrets, credentials in URLs, Slack webhook tokens, `Bearer`/`Basic`
    credentials, `password=`/`token=`/`api_key=`/`secret=`/`private_key=` pairs, Slack, Notion,
    Atlassian and Google tokens, JWTs, PEM private keys, Korean resident registration numbers,
    Luhn-valid card numbers, labelled bank account numbers, e-mail addresses (the domain is
    kept) and phone numbers. Dates, times, amounts and order ids are left alone. Masking is
    idempotent.

    Args:
        text: Any text bound for a log, an artifact, the ledger or an exception.
        emails: `keep-domain` (the default), `mask` the whole address, or `keep` it (a Jira
            mapping whose route allows addresses).
        phones: False keeps phone numbers (a mapping whose route allows them).

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
    text = _BANK_ACCOUNT.sub(_mask_account, text)
    if emails == "keep-domain":
        text = _EMAIL.sub(rf"{MASK}\g<at>\g<domain>", text)
    elif emails == "mask":
        text = _EMAIL.sub(MASK, text)
    if not phones:
        return text
    text = _PHONE_INTERNATIONAL.sub(_mask_phone, text)
    text = _PHONE_KOREAN.sub(_mask_korean_phone, text)
    return _PHONE_GROUPED.sub(_mask_phone, text)


def _mask_account(match: re.Match[str]) -> str:
    if _contains_date(match["number"]):
        return match[0]  # "은행 점검 2026-11-24": a date, not an account
    return f"{match['label']}{MASK}"


def _mask_korean_phone(match: re.Match[str]) -> str:
    return match[0] if _contains_date(match[0]) else MASK


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


# Set on a record once it is masked, so the filter on each handler does not mask it again.
_MASKED_FLAG = "moltbot_masked"
# uvicorn's access formatter unpacks the record's arguments (client, method, path, status); its
# lines hold nothing else, and a record without arguments would break it.
_UNMASKED_LOGGERS = frozenset({"uvicorn.access"})


def mask_record(record: logging.LogRecord) -> None:
    """Mask a log record's message, exception text and stack in place (once per record).

    When masking changes the message, the formatted, masked message replaces `record.msg` and
    `record.args` is cleared, so every handler that formats the record later sees the masked
    text; otherwise the record keeps its arguments. Exception tracebacks are rendered once,
    masked, and cached in `record.exc_text`, which standard formatters reuse; the exception
    object in `record.exc_info` is swapped for a masked copy of the same type only when its
    message held something to mask.

    Args:
        record: a record just created or about to be handled.
    """
    if getattr(record, _MASKED_FLAG, False):
        return
    try:
        message = record.getMessage()
    except Exception:
        # A broken format string: leave it for the handler's own error reporting.
        return
    masked = mask_text(message)
    if masked != message:
        record.msg = masked
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
    setattr(record, _MASKED_FLAG, True)


class MaskingFilter(logging.Filter):
    """Logging filter that masks the message, its arguments and any exception text of a record
    (see `mask_record`); records already masked when they were created pass as they are. The
    filter never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Mask `record` in place; always returns True."""
        mask_record(record)
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
    install_record_masking()


def install_record_masking() -> None:
    """Mask every log record of this process as it is created, whatever handles it later.

    Handler filters cover only the handlers that exist when they are added; Prefect configures
    its own (the console, and the API handler that ships run logs to the server) when it is
    first used, and a flow run started by `serve` or a worker runs in a process no moltbot
    command set up. Wrapping the log record factory covers them all, and handlers added later.
    `import moltbot` calls this, so every process that runs a moltbot flow masks its logs.
    Safe to call repeatedly.
    """
    with _factory_lock:
        current = logging.getLogRecordFactory()
        if getattr(current, _MASKED_FLAG, False):
            return

        def masking_factory(*args: object, **kwargs: object) -> logging.LogRecord:
            record = current(*args, **kwargs)
            if record.name not in _UNMASKED_LOGGERS:
                # Logging must never fail because of masking; the handlers' filters try again.
                with contextlib.suppress(Exception):
                    mask_record(record)
            return record

        setattr(masking_factory, _MASKED_FLAG, True)
        logging.setLogRecordFactory(masking_factory)

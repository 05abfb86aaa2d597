"""SMS text rules: GSM-7/UCS-2 segments (Twilio), Korean carrier bytes (Solapi), shortening."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from moltbot.messages import Message

# GSM 03.38 default alphabet (one septet each) and its extension table (escape + one septet),
# as twilio.com/docs/glossary/what-is-gsm-7-character-encoding lists them.
GSM7_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = "\f^{}\\[~]|€"
_GSM7_BASIC_SET = frozenset(GSM7_BASIC)
_GSM7_EXTENSION_SET = frozenset(GSM7_EXTENSION)

# twilio.com/docs/glossary/what-sms-character-limit: one GSM-7 segment holds 160 septets, a
# part of a longer message 153 (the rest is the concatenation header); UCS-2 70 and 67 units.
GSM7_SINGLE = 160
GSM7_PART = 153
UCS2_SINGLE = 70
UCS2_PART = 67
TWILIO_MAX_CHARS = 1600
"""Twilio refuses a longer body (error 21617)."""

# Korean carriers count bytes of the KS X 1001 (EUC-KR) text: a Hangul syllable or symbol is
# 2 bytes, ASCII 1. CP949 is EUC-KR's superset that gives every one of the 11,172 syllables
# two bytes (Python's `euc_kr` spells the 8,822 outside KS X 1001 as 8-byte sequences), so
# counting in CP949 is the carriers' count. Solapi's limits (solapi/documents
# api-reference/message-status-codes.md, code 1031): SMS 90 bytes, LMS 2,000 bytes.
KOREAN_CARRIER_CODEC = "cp949"
SOLAPI_SMS_BYTES = 90
SOLAPI_LMS_BYTES = 2000

Encoding = Literal["GSM-7", "UCS-2"]
KoreanSmsType = Literal["SMS", "LMS"]

# Characters outside EUC-KR that alerts commonly carry, and what carriers can show instead.
_CARRIER_REPLACEMENTS = {
    "–": "-",
    "—": "-",
    "‐": "-",
    "✓": "v",
    "✔": "v",
    "✅": "[OK]",
    "❌": "[X]",
    "⚠": "[!]",
    "🚨": "[!]",
    "\u00a0": " ",
}
_SPACES = re.compile(r"[ \t]+")
_SLACK_LINK = re.compile(r"<(https?://[^|>\s]+)(?:\|([^>]*))?>")
_BARE_URL = re.compile(r"https?://\S+")
_MRKDWN_MARKS = re.compile(r"(?<![\w*_~])[*_~](?=\S)|(?<=\S)[*_~](?![\w*_~])")


def is_gsm7(text: str) -> bool:
    """True when every character of `text` is in the GSM-7 alphabet (with its extension)."""
    return all(char in _GSM7_BASIC_SET or char in _GSM7_EXTENSION_SET for char in text)


@dataclass(frozen=True)
class SegmentCount:
    """How a carrier bills a text sent as SMS.

    Attributes:
        encoding: GSM-7 when every character is in its alphabet, else UCS-2.
        units: septets (GSM-7, an extension character counts 2) or UTF-16 code units (UCS-2,
            an emoji counts 2).
        segments: billed segments: 1 up to 160/70 units, else parts of 153/67 units, a
            two-unit character never split between parts.
        characters: the text's length as Twilio counts it against its 1,600 limit.
    """

    encoding: Encoding
    units: int
    segments: int
    characters: int


def _unit_costs(text: str, encoding: Encoding) -> list[int]:
    if encoding == "GSM-7":
        return [2 if char in _GSM7_EXTENSION_SET else 1 for char in text]
    return [2 if ord(char) > 0xFFFF else 1 for char in text]


def sms_segments(text: str) -> SegmentCount:
    """The encoding, units and segment count of `text` as an SMS (Twilio's rules)."""
    encoding: Encoding = "GSM-7" if is_gsm7(text) else "UCS-2"
    costs = _unit_costs(text, encoding)
    units = sum(costs)
    single, part = (GSM7_SINGLE, GSM7_PART) if encoding == "GSM-7" else (UCS2_SINGLE, UCS2_PART)
    if units <= single:
        segments = 1 if text else 0
    else:
        segments, filled = 1, 0
        for cost in costs:
            if filled + cost > part:
                segments, filled = segments + 1, 0
            filled += cost
    return SegmentCount(encoding, units, segments, len(text.encode("utf-16-le")) // 2)


def carrier_bytes(text: str) -> int:
    """Bytes of `text` as Korean carriers count them (Hangul 2, ASCII 1).

    Raises:
        ValueError: a character outside EUC-KR (an emoji): see `to_carrier_charset`.
    """
    try:
        return len(text.encode(KOREAN_CARRIER_CODEC))
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"character {exc.start + 1} is outside EUC-KR (Korean carriers refuse it)"
        ) from None


def is_carrier_encodable(text: str) -> bool:
    """True when Korean carriers can carry every character of `text`."""
    try:
        text.encode(KOREAN_CARRIER_CODEC)
    except UnicodeEncodeError:
        return False
    return True


def to_carrier_charset(text: str) -> str:
    """`text` with what EUC-KR lacks replaced (dashes, check marks) or removed (emoji).

    Emoji are dropped rather than sent as ``?``: a Korean SMS API refuses the whole message
    for one of them (Solapi status 1029).
    """
    kept: list[str] = []
    for char in text:
        char = _CARRIER_REPLACEMENTS.get(char, char)
        if is_carrier_encodable(char):
            kept.append(char)
    # A removed emoji leaves its spaces behind.
    return "\n".join(_SPACES.sub(" ", line).strip() for line in "".join(kept).split("\n"))


def korean_sms_type(text: str) -> KoreanSmsType:
    """SMS when `text` fits 90 carrier bytes, LMS up to 2,000.

    Raises:
        ValueError: longer than an LMS, or a character outside EUC-KR.
    """
    size = carrier_bytes(text)
    if size <= SOLAPI_SMS_BYTES:
        return "SMS"
    if size <= SOLAPI_LMS_BYTES:
        return "LMS"
    raise ValueError(f"text is {size} bytes, over the {SOLAPI_LMS_BYTES}-byte LMS limit")


class SmsBudget(Protocol):
    """How much one text may hold on a provider."""

    def fits(self, text: str) -> bool:
        """True when `text` can go out within the budget."""
        ...

    def ellipsis(self, text: str) -> str:
        """The mark a text cut short ends with, cheapest in `text`'s own encoding."""
        ...


@dataclass(frozen=True)
class SegmentBudget:
    """At most `max_segments` billed segments (GSM-7 or UCS-2) and Twilio's 1,600 characters."""

    max_segments: int = 1

    def fits(self, text: str) -> bool:
        count = sms_segments(text)
        return count.segments <= self.max_segments and count.characters <= TWILIO_MAX_CHARS

    def ellipsis(self, text: str) -> str:
        # "…" is not GSM-7: in an ASCII text it would switch the whole message to UCS-2.
        return "..." if is_gsm7(text) else "…"


@dataclass(frozen=True)
class ByteBudget:
    """At most `max_bytes` Korean carrier bytes (90 for an SMS, 2,000 for an LMS)."""

    max_bytes: int = SOLAPI_SMS_BYTES

    def fits(self, text: str) -> bool:
        try:
            return carrier_bytes(text) <= self.max_bytes
        except ValueError:
            return False

    def ellipsis(self, text: str) -> str:
        return "…"  # 2 bytes in EUC-KR, one fewer than "..."


def _compose(title: str, essentials: str, link: str) -> str:
    return "\n".join(part for part in (title, essentials, link) if part)


def _cut_at_words(text: str, fits: Callable[[str], bool], budget: SmsBudget) -> str:
    """The longest run of whole words of `text`, ending with the ellipsis, that `fits`; ""
    when not even the first word does."""
    words = list(re.finditer(r"\S+", text))
    best = ""
    low, high = 1, len(words)
    # Fitting is monotone in the number of words kept: binary search for the most.
    while low <= high:
        middle = (low + high) // 2
        kept = text[: words[middle - 1].end()]
        candidate = kept + budget.ellipsis(kept)
        if fits(candidate):
            best, low = candidate, middle + 1
        else:
            high = middle - 1
    return best


def shorten_for_sms(title: str, essentials: str, link: str | None, *, budget: SmsBudget) -> str:
    """The alert as one SMS within `budget`: title, essentials and link on their own lines.

    When the whole does not fit, the essentials are cut after the last whole word that
    fits and end with an ellipsis; a word is never cut, so a word that does not fit is left
    out. The link is kept whole whenever it fits at all (it is where the rest is); the title
    is cut the same way only when the link and the title's whole do not fit together.

    Args:
        title: the alert's title (first line).
        essentials: what the reader must know, in plain text.
        link: where the full alert is (None or "" for none).
        budget: the provider's limit (`SegmentBudget` for Twilio, `ByteBudget` for Korean SMS).

    Raises:
        ValueError: not even one word of the title (or the link alone) fits the budget.
    """
    title = " ".join(title.split())
    essentials = "\n".join(" ".join(line.split()) for line in essentials.splitlines()).strip()
    link = (link or "").strip()
    whole = _compose(title, essentials, link)
    if budget.fits(whole):
        return whole
    if link and not budget.fits(_compose(title, "", link)) and not budget.fits(link):
        link = ""  # a link that cannot fit even alone is no use cut
        if budget.fits(_compose(title, essentials, link)):
            return _compose(title, essentials, link)
    if not budget.fits(_compose(title, "", link)):
        short_title = _cut_at_words(title, lambda t: budget.fits(_compose(t, "", link)), budget)
        if not short_title:
            raise ValueError("the SMS budget holds not even the title's first word")
        return _compose(short_title, "", link)
    if not essentials:
        return _compose(title, "", link)
    short = _cut_at_words(essentials, lambda e: budget.fits(_compose(title, e, link)), budget)
    return _compose(title, short, link)


def message_sms_parts(message: Message) -> tuple[str, str, str | None]:
    """Title, essentials and link of `message` for an SMS.

    The essentials are the chat text (what chat may show, never the e-mail text), with its
    title line, mrkdwn marks and link syntax removed; the link is the message's acknowledgement
    link, else the first URL in it.
    """
    text = message.chat_text()
    links = [match.group(1) for match in _SLACK_LINK.finditer(text)]
    text = _SLACK_LINK.sub(lambda match: match.group(2) or "", text)
    links += _BARE_URL.findall(text)
    text = _BARE_URL.sub("", text)
    text = _MRKDWN_MARKS.sub("", text).replace("&lt;", "<").replace("&gt;", ">")
    text = text.replace("&amp;", "&")
    lines = [" ".join(line.split()) for line in text.splitlines()]
    lines = [line for line in lines if line and line != message.title.strip()]
    # An escalating alert's acknowledgement link comes first: on a phone it is what matters.
    link = message.ack_url or (links[0] if links else None)
    return message.title, "\n".join(lines), link

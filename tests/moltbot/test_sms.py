"""SMS text rules: segments, Korean carrier bytes, shortening at word boundaries (hand-checked)."""

from __future__ import annotations

import pytest

from moltbot.messages import Message
from moltbot.sms import (
    ByteBudget,
    SegmentBudget,
    carrier_bytes,
    korean_sms_type,
    message_sms_parts,
    shorten_for_sms,
    sms_segments,
    to_carrier_charset,
)

LINK = "https://x.io/a"  # 14 characters, 14 bytes


@pytest.mark.parametrize(
    ("text", "encoding", "units", "segments"),
    [
        ("a" * 160, "GSM-7", 160, 1),
        ("a" * 161, "GSM-7", 161, 2),
        ("a" * 306, "GSM-7", 306, 2),
        ("a" * 307, "GSM-7", 307, 3),
        ("{" * 80, "GSM-7", 160, 1),  # an extension character is two septets
        ("{" * 81, "GSM-7", 162, 2),
        # 152 + an escape pair that may not straddle parts: 152 | 2 + 151 | 1
        ("a" * 152 + "{" + "a" * 152, "GSM-7", 306, 3),
        ("é" * 160, "GSM-7", 160, 1),  # é is in the GSM-7 alphabet, ê is not
        ("ê" + "a" * 69, "UCS-2", 70, 1),
        ("가" * 70, "UCS-2", 70, 1),
        ("가" * 71, "UCS-2", 71, 2),
        ("가" * 134, "UCS-2", 134, 2),
        ("가" * 135, "UCS-2", 135, 3),
        ("a" * 159 + "가", "UCS-2", 160, 3),  # one Hangul makes the whole text UCS-2
        ("😀" * 35, "UCS-2", 70, 1),  # an emoji is two UTF-16 units
        ("😀" * 36, "UCS-2", 72, 2),
        ("", "GSM-7", 0, 0),
    ],
)
def test_sms_segments(text: str, encoding: str, units: int, segments: int) -> None:
    count = sms_segments(text)

    assert (count.encoding, count.units, count.segments) == (encoding, units, segments)


@pytest.mark.parametrize(
    ("text", "size"),
    [("abc", 3), ("가나다", 6), ("가a", 3), ("똠", 2), ("…", 2), ("서버 다운", 9)],
)
def test_carrier_bytes_counts_hangul_as_two(text: str, size: int) -> None:
    assert carrier_bytes(text) == size


def test_carrier_bytes_refuses_emoji_naming_the_position_only() -> None:
    with pytest.raises(ValueError, match="character 3 is outside EUC-KR"):
        carrier_bytes("배포😀")


@pytest.mark.parametrize(
    ("text", "kind"),
    [("가" * 45, "SMS"), ("가" * 46, "LMS"), ("a" * 90, "SMS"), ("a" * 2000, "LMS")],
)
def test_korean_sms_type_by_bytes(text: str, kind: str) -> None:
    assert korean_sms_type(text) == kind


def test_korean_sms_type_refuses_over_lms() -> None:
    with pytest.raises(ValueError, match="2001 bytes, over the 2000-byte LMS limit"):
        korean_sms_type("a" * 2001)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("🚨 서버 다운 – 확인 ✅", "[!] 서버 다운 - 확인 [OK]"),
        ("배포 완료 😀👍", "배포 완료"),
        ("첫 줄 😀\n둘째 줄", "첫 줄\n둘째 줄"),
    ],
)
def test_to_carrier_charset(text: str, expected: str) -> None:
    assert to_carrier_charset(text) == expected


def words(word: str, count: int) -> str:
    return " ".join([word] * count)


@pytest.mark.parametrize(
    ("title", "essentials", "budget", "expected"),
    [
        # GSM-7, one segment: "Disk full\n" (10) + essentials + "\n" + link (15) <= 160.
        (
            "Disk full",
            words("abcd", 27),
            SegmentBudget(),
            f"Disk full\n{words('abcd', 27)}\n{LINK}",
        ),
        # 28 words (139) do not fit: 26 words + "..." (132) do, 27 + "..." (137) do not.
        (
            "Disk full",
            words("abcd", 28),
            SegmentBudget(),
            f"Disk full\n{words('abcd', 26)}...\n{LINK}",
        ),
        # One word longer than the room is never cut: it is left out.
        ("Disk full", "a" * 200, SegmentBudget(), f"Disk full\n{LINK}"),
        # Two segments hold 306 septets.
        (
            "Disk full",
            words("abcd", 56),
            SegmentBudget(2),
            f"Disk full\n{words('abcd', 56)}\n{LINK}",
        ),
        # UCS-2, one segment: "디스크 부족\n" (7) + essentials + "\n" + link (15) <= 70:
        # 16 words + "…" is 48 units, exactly 70 in all.
        (
            "디스크 부족",
            words("서버", 16),
            SegmentBudget(),
            f"디스크 부족\n{words('서버', 16)}\n{LINK}",
        ),
        (
            "디스크 부족",
            words("서버", 17),
            SegmentBudget(),
            f"디스크 부족\n{words('서버', 16)}…\n{LINK}",
        ),
        # EUC-KR, one SMS: "디스크 부족\n" (12 bytes) + essentials + "\n" + link (15) <= 90:
        # 12 words are 59 bytes (86 in all); 13 are 64 (91); 12 + "…" is 61 (88).
        (
            "디스크 부족",
            words("서버", 12),
            ByteBudget(90),
            f"디스크 부족\n{words('서버', 12)}\n{LINK}",
        ),
        (
            "디스크 부족",
            words("서버", 13),
            ByteBudget(90),
            f"디스크 부족\n{words('서버', 12)}…\n{LINK}",
        ),
        # A title too long for the budget with the link is cut the same way: 13 words of 10
        # letters + "..." + "\n" + link is exactly 160.
        (words("abcdefghij", 20), "x", SegmentBudget(), f"{words('abcdefghij', 13)}...\n{LINK}"),
    ],
)
def test_shorten_for_sms(title: str, essentials: str, budget, expected: str) -> None:
    text = shorten_for_sms(title, essentials, LINK, budget=budget)

    assert text == expected
    assert budget.fits(text)


def test_shortened_ascii_stays_gsm7_and_korean_is_one_ucs2_segment_of_70() -> None:
    ascii_text = shorten_for_sms("Disk full", words("abcd", 40), LINK, budget=SegmentBudget())
    korean = shorten_for_sms("디스크 부족", words("서버", 17), LINK, budget=SegmentBudget())

    # "…" would have turned the ASCII text into UCS-2 (70 characters a segment).
    assert sms_segments(ascii_text).encoding == "GSM-7"
    assert sms_segments(korean) == sms_segments("가" * 70)


def test_shorten_drops_a_link_that_cannot_fit_and_refuses_an_impossible_budget() -> None:
    long_link = "https://x.io/" + "a" * 100

    assert shorten_for_sms("서버", "다운", long_link, budget=ByteBudget(20)) == "서버\n다운"
    with pytest.raises(ValueError, match="not even the title's first word"):
        shorten_for_sms("a" * 50, "", None, budget=ByteBudget(10))


def test_message_sms_parts_takes_chat_text_without_markup_and_the_first_link() -> None:
    message = Message(
        key="k",
        automation="a",
        title="디스크 부족",
        text="이메일 전용 상세 내용",
        slack_blocks=[
            {"type": "header", "text": {"type": "plain_text", "text": "디스크 부족"}},
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": "*db-1* 사용률 95%\n<https://x.io/a|대시보드>"},
            },
        ],
    )

    assert message_sms_parts(message) == ("디스크 부족", "db-1 사용률 95%\n대시보드", LINK)

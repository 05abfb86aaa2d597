"""A sample Google Forms response sheet (Korean locale) for the demo and the form-digest tests."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from moltbot.errors import InputError

SAMPLE_FORM_NAME = "고객 만족도 설문"
SAMPLE_FORM_WORKSHEET = "설문지 응답 시트1"
# Fixed, so a later demo finds the watermark an earlier one left in the ledger.
SAMPLE_FORM_SPREADSHEET_ID = "1moltbotSampleFormResponses0000000000000000"

HEADER = (
    "타임스탬프",
    "이름",
    "이메일 주소",
    "참여 방식",
    "관심 분야",
    "만족도",
    "추천 의향",
    "의견",
)
REQUIRED_COLUMNS = ("이름", "이메일 주소")
# Personal columns the digest leaves out (they still have to be answered).
PERSONAL_COLUMNS = ("이름", "이메일 주소")
NPS_COLUMN = "추천 의향"

_MODES = (("온라인", 5), ("오프라인", 3), ("둘 다", 2))
_INTERESTS = ("AI", "데이터 분석", "업무 자동화", "보안")
_SATISFACTION = ((5, 4), (4, 5), (3, 2), (2, 1), (1, 1))
_NPS = ((10, 4), (9, 4), (8, 3), (7, 2), (6, 1), (5, 1), (3, 1))
_NAMES = ("김민준", "이서연", "박지호", "최수아", "정도윤", "강하은", "조예준", "윤지우", "장서준")
# Free-text answers: mostly different, as real comments are (a few people leave none).
_COMMENTS = (
    "강의 자료를 미리 받을 수 있으면 좋겠습니다.",
    "실습 시간이 더 길었으면 합니다.",
    "좋았어요!",
    "주차 안내가 부족했어요.",
    "다음 행사도 참여하고 싶습니다, 감사합니다.",
    "Great session, thanks.",
    "발표 자료 글씨가 조금 작았어요.",
    "질의응답 시간이 유익했습니다.",
    "온라인 음질이 가끔 끊겼습니다.",
    "사례 중심이라 이해하기 쉬웠어요.",
    "점심 메뉴가 아쉬웠습니다.",
    "The Korean subtitles helped a lot.",
    "자동화 데모가 인상적이었어요.",
    "보안 세션을 더 듣고 싶어요.",
    "시간이 조금 길게 느껴졌어요.",
    "팀원에게도 추천하겠습니다.",
    "네트워킹 시간이 있으면 좋겠어요.",
    "Would love a follow-up workshop.",
    "데이터 분석 실습이 최고였어요.",
    "안내 메일이 늦게 왔어요.",
    "장소가 찾기 어려웠습니다.",
    "강사님 설명이 명확했어요.",
    "다음에는 심화 과정도 열어 주세요.",
    "전반적으로 만족합니다.",
    "자료 공유 링크가 안 열려요.",
    "휴식 시간이 더 있었으면 해요.",
    "매우 알찬 시간이었습니다.",
    "녹화본을 받을 수 있을까요?",
)
# Batch 0 is what the form collected first; batch 1 arrives later (the demo's second digest).
_BATCHES = ((24, datetime(2026, 11, 20, 9, 5, 12)), (6, datetime(2026, 11, 24, 10, 2, 40)))
BATCHES = len(_BATCHES)
# One response per batch 0 whose timestamp was mangled (November has no 31st) and one without
# its required e-mail address: both must show up under "needs attention".
MALFORMED_TIMESTAMP_ROW = 11
MISSING_EMAIL_ROW = 17


def forms_timestamp(moment: datetime) -> str:
    """`moment` as Forms writes it in a Korean spreadsheet: ``2026. 11. 24 오후 3:12:45``."""
    half = "오후" if moment.hour >= 12 else "오전"
    hour = moment.hour % 12 or 12
    return (
        f"{moment.year}. {moment.month}. {moment.day} {half} "
        f"{hour}:{moment.minute:02d}:{moment.second:02d}"
    )


def _weighted(draw: random.Random, options: tuple[tuple[object, int], ...]) -> object:
    values, weights = zip(*options, strict=True)
    return draw.choices(values, weights=weights)[0]


def sample_form_rows(batch: int = 0) -> list[list[str]]:
    """The responses of one batch (no header), the same every time.

    Args:
        batch: 0 (24 responses, 20-23 Nov 2026) or 1 (6 more, 24 Nov 2026).

    Raises:
        InputError: an unknown batch.
    """
    if batch not in range(BATCHES):
        raise InputError(f"batch must be 0 or 1, got {batch}")
    draw = random.Random(20261124 + batch)
    count, start = _BATCHES[batch]
    first_row = 2 + sum(size for size, _ in _BATCHES[:batch])
    rows = []
    moment = start
    for offset in range(count):
        row = first_row + offset
        moment += timedelta(minutes=draw.randint(20, 240), seconds=draw.randint(0, 59))
        picked = sorted(draw.sample(range(len(_INTERESTS)), draw.randint(1, 3)))
        name = _NAMES[row % len(_NAMES)]
        stamp = forms_timestamp(moment)
        if row == MALFORMED_TIMESTAMP_ROW:
            stamp = forms_timestamp(moment).replace(f"{moment.month}. {moment.day}", "11. 31")
        comment = _COMMENTS[row % len(_COMMENTS)] if row % 5 else ""
        if row == 8:
            comment = "자료 받을 연락처: 010-2345-6789 (또는 minjun.kim@example.com)"
        rows.append(
            [
                stamp,
                name,
                "" if row == MISSING_EMAIL_ROW else f"user{row:03d}@example.com",
                str(_weighted(draw, _MODES)),
                ", ".join(_INTERESTS[index] for index in picked),
                str(_weighted(draw, _SATISFACTION)),
                str(_weighted(draw, _NPS)),
                comment,
            ]
        )
    return rows


def sample_form_sheet(batches: int = 1) -> list[list[str]]:
    """The response sheet after the first `batches` batches: the header row, then responses."""
    rows = [list(HEADER)]
    for batch in range(batches):
        rows.extend(sample_form_rows(batch))
    return rows

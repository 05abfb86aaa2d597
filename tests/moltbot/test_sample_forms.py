"""The sample Google Forms response sheet: deterministic, Korean, every case the digest needs."""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from demo.sample_forms import (
    HEADER,
    MALFORMED_TIMESTAMP_ROW,
    MISSING_EMAIL_ROW,
    NPS_COLUMN,
    PERSONAL_COLUMNS,
    forms_timestamp,
    sample_form_rows,
    sample_form_sheet,
)
from flows.form_digest.digest import plan_layout
from flows.shared.forms import parse_form_timestamps


def frame(rows: list[list[str]]) -> pd.DataFrame:
    index = pd.Index(range(2, 2 + len(rows) - 1), name="sheet_row")
    return pd.DataFrame(rows[1:], columns=rows[0], index=index, dtype=str)


def test_the_sample_is_the_same_every_time():
    assert sample_form_sheet(2) == sample_form_sheet(2)
    assert sample_form_sheet(2)[: len(sample_form_sheet(1))] == sample_form_sheet(1)
    assert [len(sample_form_rows(batch)) for batch in (0, 1)] == [24, 6]


def test_timestamps_are_written_as_forms_writes_them_in_korean():
    assert forms_timestamp(datetime(2026, 11, 24, 15, 12, 45)) == "2026. 11. 24 오후 3:12:45"
    assert forms_timestamp(datetime(2026, 11, 24, 0, 5, 0)) == "2026. 11. 24 오전 12:05:00"


def test_the_sample_holds_every_kind_of_question_and_both_problems():
    sheet = frame(sample_form_sheet(2))
    times = parse_form_timestamps(sheet["타임스탬프"], "Asia/Seoul")

    layout = plan_layout(
        sheet, timestamp_column=None, nps_column=NPS_COLUMN, skip_columns=PERSONAL_COLUMNS
    )

    assert list(sheet.columns) == list(HEADER)
    assert layout.questions == {
        "참여 방식": "choice",
        "관심 분야": "checkbox",
        "만족도": "numeric",
        "추천 의향": "nps",
        "의견": "text",
    }
    assert times.isna().to_numpy().nonzero()[0].tolist() == [MALFORMED_TIMESTAMP_ROW - 2]
    assert sheet.loc[MISSING_EMAIL_ROW, "이메일 주소"] == ""
    assert (sheet.drop(index=MISSING_EMAIL_ROW)["이메일 주소"] != "").all()
    assert times.dropna().is_monotonic_increasing

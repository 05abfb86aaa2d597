"""Form-digest computations on small hand-checked tables: kinds, figures, needs attention."""

from __future__ import annotations

import pandas as pd
import pytest

from flows.form_digest.digest import (
    build_digest,
    check_nps_column,
    classify_answers,
    compact_rows,
    plan_layout,
    shorten,
    split_options,
    summarize_question,
)
from flows.shared.forms import parse_form_timestamps
from moltbot.errors import InputError


def answers(*values: str, first_row: int = 2) -> pd.Series:
    return pd.Series(list(values), index=range(first_row, first_row + len(values)), dtype=str)


def sheet(rows: list[list[str]], header: list[str]) -> pd.DataFrame:
    index = pd.Index(range(2, 2 + len(rows)), name="sheet_row")
    return pd.DataFrame(rows, columns=header, index=index, dtype=str)


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        (("5", "4", "5", "3"), "numeric"),
        (("1,200", "300", "4.5"), "numeric"),
        # 4 of 5 answers are numbers: numeric, the word goes to "needs attention".
        (("5", "4", "5", "3", "다섯"), "numeric"),
        (("5", "4", "다섯", "다섯", "4", "5"), "choice"),
        (("온라인", "오프라인", "온라인", "온라인"), "choice"),
        (("AI, 보안", "AI", "데이터 분석, AI", "보안"), "checkbox"),
        # A choice whose label holds a comma is not split into options.
        (("예, 참석합니다", "아니오", "예, 참석합니다", "아니오"), "choice"),
        # Free text with a comma in it does not read as options.
        (("좋았어요, 감사합니다", "자료가 부족했어요", "시간이 짧았어요, 아쉬워요"), "text"),
        (("좋아요", "별로예요", "좋아요"), "text"),  # answers do not repeat enough
        (tuple(f"도시 {i % 21}" for i in range(60)), "text"),  # 21 distinct: past 20
        (tuple(f"도시 {i % 20}" for i in range(60)), "choice"),
        ((), "text"),
    ],
    ids=[
        "rating", "thousands", "mostly-numeric", "half-numeric", "choice", "checkbox",
        "comma-label", "comma-text", "few-repeats", "21-values", "20-values", "unanswered",
    ],
)  # fmt: skip
def test_classify_answers(values, kind):
    assert classify_answers(answers(*values)) == kind


def test_checkbox_answers_split_on_comma_space():
    assert split_options(answers("AI, 데이터 분석", "보안")).tolist() == [
        "AI",
        "데이터 분석",
        "보안",
    ]


@pytest.mark.parametrize(
    ("values", "row"),
    [(("10", "0", "11"), 4), (("9", "7.5"), 3), (("매우 그렇다",), 2), (("-1",), 2)],
)
def test_an_nps_column_holds_whole_numbers_from_0_to_10(values, row):
    with pytest.raises(InputError, match=rf"not a 0-10 question: row {row} is not a whole number"):
        check_nps_column(answers(*values), "추천")


def test_an_nps_column_may_have_blanks():
    check_nps_column(answers("10", "", "0", "7"), "추천")


def test_choice_counts_most_frequent_first_then_first_seen():
    summary = summarize_question(
        "choice", answers("B", "A", "B", "C", "A", "B"), max_text_answers=20
    )

    assert summary == {
        "kind": "choice",
        "answers": 6,
        "options": [
            {"value": "B", "count": 3, "pct": 50.0},
            {"value": "A", "count": 2, "pct": 33.3},
            {"value": "C", "count": 1, "pct": 16.7},
        ],
        "other": None,
    }


def test_choice_beyond_20_values_groups_the_rest_as_other():
    values = [f"v{i:02d}" for i in range(22) for _ in range(2)] + ["v00"]

    summary = summarize_question("choice", answers(*values), max_text_answers=20)

    assert len(summary["options"]) == 20
    assert summary["options"][0] == {"value": "v00", "count": 3, "pct": 6.7}
    assert summary["other"] == {"values": 2, "count": 4, "pct": 8.9}


def test_checkbox_shares_are_of_the_respondents():
    summary = summarize_question(
        "checkbox", answers("AI, 보안", "AI", "데이터 분석, AI, 보안", "보안"), max_text_answers=20
    )

    assert summary["answers"] == 4
    assert summary["options"] == [
        {"value": "AI", "count": 3, "pct": 75.0},
        {"value": "보안", "count": 3, "pct": 75.0},
        {"value": "데이터 분석", "count": 1, "pct": 25.0},
    ]


def test_numeric_figures_and_distribution():
    summary = summarize_question(
        "numeric", answers("5", "4", "4", "2", "약 3"), max_text_answers=20
    )

    assert summary == {
        "kind": "numeric",
        "answers": 4,
        "mean": 3.75,
        "median": 4,
        "min": 2,
        "max": 5,
        "distribution": [
            {"value": "2", "count": 1, "pct": 25.0},
            {"value": "4", "count": 2, "pct": 50.0},
            {"value": "5", "count": 1, "pct": 25.0},
        ],
        "not_numeric_rows": [6],
    }


def test_numeric_with_many_values_is_shown_in_5_ranges():
    summary = summarize_question(
        "numeric", answers(*(str(i) for i in range(1, 101))), max_text_answers=20
    )

    assert [d["count"] for d in summary["distribution"]] == [20] * 5
    assert summary["distribution"][-1]["value"] == "80.2–100"


def test_nps_promoters_minus_detractors():
    # 3 promoters (9, 10, 10), 2 passives (7, 8), 3 detractors (0, 5, 6) of 8.
    summary = summarize_question(
        "nps", answers("10", "9", "7", "0", "8", "5", "10", "6"), max_text_answers=20
    )

    assert summary["nps"] == 0.0
    assert summary["promoters"] == {"count": 3, "pct": 37.5}
    assert summary["passives"] == {"count": 2, "pct": 25.0}
    assert summary["detractors"] == {"count": 3, "pct": 37.5}
    assert [d["count"] for d in summary["distribution"]] == [1, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2]
    assert summarize_question("nps", answers("9", "10"), max_text_answers=1)["nps"] == 100.0


@pytest.mark.parametrize(
    ("limit", "listed", "more"),
    [(20, ["첫째", "둘째 줄 이어서", "셋째"], 0), (2, ["첫째", "둘째 줄 이어서"], 1), (0, [], 3)],
)
def test_free_text_lists_at_most_max_text_answers(limit, listed, more):
    summary = summarize_question(
        "text", answers("첫째", "둘째 줄\n이어서", "셋째"), max_text_answers=limit
    )

    assert summary == {"kind": "text", "answers": 3, "listed": listed, "more": more}


def test_long_answers_are_shortened_to_one_line():
    assert shorten("가" * 400) == "가" * 299 + "…"
    assert shorten("  a\n\tb  ") == "a b"


@pytest.mark.parametrize(
    ("rows", "text"),
    [
        ([], ""),
        ([7], "7"),
        ([3, 5, 6, 7, 10, 2], "2–3, 5–7, 10"),
        (range(2, 10), "2–9"),
    ],
)
def test_compact_rows(rows, text):
    assert compact_rows(rows) == text


def test_compact_rows_names_how_many_it_left_out():
    assert compact_rows([1, 3, 4, 5, 7, 9, 10], limit=2) == "1, 3–5, … (3 more)"


HEADER = ["타임스탬프", "이메일", "만족도", "의견"]


def test_plan_layout_types_questions_from_the_whole_sheet():
    frame = sheet(
        [["2026. 11. 24 오후 3:00:00", "a@x.io", str(i % 5 + 1), f"의견 {i}"] for i in range(10)],
        HEADER,
    )

    layout = plan_layout(
        frame, timestamp_column=None, required_columns=["이메일"], skip_columns=["이메일"]
    )

    assert layout.timestamp_column == "타임스탬프"
    assert layout.questions == {"만족도": "numeric", "의견": "text"}
    assert layout.required == ("이메일",)


def test_question_kinds_overrides_the_guess():
    frame = sheet([["t", "a@x.io", "5", "x"]], HEADER)

    layout = plan_layout(frame, timestamp_column=None, question_kinds={"만족도": "choice"})

    assert layout.questions["만족도"] == "choice"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"required_columns": ["이름"]}, "required_columns: column '이름' not in the sheet"),
        ({"skip_columns": ["이름", "주소"]}, "skip_columns: columns '이름', '주소' not in"),
        ({"question_kinds": {"만족도": "rating"}}, "question_kinds: unknown kind 'rating'"),
        ({"nps_column": "타임스탬프"}, "nps_column '타임스탬프' is the timestamp column"),
        (
            {"nps_column": "만족도", "question_kinds": {"만족도": "numeric"}},
            "'만족도' is named in both nps_column and question_kinds",
        ),
        ({"timestamp_column": "Timestamp"}, "timestamp column 'Timestamp' is not in the sheet"),
    ],
)
def test_plan_layout_refuses_unknown_names(params, message):
    frame = sheet([["t", "a@x.io", "5", "x"]], HEADER)

    with pytest.raises(InputError, match=message):
        plan_layout(frame, **{"timestamp_column": None, **params})


def test_a_sheet_without_a_header_is_refused():
    with pytest.raises(InputError, match="not even a header row"):
        plan_layout(pd.DataFrame(), timestamp_column=None)


def test_build_digest_leaves_out_and_lists_the_rows_to_look_at():
    frame = sheet(
        [
            ["2026. 11. 24 오후 3:00:00", "a@x.io", "5", "좋아요"],
            ["2026. 11. 31 오후 3:00:00", "b@x.io", "4", "날짜가 이상한 행"],
            ["2026. 11. 24 오후 3:05:00", "", "3", "이메일 없음"],
            ["", "", "", "둘 다 없음"],
            ["2026. 11. 24 오후 3:06:00", "c@x.io", "몰라요", ""],
            ["2026. 11. 24 오후 3:07:00", "d@x.io", "4", ""],
            ["2026. 11. 24 오후 3:08:00", "e@x.io", "5", ""],
            ["2026. 11. 24 오후 3:09:00", "f@x.io", "2", ""],
        ],
        HEADER,
    )
    layout = plan_layout(frame, timestamp_column=None, required_columns=["이메일"])
    times = parse_form_timestamps(frame["타임스탬프"], "Asia/Seoul")

    digest = build_digest(frame, times, layout, max_text_answers=20)

    assert (digest.rows, digest.responses) == (8, 5)
    assert digest.needs_attention == [
        {
            "row": 3,
            "counted": False,
            "problems": [{"kind": "unreadable_timestamp", "cell": "2026. 11. 31 오후 3:00:00"}],
        },
        {
            "row": 4,
            "counted": False,
            "problems": [{"kind": "missing_answer", "question": "이메일"}],
        },
        {
            "row": 5,
            "counted": False,
            "problems": [
                {"kind": "unreadable_timestamp", "cell": ""},
                {"kind": "missing_answer", "question": "이메일"},
            ],
        },
        {
            "row": 6,
            "counted": True,
            "problems": [{"kind": "not_a_number", "question": "만족도"}],
        },
    ]
    rating = digest.questions["만족도"]
    assert (rating["kind"], rating["answers"], rating["mean"], rating["not_numeric"]) == (
        "numeric",
        4,
        4,
        1,
    )
    assert digest.questions["의견"]["listed"] == ["좋아요"]

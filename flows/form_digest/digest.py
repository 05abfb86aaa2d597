"""Form-digest computations: the questions of a response sheet, their figures, rows to look at."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from flows.shared.forms import timestamp_column_of
from flows.shared.tables import named_list
from moltbot.errors import InputError

KINDS = ("choice", "checkbox", "numeric", "nps", "text")
# `question_kinds` may force these; NPS is named with `nps_column` instead.
FORCEABLE_KINDS = ("choice", "checkbox", "numeric", "text")
# A question with more distinct answers than this is free text (see `classify_answers`).
MAX_CHOICES = 20
# A question whose answers are at least this share of numbers is numeric; the few answers that
# are not numbers are listed under "needs attention" (see `classify_answers`).
NUMERIC_SHARE = 0.8
# Google Forms writes the choices of a checkbox question joined by ", ".
CHECKBOX_SEPARATOR = ", "
TEXT_MAX_CHARS = 300
CELL_MAX_CHARS = 40
NUMERIC_BINS = 5
PROMOTER_MIN, DETRACTOR_MAX = 9, 6
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class FormLayout:
    """What a response sheet holds, decided from the whole sheet before any window is digested.

    Attributes:
        timestamp_column: the Forms timestamp column.
        questions: question column -> kind (`KINDS`), in sheet order.
        required: columns every response must answer.
        nps_column: the 0-10 question scored as NPS, if any.
    """

    timestamp_column: str
    questions: dict[str, str]
    required: tuple[str, ...]
    nps_column: str | None


@dataclass(frozen=True)
class Digest:
    """The figures of one window of responses.

    Attributes:
        rows: how many sheet rows the window holds.
        responses: how many of them count in the figures (the others need attention).
        questions: question -> its summary (see `summarize_question`), in sheet order.
        needs_attention: one entry per row to look at, by row: ``{"row", "counted",
            "problems": [{"kind", ...}]}``; ``counted`` is False for a row left out of the
            figures (unreadable timestamp, missing required answer), True for a counted row with
            an answer that is not a number in a numeric question.
    """

    rows: int
    responses: int
    questions: dict[str, dict[str, Any]]
    needs_attention: list[dict[str, Any]]


# --------------------------------------------------------------------------- answers


def answers_of(values: pd.Series) -> pd.Series:
    """The non-empty answers of a column, stripped (index: sheet rows)."""
    text = values.astype(str).str.strip()
    return text[text != ""]


def to_numbers(answers: pd.Series) -> pd.Series:
    """Answers as floats, NaN where an answer is not a number (`1,200` reads as 1200)."""
    cleaned = answers.astype(str).str.replace(",", "", regex=False).str.strip()
    return pd.to_numeric(cleaned, errors="coerce").astype("float64")


def split_options(answers: pd.Series) -> pd.Series:
    """The chosen options of checkbox answers, one per entry (index: the answer's sheet row)."""
    if answers.empty:
        return answers
    options = answers.str.split(CHECKBOX_SEPARATOR, regex=False).explode().str.strip()
    return options[options != ""].astype(str)


def shorten(text: str, limit: int = TEXT_MAX_CHARS) -> str:
    """`text` on one line, cut to `limit` characters with an ellipsis."""
    flat = _SPACES.sub(" ", str(text)).strip()
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def compact_rows(rows: Iterable[int], limit: int = 2000) -> str:
    """Row numbers as ranges, e.g. ``3, 5–7, 10``; past `limit` ranges, ``… (K more)``."""
    ranges: list[list[int]] = []
    for number in sorted(set(rows)):
        if ranges and ranges[-1][1] == number - 1:
            ranges[-1][1] = number
        else:
            ranges.append([number, number])
    parts = [str(first) if first == last else f"{first}–{last}" for first, last in ranges[:limit]]
    left = sum(last - first + 1 for first, last in ranges[limit:])
    return ", ".join(parts) + (f", … ({left:,} more)" if left else "")


# --------------------------------------------------------------------------- question kinds


def classify_answers(answers: pd.Series) -> str:
    """The kind of a question from all its answers in the sheet (stripped, non-empty).

    * numeric: at least 80% of the answers are numbers (a rating, a count). A column that is
      mostly numbers with a few words in it ("3", "4", "about 5") keeps its figures over the
      numbers; the rows with a word are listed under "needs attention", so nobody misses them.
    * checkbox: some answers hold ", ", and the options (split on it) look like choices (below)
      and are no more than the distinct answers (a choice whose label has a comma stays one).
    * choice: at most 20 distinct answers, each given twice on average (free text rarely
      repeats; a fresh sheet with a few answers may read as text until answers repeat).
    * text: anything else; in particular more than 20 distinct answers, however short (a
      "city" or "name" question): they are listed, not counted. `question_kinds` forces a kind.

    Args:
        answers: every non-empty answer of the column in the sheet (see `answers_of`).
    """
    if answers.empty:
        return "text"
    if to_numbers(answers).notna().mean() >= NUMERIC_SHARE:
        return "numeric"
    distinct = answers.nunique()
    if answers.str.contains(CHECKBOX_SEPARATOR, regex=False).any():
        options = split_options(answers)
        if _repeating(options) and options.nunique() <= distinct:
            return "checkbox"
    if _repeating(answers):
        return "choice"
    return "text"


def _repeating(values: pd.Series) -> bool:
    """At most 20 distinct values, each given twice on average: options, not free text."""
    distinct = values.nunique()
    return distinct <= MAX_CHOICES and distinct * 2 <= len(values)


def check_nps_column(values: pd.Series, column: str) -> None:
    """Refuse an NPS column that holds anything but whole numbers from 0 to 10.

    A Forms 0-10 linear scale cannot hold anything else, so another value means the wrong
    column was named; the whole sheet is checked so the mistake shows on the first run.

    Raises:
        InputError: naming the first offending row (never its content: it may be personal).
    """
    numbers = to_numbers(answers := answers_of(values))
    bad = (numbers.isna() | (numbers % 1 != 0) | ~numbers.between(0, 10)).to_numpy()
    if bad.any():
        rows = [int(row) for row in answers.index[bad]]
        more = f" (and {len(rows) - 1:,} more rows)" if len(rows) > 1 else ""
        raise InputError(
            f"nps_column {column!r} is not a 0-10 question: row {rows[0]} is not a whole "
            f"number from 0 to 10{more}"
        )


def plan_layout(
    frame: pd.DataFrame,
    *,
    timestamp_column: str | None,
    required_columns: Sequence[str] | None = None,
    nps_column: str | None = None,
    skip_columns: Sequence[str] | None = None,
    question_kinds: Mapping[str, str] | None = None,
) -> FormLayout:
    """Check the sheet against the parameters and decide each question's kind.

    Kinds are decided on the whole sheet, not on the window: a question keeps its kind from one
    digest to the next, and a small window (two answers) cannot make a choice look like text.

    Args:
        frame: the whole sheet (`tasks.sheets.read_worksheet`).
        timestamp_column: the Forms timestamp column; None takes the first column.
        required_columns: columns every response must answer.
        nps_column: a 0-10 question to score as NPS.
        skip_columns: columns left out of the digest (e.g. names and e-mail addresses).
        question_kinds: column -> kind (`FORCEABLE_KINDS`) where the guess is wrong.

    Raises:
        InputError: a sheet without a header, a named column that is missing, an unknown kind,
            or an NPS column with other values than 0-10.
    """
    timestamp = timestamp_column_of(frame, timestamp_column)
    columns = [str(name) for name in frame.columns]
    required = tuple(dict.fromkeys(required_columns or ()))
    skip = set(skip_columns or ())
    forced = dict(question_kinds or {})
    for parameter, names in (
        ("required_columns", required),
        ("skip_columns", sorted(skip)),
        ("question_kinds", list(forced)),
        ("nps_column", [nps_column] if nps_column else []),
    ):
        missing = [name for name in names if name not in columns]
        if missing:
            raise InputError(
                f"{parameter}: {named_list(missing, 'column')} not in the sheet "
                f"(columns: {', '.join(columns)})"
            )
    unknown = sorted({kind for kind in forced.values() if kind not in FORCEABLE_KINDS})
    if unknown:
        raise InputError(
            f"question_kinds: unknown kind {', '.join(map(repr, unknown))} "
            f"(use {', '.join(FORCEABLE_KINDS)}; name an NPS question with nps_column)"
        )
    if nps_column is not None:
        if nps_column == timestamp:
            raise InputError(f"nps_column {nps_column!r} is the timestamp column")
        if nps_column in forced:
            raise InputError(f"{nps_column!r} is named in both nps_column and question_kinds")
        check_nps_column(frame[nps_column], nps_column)
    questions: dict[str, str] = {}
    for column in columns:
        if column == timestamp or column in skip:
            continue
        if column == nps_column:
            questions[column] = "nps"
        else:
            questions[column] = forced.get(column) or classify_answers(answers_of(frame[column]))
    return FormLayout(
        timestamp_column=timestamp, questions=questions, required=required, nps_column=nps_column
    )


# --------------------------------------------------------------------------- figures


def _pct(count: int, total: int) -> float | None:
    return round(count * 100 / total, 1) if total else None


def _number(value: float | None) -> int | float | None:
    """A figure as JSON: whole numbers as int, others rounded to 2 decimals, NaN as None."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    value = float(value)
    return int(value) if value.is_integer() and abs(value) < 2**53 else round(value, 2)


def _counted(values: pd.Series, total: int) -> list[dict[str, Any]]:
    """Counts of each value, most frequent first, ties in the order they first appear."""
    counts = values.value_counts(sort=False).sort_values(ascending=False, kind="stable")
    return [
        {"value": str(value), "count": int(count), "pct": _pct(int(count), total)}
        for value, count in counts.items()
    ]


def _options(kind: str, values: pd.Series, total: int) -> dict[str, Any]:
    counts = _counted(values, total)
    shown, rest = counts[:MAX_CHOICES], counts[MAX_CHOICES:]
    other = sum(entry["count"] for entry in rest)
    return {
        "kind": kind,
        "answers": total,
        "options": shown,
        "other": {"values": len(rest), "count": other, "pct": _pct(other, total)} if rest else None,
    }


def _distribution(numbers: pd.Series) -> list[dict[str, Any]]:
    total = len(numbers)
    if numbers.nunique() <= MAX_CHOICES:
        counts = numbers.value_counts().sort_index()
        return [
            {"value": str(_number(value)), "count": int(count), "pct": _pct(int(count), total)}
            for value, count in counts.items()
        ]
    bins = pd.cut(numbers, NUMERIC_BINS)
    counts = bins.value_counts(sort=False).sort_index()
    return [
        {
            "value": f"{_number(interval.left)}–{_number(interval.right)}",
            "count": int(count),
            "pct": _pct(int(count), total),
        }
        for interval, count in counts.items()
    ]


def summarize_question(kind: str, answers: pd.Series, *, max_text_answers: int) -> dict[str, Any]:
    """The figures of one question over the window's counted answers.

    Shapes (``answers`` is how many responses answered it):

    * choice: ``options`` [{value, count, pct}] most frequent first (at most 20; the rest in
      ``other``), pct of the answers.
    * checkbox: the same per option; pct of the responses that answered (they add up to more
      than 100, as a respondent may tick several).
    * numeric: ``mean``, ``median``, ``min``, ``max`` and ``distribution`` [{value, count, pct}]
      by value (or in 5 equal ranges past 20 distinct values) over the answers that are
      numbers; ``not_numeric_rows`` lists the rows whose answer is not one.
    * nps: ``nps`` (% promoters 9-10 minus % detractors 0-6), ``promoters``, ``passives`` and
      ``detractors`` ({count, pct}), ``mean``, and the ``distribution`` of 0..10.
    * text: the first `max_text_answers` answers in sheet order, each on one line and cut to
      300 characters, in ``listed``; ``more`` says how many were not listed.

    Args:
        kind: one of `KINDS`.
        answers: the non-empty answers of the counted responses (index: sheet rows).
        max_text_answers: how many free-text answers to list.
    """
    total = len(answers)
    if kind == "choice":
        return _options(kind, answers, total)
    if kind == "checkbox":
        return _options(kind, split_options(answers), total)
    if kind in ("numeric", "nps"):
        numbers = to_numbers(answers)
        valid = numbers.dropna()
        figures = {
            "mean": _number(valid.mean()) if len(valid) else None,
            "median": _number(valid.median()) if len(valid) else None,
        }
        if kind == "nps":
            promoters = int((valid >= PROMOTER_MIN).sum())
            detractors = int((valid <= DETRACTOR_MAX).sum())
            passives = len(valid) - promoters - detractors
            share = _pct(promoters - detractors, len(valid))
            counts = valid.value_counts()
            return {
                "kind": kind,
                "answers": len(valid),
                "nps": share,
                **{
                    name: {"count": count, "pct": _pct(count, len(valid))}
                    for name, count in (
                        ("promoters", promoters),
                        ("passives", passives),
                        ("detractors", detractors),
                    )
                },
                "mean": figures["mean"],
                "distribution": [
                    {
                        "value": str(score),
                        "count": int(counts.get(float(score), 0)),
                        "pct": _pct(int(counts.get(float(score), 0)), len(valid)),
                    }
                    for score in range(11)
                ],
            }
        return {
            "kind": kind,
            "answers": len(valid),
            **figures,
            "min": _number(valid.min()) if len(valid) else None,
            "max": _number(valid.max()) if len(valid) else None,
            "distribution": _distribution(valid) if len(valid) else [],
            "not_numeric_rows": [int(row) for row in numbers.index[numbers.isna().to_numpy()]],
        }
    listed = [shorten(answer) for answer in answers.iloc[: max(max_text_answers, 0)]]
    return {"kind": "text", "answers": total, "listed": listed, "more": total - len(listed)}


def build_digest(
    rows: pd.DataFrame, times: pd.Series, layout: FormLayout, *, max_text_answers: int
) -> Digest:
    """Digest a window: which rows count, each question's figures, the rows to look at.

    A row whose timestamp cannot be read, or that lacks a required answer, is left out of the
    figures and listed under "needs attention" with its problems; it is consumed all the same
    (the watermark passes it), so it is reported once, never silently dropped or re-listed.

    Args:
        rows: the window's rows (`flows.shared.forms.ResponseWindow.rows`).
        times: their parsed timestamps (NaT where unreadable).
        layout: the sheet's questions (`plan_layout`).
        max_text_answers: free-text answers listed per question.
    """
    unreadable = times.isna().to_numpy()
    missing = {
        column: (rows[column].astype(str).str.strip() == "").to_numpy()
        for column in layout.required
    }
    excluded = unreadable.copy()
    for blank in missing.values():
        excluded |= blank
    counted = rows[~excluded]
    questions: dict[str, dict[str, Any]] = {}
    flagged: dict[int, list[dict[str, Any]]] = {}
    for column, kind in layout.questions.items():
        summary = summarize_question(
            kind, answers_of(counted[column]), max_text_answers=max_text_answers
        )
        if kind == "numeric":
            not_numeric = summary.pop("not_numeric_rows")
            summary["not_numeric"] = len(not_numeric)
            for row in not_numeric:
                flagged.setdefault(row, []).append({"kind": "not_a_number", "question": column})
        questions[column] = summary
    attention: list[dict[str, Any]] = []
    positions = {int(row): position for position, row in enumerate(rows.index)}
    cells = rows[layout.timestamp_column].astype(str).to_numpy()
    for row in sorted({*(int(r) for r in rows.index[excluded]), *flagged}):
        position = positions[row]
        problems: list[dict[str, Any]] = []
        if unreadable[position]:
            cell = shorten(cells[position], CELL_MAX_CHARS)
            problems.append({"kind": "unreadable_timestamp", "cell": cell})
        problems.extend(
            {"kind": "missing_answer", "question": column}
            for column, blank in missing.items()
            if blank[position]
        )
        problems.extend(flagged.get(row, []))
        attention.append({"row": row, "counted": not excluded[position], "problems": problems})
    return Digest(
        rows=len(rows), responses=len(counted), questions=questions, needs_attention=attention
    )

"""split_json: a table as pandas' "split" JSON layout, the same values as pandas' own writer."""

from __future__ import annotations

import datetime
import json

import numpy as np
import pandas as pd
import pytest

from flows.shared.snapshots import split_json


def ours(frame: pd.DataFrame) -> dict:
    """split_json's value as JSON reads it back (its rows are tuples: JSON arrays)."""
    return json.loads(json.dumps(split_json(frame)))


def pandas_split(frame: pd.DataFrame) -> dict:
    text = frame.to_json(orient="split", index=False, date_format="iso", date_unit="us")
    return json.loads(text)


def every_kind_of_column() -> pd.DataFrame:
    arrow_text = pd.StringDtype("pyarrow", na_value=np.nan)
    return pd.DataFrame(
        {
            "utc": pd.to_datetime(
                ["2026-01-01 00:00:00.123456", None, "2026-03-01 09:30:00"],
                utc=True,
                format="ISO8601",
            ),
            "naive": pd.to_datetime(["2026-01-01 00:00:00", None, "2026-01-02 03:04:05"]),
            "seoul": pd.to_datetime(["2026-01-01 09:00"] * 3).tz_localize("Asia/Seoul"),
            "infinite": [1.5, np.inf, -np.inf],
            "missing": [np.nan, -0.0, 3.25],
            "float32": pd.Series([1.0, 2.5, None], dtype="float32"),
            "int": [1, 2, 3],
            "bool": [True, False, True],
            "arrow text": pd.Series(["x", None, "재고 부족"], dtype=arrow_text),
            "object text": pd.Series(["한글", np.nan, None], dtype=object),
            "mixed": pd.Series(["a", 1, None], dtype=object),
            "nullable int": pd.Series([1, None, 3], dtype="Int64"),
            "dates": [datetime.date(2026, 1, 1)] * 3,
            7: [1, 2, 3],
        }
    )


def test_every_kind_of_column_reads_back_as_pandas_writes_it() -> None:
    frame = every_kind_of_column()

    assert ours(frame) == pandas_split(frame)
    assert ours(frame)["data"][1][:3] == [None, None, "2026-01-01T00:00:00.000000Z"]


@pytest.mark.parametrize("rows", [slice(0, 0), slice(0, 1)])
def test_no_rows_and_one_row(rows: slice) -> None:
    frame = every_kind_of_column().iloc[rows]

    assert ours(frame) == pandas_split(frame)


def test_rows_without_columns() -> None:
    frame = pd.DataFrame(index=range(3))

    assert ours(frame) == pandas_split(frame) == {"columns": [], "data": [[], [], []]}


def test_a_float_keeps_every_digit_where_pandas_rounds_it_to_ten_decimals() -> None:
    frame = pd.DataFrame({"on_hand": [87.15079970276484]})

    assert ours(frame)["data"] == [[87.15079970276484]]
    assert pandas_split(frame)["data"] == [[87.1507997028]]


def test_a_snapshot_is_json_that_pandas_reads_back_into_the_same_table() -> None:
    frame = every_kind_of_column().drop(columns=["mixed", "dates", "seoul", 7])

    back = pd.DataFrame(**ours(frame))

    assert back["arrow text"].tolist()[::2] == ["x", "재고 부족"]
    assert pd.to_datetime(back["utc"], utc=True, format="ISO8601")[0] == frame["utc"][0]
    assert back["int"].tolist() == [1, 2, 3]

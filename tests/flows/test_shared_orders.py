"""The orders table's Arrow path: text read by Arrow is cleaned exactly as pandas cleans it."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from flows.shared.orders import ORDER_COLUMNS, normalize_orders
from moltbot.errors import InputError
from tasks.sources import read_table

SEOUL = "Asia/Seoul"
# Every character Python's str.strip and Arrow's utf8_trim_whitespace take for whitespace.
SPACES = [chr(code) for code in range(0x3001) if chr(code).isspace()]
# Characters that share a first byte with some of them (0xC2, 0xE1-0xE3) but are not spaces,
# and Hangul (0xEA-0xED), which must come through untouched.
LOOKALIKES = ["©", "…", "ᄀ", "、", "가", "힣", "é"]


def raw_orders(rows: int, **overrides: list) -> dict[str, list]:
    data = {
        "order_id": [f"ORD-{n}" for n in range(rows)],
        "ordered_at": ["2026-11-23 15:00:00"] * rows,
        "product": ["무선 이어폰"] * rows,
        "channel": ["web"] * rows,
        "region": ["서울"] * rows,
        "quantity": ["1"] * rows,
        "unit_price": ["1000"] * rows,
        "status": ["completed"] * rows,
    }
    data.update(overrides)
    return data


def as_objects(data: dict[str, list]) -> pd.DataFrame:
    """Python objects, as a sheet or a database gives them: the pandas way."""
    return pd.DataFrame({name: pd.Series(values, dtype=object) for name, values in data.items()})


def as_arrow(data: dict[str, list], chunks: int = 1) -> pd.DataFrame:
    """Arrow strings in `chunks` pieces, as the CSV reader gives them: the Arrow way."""
    columns = {}
    for name, values in data.items():
        size = max(1, -(-len(values) // chunks))
        pieces = [values[start : start + size] for start in range(0, len(values), size)]
        array = pa.chunked_array(pieces or [[]], type=pa.large_string())
        columns[name] = pd.Series(pd.StringDtype("pyarrow").__from_arrow__(array))
    return pd.DataFrame(columns)


def normalized(raw: pd.DataFrame) -> pd.DataFrame:
    return normalize_orders(raw, source_label="orders.csv", timezone=SEOUL)


def assert_same_orders(data: dict[str, list], chunks: int = 1) -> pd.DataFrame:
    by_pandas = normalized(as_objects(data))
    by_arrow = normalized(as_arrow(data, chunks))
    for name in by_pandas.columns:
        assert by_arrow[name].tolist() == by_pandas[name].tolist(), name
    return by_arrow


@pytest.mark.parametrize("form", ["{}상품", "상품{}", "x{}", "{}", "가{}{}", "a{}b"])
def test_every_kind_of_whitespace_is_stripped_as_pandas_strips_it(form: str) -> None:
    values = [form.format(space, space) for space in SPACES]
    # One value a block: each is judged on its own bytes.
    out = assert_same_orders(raw_orders(len(values), region=values), chunks=len(values))
    assert out["region"].tolist() == [value.strip() or "unknown" for value in values]


@pytest.mark.parametrize("chunks", [1, 2])
def test_characters_that_only_look_like_spaces_are_kept(chunks: int) -> None:
    values = [f"{c}{c}" for c in LOOKALIKES] + [f"{c} {c}" for c in LOOKALIKES] + list(LOOKALIKES)
    out = assert_same_orders(raw_orders(len(values), product=values, region=values), chunks)
    assert out["product"].tolist() == values


def test_one_spaced_value_in_one_block_of_many_is_found() -> None:
    products = ["커피"] * 9 + [" 커피"]
    regions = [""] + ["부산"] * 9
    out = assert_same_orders(raw_orders(10, product=products, region=regions), chunks=5)
    assert out["product"].tolist() == ["커피"] * 10
    assert out["region"].tolist() == ["unknown"] + ["부산"] * 9


def test_statuses_are_judged_by_their_spellings() -> None:
    statuses = ["completed", " Cancelled", "REFUNDED ", "", "\u3000", "취소"] * 3
    out = assert_same_orders(raw_orders(len(statuses), status=statuses), chunks=2)
    assert out["status"].tolist()[:6] == [
        "completed",
        "cancelled",
        "refunded",
        "completed",
        "completed",
        "취소",
    ]


def test_clean_statuses_are_kept_as_they_are() -> None:
    out = assert_same_orders(raw_orders(4, status=["completed", "cancelled", "refunded", "x"]))
    assert out["status"].tolist() == ["completed", "cancelled", "refunded", "x"]


@pytest.mark.parametrize("chunks", [1, 2])
def test_blank_required_text_names_the_rows_either_way(chunks: int) -> None:
    data = raw_orders(4, order_id=["1", "\u00a0", "3", "  "])
    for raw in (as_objects(data), as_arrow(data, chunks)):
        with pytest.raises(InputError) as caught:
            normalized(raw)
        assert str(caught.value) == (
            "orders.csv: column 'order_id' has 2 missing values (data rows 2, 4)"
        )


def test_numbers_with_spaces_or_separators_fall_back_to_the_forgiving_parser() -> None:
    out = assert_same_orders(raw_orders(3, quantity=["1", " 2 ", "1,000"], unit_price=["-0"] * 3))
    assert out["quantity"].tolist() == [1.0, 2.0, 1000.0]
    assert [str(price) for price in out["unit_price"]] == ["0.0"] * 3


def test_an_empty_table_keeps_its_columns() -> None:
    out = assert_same_orders(raw_orders(0))
    assert list(out.columns) == [*ORDER_COLUMNS, "local_date", "amount"]


def test_local_dates_are_dates_and_korean_text_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "주문.csv"
    path.write_text(
        "order_id,ordered_at,product,channel,region,quantity,unit_price,status\n"
        "A-1,2026-11-23T15:30:00Z, 무릎 담요 ,앱,서울,2,19900,완료\n"
        "A-2,2026-11-23T14:59:59Z,텀블러,web,부산,1,12000,completed\n",
        encoding="utf-8",
    )
    out = normalized(read_table(str(path)))
    assert out["product"].tolist() == ["무릎 담요", "텀블러"]
    assert out["channel"].tolist() == ["앱", "web"]
    assert out["status"].tolist() == ["완료", "completed"]
    assert out["local_date"].tolist() == [date(2026, 11, 24), date(2026, 11, 23)]
    assert max(out["local_date"]) == date(2026, 11, 24)
    assert out["amount"].tolist() == [39800.0, 12000.0]

"""Reading whole tables from CSV, Parquet and SQL sources, and refusing unusable ones."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy

from moltbot.errors import InputError
from tasks.sources import has_inline_password, read_table, source_label

TABLE = pd.DataFrame({"product": ["무선 이어폰", "Tea"], "quantity": ["2", "1"]})


def test_csv_is_read_as_text_and_a_byte_order_mark_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "주문.csv"
    path.write_bytes("\ufeffproduct,quantity\n무선 이어폰,2\nTea,1\n".encode())

    frame = read_table(str(path))

    assert list(frame.columns) == ["product", "quantity"]
    assert frame.to_dict("list") == {"product": ["무선 이어폰", "Tea"], "quantity": ["2", "1"]}


def test_parquet_keeps_its_types(tmp_path: Path) -> None:
    path = tmp_path / "orders.parquet"
    TABLE.assign(quantity=[2, 1]).to_parquet(path)

    frame = read_table(str(path))

    assert frame["quantity"].tolist() == [2, 1]
    assert frame["product"].tolist() == ["무선 이어폰", "Tea"]


def test_sql_query_on_a_database_url(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    with sqlalchemy.create_engine(url).begin() as connection:
        TABLE.to_sql("sales", connection, index=False)

    frame = read_table(url, "SELECT product FROM sales ORDER BY product")

    assert frame["product"].tolist() == ["Tea", "무선 이어폰"]


def test_header_only_csv_is_an_empty_table_and_an_empty_file_has_no_columns(tmp_path) -> None:
    header_only = tmp_path / "header.csv"
    header_only.write_text("product,quantity\n")
    empty = tmp_path / "empty.csv"
    empty.write_text("")

    assert list(read_table(str(header_only)).columns) == ["product", "quantity"]
    assert len(read_table(str(header_only))) == 0
    assert read_table(str(empty)).columns.empty


@pytest.mark.parametrize(
    ("setup", "source", "query", "message"),
    [
        (None, "missing.csv", None, "missing.csv: file not found"),
        ("notes.xlsx", "notes.xlsx", None, "notes.xlsx: unsupported file type '.xlsx'"),
        ("bad.csv", "bad.csv", None, "bad.csv: not a readable CSV file"),
        ("bad.parquet", "bad.parquet", None, "bad.parquet: unreadable"),
        ("x.csv", "x.csv", "SELECT 1", "x.csv: 'query' only applies to a database URL"),
        (None, "sqlite:///{tmp}/s.db", None, "a database source needs a 'query'"),
        (None, "sqlite:///{tmp}/s.db", "SELECT * FROM nope", "query failed (OperationalError)"),
        (None, "nosuchdriver://host/db", "SELECT 1", "unusable database URL"),
    ],
)
def test_unusable_sources_fail_with_one_clear_line(
    tmp_path: Path, setup: str | None, source: str, query: str | None, message: str
) -> None:
    if setup:
        # Bytes that are neither UTF-8 text nor Parquet.
        (tmp_path / setup).write_bytes(b"\xff\xfe\x00\x81garbage" if "bad" in setup else b"a\n1\n")
    source = source.format(tmp=tmp_path)
    if "://" not in source:
        source = str(tmp_path / source)

    with pytest.raises(InputError) as raised:
        read_table(source, query)

    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_labels_never_show_a_password() -> None:
    url = "postgresql://shop:hunter2@db.example.com/sales"

    assert has_inline_password(url)
    assert not has_inline_password("sqlite:///shop.db")
    assert not has_inline_password("/data/orders.csv")
    assert source_label(url) == "postgresql://shop:***@db.example.com/sales"
    assert source_label("/data/주문.csv") == "주문.csv"

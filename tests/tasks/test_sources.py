"""Reading whole tables from CSV, Parquet and SQL sources, and refusing unusable ones."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
import sqlalchemy

from moltbot.errors import InputError
from tasks import sources
from tasks.sources import _read_plain_csv, has_inline_password, read_table, source_label

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


# Files Arrow's reader takes, and files it leaves to pandas because the two would read them
# differently. Either way the table is the one pandas makes of the text.
READ_BY_ARROW = {
    "quoted comma, quote and line break": 'product,note\n"Tea, green","say ""hi""\nthen"\n',
    "CRLF and blank lines": "product,quantity\r\nTea,1\r\n\r\nMug,2\r\n",
    "BOM, blanks, no final newline": "\ufeffproduct,quantity\n,\n 무선 이어폰 ,2",
    "words pandas could take for NA": "product,quantity\nNA,null\nNaN,None\n",
    "header only": "product,quantity\n",
}
READ_BY_PANDAS = {
    "repeated names": "a,a\n1,2\n",
    "blank name": "a,,c\n1,2,3\n",
    "one column with a whitespace line": "a\n \n1\n",
    "one column ending in a quoted blank": 'a\n1\n""\n',
    "lone CR line end": "a,b\n\r,1\n",
    "second byte-order mark": "\ufeff\ufeffa,b\n1,2\n",
    "short row": "a,b,c\n1,2\n",
}


@pytest.mark.parametrize(
    ("text", "by_arrow"),
    [
        *((text, True) for text in READ_BY_ARROW.values()),
        *((text, False) for text in READ_BY_PANDAS.values()),
    ],
    ids=[*READ_BY_ARROW, *READ_BY_PANDAS],
)
def test_a_csv_file_reads_as_pandas_reads_its_text(tmp_path: Path, text: str, by_arrow: bool):
    path = tmp_path / "orders.csv"
    path.write_bytes(text.encode())

    frame = read_table(str(path))

    expected = pd.read_csv(
        io.StringIO(text.removeprefix("\ufeff")), dtype=str, keep_default_na=False
    )
    pd.testing.assert_frame_equal(frame, expected)
    assert (_read_plain_csv(path) is not None) is by_arrow


@pytest.mark.parametrize(
    "text",
    [
        "id,note\r\n" + '1,"a\r\nb ""c"" d\r\ne"\r\n22,"x""\r\n""y"\r\n' * 4,
        "id,note\r\n" + "1,ab\r\n22,cde\r\n" * 4,
    ],
    ids=["quoted CRLF and doubled quotes", "CRLF rows"],
)
def test_values_and_line_ends_across_block_cuts_read_as_pandas_reads_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    # Blocks of 8 bytes put cuts inside CRLFs and doubled quotes (pyarrow 26 loses a byte of a
    # quoted value there) and between rows.
    monkeypatch.setattr(sources, "_CSV_BLOCK_BYTES", 8)
    path = tmp_path / "orders.csv"
    path.write_bytes(text.encode())

    frame = read_table(str(path))

    pd.testing.assert_frame_equal(
        frame, pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    )
    assert len(frame) == 8
    assert _read_plain_csv(path) is not None


@pytest.mark.parametrize("offset", range(8))
def test_a_lone_cr_is_found_at_any_place_in_a_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offset: int
) -> None:
    monkeypatch.setattr(sources, "_CSV_BLOCK_BYTES", 8)
    # Blank lines (skipped by pandas and Arrow alike) move the lone CR through the block.
    text = "id,qty\r\n" + "\n" * offset + "1,2\r3,4\r\n5,6\r\n"
    path = tmp_path / "orders.csv"
    path.write_bytes(text.encode())

    pd.testing.assert_frame_equal(
        read_table(str(path)), pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    )
    assert _read_plain_csv(path) is None


def test_quoted_values_keep_their_commas_quotes_and_line_breaks(tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_bytes(READ_BY_ARROW["quoted comma, quote and line break"].encode())

    assert read_table(str(path)).to_dict("list") == {
        "product": ["Tea, green"],
        "note": ['say "hi"\nthen'],
    }


def test_a_quote_left_open_at_the_end_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_text('product,note\nTea,1\nMug,"never closed\n', encoding="utf-8")

    with pytest.raises(InputError) as raised:
        read_table(str(path))

    assert str(raised.value) == "orders.csv: not a readable CSV file (ParserError)"
    assert raised.value.__context__ is None


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


@pytest.mark.parametrize(("asked", "pool"), [(None, "jemalloc"), ("mimalloc", "mimalloc")])
def test_reading_a_table_leaves_mimalloc_unless_asked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, asked: str | None, pool: str
) -> None:
    if asked:
        monkeypatch.setenv("ARROW_DEFAULT_MEMORY_POOL", asked)
    else:
        monkeypatch.delenv("ARROW_DEFAULT_MEMORY_POOL", raising=False)
    path = tmp_path / "orders.csv"
    path.write_text("product,quantity\nTea,1\n", encoding="utf-8")
    before = pa.default_memory_pool()
    pa.set_memory_pool(pa.mimalloc_memory_pool())
    try:
        read_table(str(path))
        assert pa.default_memory_pool().backend_name == pool
    finally:
        pa.set_memory_pool(before)


def test_labels_never_show_a_password() -> None:
    url = "postgresql://shop:hunter2@db.example.com/sales"

    assert has_inline_password(url)
    assert not has_inline_password("sqlite:///shop.db")
    assert not has_inline_password("/data/orders.csv")
    assert source_label(url) == "postgresql://shop:***@db.example.com/sales"
    assert source_label("/data/주문.csv") == "주문.csv"

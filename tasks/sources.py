"""Reading users' files and tables: strict text decoding, CSV/Parquet, databases (URL + query)."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import BinaryIO

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import sqlalchemy
from prefect import task

from moltbot.errors import InputError
from moltbot.textfiles import decode_strictly, not_valid

SECRET_PREFIX = "secret:"
# Arrow learns the column names from the first rows of a CSV file: a header longer than half of
# this (thousands of columns) is read by pandas instead.
_HEADER_BYTES = 1 << 20
# Arrow parses a CSV file in blocks of this size on all cores (at Arrow's default of 1 MiB,
# handing out blocks cost about half the read time of a 225 MB file); the file is first scanned
# in blocks of the same size.
_CSV_BLOCK_BYTES = 16 << 20


def has_inline_password(value: str) -> bool:
    """True for a URL that carries a password (`scheme://user:password@host`)."""
    if not is_database_url(value):
        return False
    try:
        return bool(sqlalchemy.engine.make_url(value).password)
    except sqlalchemy.exc.ArgumentError:
        return "@" in value.split("://", 1)[1].split("/", 1)[0]


def refuse_inline_password(source: str) -> None:
    """Fail on a URL with a password: flow parameters are stored and shown in the Prefect UI.

    Raises:
        InputError: the URL holds a password (the message says to use a Secret block).
    """
    if has_inline_password(source):
        raise InputError(
            f"{source_label(source)}: the URL holds a password, which would be stored with the "
            "run's parameters; save the URL in a Secret block and pass source=secret:<block name>"
        )


def resolve_source(source: str) -> str:
    """The real source: `secret:NAME` reads the URL from the Prefect `Secret` block NAME.

    Flow parameters are stored and shown in the Prefect UI, so a database URL with a password
    must live in a Secret block, never in a parameter.

    Raises:
        InputError: a URL with an inline password, or a missing Secret block.
    """
    if source.startswith(SECRET_PREFIX):
        from prefect.blocks.system import Secret

        from moltbot.masking import register_secret

        name = source.removeprefix(SECRET_PREFIX)
        try:
            value = str(Secret.load(name).get())
        except ValueError:
            raise InputError(f"no Secret block named {name!r} (save the URL in one)") from None
        register_secret(value)
        return value
    refuse_inline_password(source)
    return source


def is_database_url(source: str) -> bool:
    """True when `source` looks like a SQLAlchemy URL (`sqlite:///x.db`, `postgresql://…`)."""
    return "://" in source


def source_label(source: str) -> str:
    """How errors and logs name a source: the file name, or the URL without its password."""
    if is_database_url(source):
        try:
            return sqlalchemy.engine.make_url(source).render_as_string(hide_password=True)
        except sqlalchemy.exc.ArgumentError:
            return "<unparseable database URL>"
    return Path(source).name


def _prefer_jemalloc() -> None:
    """Make jemalloc Arrow's memory pool for this process, unless ARROW_DEFAULT_MEMORY_POOL says.

    pyarrow's default pool, mimalloc, asks the kernel for transparent huge pages and returns
    memory a second after it is freed. Where faulting a huge page in is slow (on this project's
    2-core VM, milliseconds a page) that made checking and summing 2.6 M order lines 2.5 s
    slower, all of it system time; jemalloc, also built into pyarrow, does not ask for them.
    Tables already read keep the pool they were made with.
    """
    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        return
    if pa.default_memory_pool().backend_name != "mimalloc":
        return
    try:
        pa.set_memory_pool(pa.jemalloc_memory_pool())
    except NotImplementedError:
        # A pyarrow built without jemalloc: the system allocator does not ask for them either.
        pa.set_memory_pool(pa.system_memory_pool())


def read_table(source: str, query: str | None = None) -> pd.DataFrame:
    """Read a whole table: CSV/Parquet by suffix, or a SQL `query` on a SQLAlchemy URL.

    CSV values are read as text so the automation decides how to parse numbers and dates.

    Raises:
        InputError: missing or unreadable file, unknown format, bad URL or failing query.
    """
    _prefer_jemalloc()
    label = source_label(source)
    if is_database_url(source):
        return _read_database(source, query, label)
    if query:
        raise InputError(f"{label}: 'query' only applies to a database URL source")
    path = Path(source)
    if not path.is_file():
        raise InputError(f"{label}: file not found ({path})")
    suffix = path.suffix.lower()
    if suffix in {".csv", ".txt"}:
        return _read_csv(path, label)
    if suffix not in {".parquet", ".pq"}:
        raise InputError(f"{label}: unsupported file type {suffix!r} (use .csv or .parquet)")
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        message = f"{label}: unreadable ({type(exc).__name__})"
    # Raised outside the except block so that no library error, which may quote the file's
    # content, travels with it (see read_text_file).
    raise InputError(message)


def _read_csv(path: Path, label: str) -> pd.DataFrame:
    frame = _read_plain_csv(path)
    return frame if frame is not None else _read_csv_with_pandas(path, label)


def _read_plain_csv(path: Path) -> pd.DataFrame | None:
    """A well-formed UTF-8 CSV file as text columns, read by Arrow; None leaves it to pandas.

    Arrow's reader is multi-threaded and never builds a Python string per value: on 2.6 M order
    lines it reads in about a tenth of the time pandas takes. On a well-formed file both give the
    same table; on malformed ones they differ, so whatever could read differently (blank or
    duplicate header names, a one-column file, a lone CR line end, a quote left open at the end,
    bytes that are not UTF-8, rows of the wrong width) is declined here and read by pandas, which
    stays the reference and names the problem.
    """
    data = None
    try:
        with path.open("rb") as handle:
            names = _plain_header(handle.read(_HEADER_BYTES))
            if names is None:
                return None
            handle.seek(0)
            quoted, lone_cr = _quotes_and_lone_cr(handle)
            # pandas ends a line at a lone CR differently from Arrow (it can drop a delimiter).
            if lone_cr:
                return None
            if quoted:
                # A row of empty values after the file: Arrow reads a quote left open at the
                # end of the file as a value running to the end, where pandas refuses the file;
                # such a quote would swallow this row, so the last row read must be exactly it.
                end_row = b"\n" + b"," * (len(names) - 1) + b"\n"
                size = os.fstat(handle.fileno()).st_size
                data = bytearray(size + len(end_row))
                handle.seek(0)
                if handle.readinto(memoryview(data)[:size]) != size:
                    return None
                data[size:] = end_row
    except OSError:
        return None
    try:
        table = pa_csv.read_csv(
            # Without a quote Arrow reads the file itself, in blocks, and the copy is not needed.
            pa.OSFile(str(path)) if data is None else pa.py_buffer(data),
            # Arrow cuts a file with quotes wrongly where a cut falls inside a quoted value (at a
            # CRLF or a doubled quote the value loses a byte, pyarrow 26), so that one is parsed
            # in one block; without quotes, any line end is a row end and blocks are safe.
            read_options=pa_csv.ReadOptions(
                block_size=_CSV_BLOCK_BYTES if data is None else len(data)
            ),
            parse_options=pa_csv.ParseOptions(newlines_in_values=data is not None),
            convert_options=pa_csv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.large_string()),
                strings_can_be_null=False,
                check_utf8=True,
            ),
        )
    except (pa.ArrowException, OSError, OverflowError, UnicodeDecodeError):
        # OverflowError: a file with quotes of 2 GiB or more, beyond one block.
        return None
    # Every column as text, named as the header probe read it (else Arrow typed one by itself).
    if table.column_names != names or set(table.schema.types) != {pa.large_string()}:
        return None
    if data is None:
        return table.to_pandas()
    last = table.num_rows - 1
    if last < 0 or any(column[last].as_py() != "" for column in table.columns):
        return None
    return table.slice(0, last).to_pandas()


def _quotes_and_lone_cr(handle: BinaryIO) -> tuple[bool, bool]:
    """Whether the rest of the file holds a quote, and a CR that does not start a CRLF."""
    block = bytearray(_CSV_BLOCK_BYTES)
    quoted = False
    ends_with_cr = False
    while size := handle.readinto(block):
        if ends_with_cr and block[0] != ord("\n"):
            return quoted, True
        # A CR at the end of the block is judged by the first byte of the next one.
        ends_with_cr = block[size - 1] == ord("\r")
        # `find` runs at memory speed, `count` several times slower: most files have no CR.
        if block.find(b"\r", 0, size) >= 0:
            paired = block.count(b"\r\n", 0, size) + ends_with_cr
            if block.count(b"\r", 0, size) != paired:
                return quoted, True
        quoted = quoted or block.find(b'"', 0, size) >= 0
    return quoted, ends_with_cr


def _plain_header(head: bytes) -> list[str] | None:
    """The column names in the file's first bytes if pandas would keep them as named, else None."""
    try:
        # Arrow reads only the first block, which ends at a whole row: the row that `head` cuts
        # in two lies beyond it.
        with pa_csv.open_csv(
            pa.py_buffer(head),
            read_options=pa_csv.ReadOptions(use_threads=False, block_size=_HEADER_BYTES // 2),
            parse_options=pa_csv.ParseOptions(newlines_in_values=True),
        ) as reader:
            names = reader.schema.names
    except (pa.ArrowException, UnicodeDecodeError):
        return None
    # pandas renames blank and repeated names ("Unnamed: 2", "a.1") and drops a second byte-order
    # mark; in a one-column file it skips whitespace-only lines, and the row of empty values that
    # closes the file would be a blank line: those files go to pandas.
    if len(names) < 2 or len(set(names)) != len(names) or "" in names:
        return None
    return None if names[0].startswith("\ufeff") else names


def _read_csv_with_pandas(path: Path, label: str) -> pd.DataFrame:
    try:
        data = path.read_bytes()
    except OSError as exc:
        message = f"{label}: unreadable ({type(exc).__name__})"
    else:
        text, offset = decode_strictly(data, "utf-8")
        if text is None:
            raise InputError(f"{label}: not a readable CSV file: {not_valid('utf-8', offset)}")
        try:
            return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
        except pd.errors.EmptyDataError:
            return pd.DataFrame()
        except (pd.errors.ParserError, ValueError) as exc:
            message = f"{label}: not a readable CSV file ({type(exc).__name__})"
    raise InputError(message)


def _read_database(url: str, query: str | None, label: str) -> pd.DataFrame:
    if not query:
        raise InputError(f"{label}: a database source needs a 'query'")
    try:
        engine = sqlalchemy.create_engine(url)
    except (sqlalchemy.exc.ArgumentError, ImportError) as exc:
        raise InputError(f"{label}: unusable database URL ({type(exc).__name__})") from None
    try:
        with engine.connect() as connection:
            return pd.read_sql_query(sqlalchemy.text(query), connection)
    except (sqlalchemy.exc.SQLAlchemyError, pd.errors.DatabaseError) as exc:
        # The driver's message may quote the query or the URL: keep only the class name (pandas
        # wraps the driver's error, which it keeps as the cause).
        cause = exc.__cause__ if isinstance(exc, pd.errors.DatabaseError) and exc.__cause__ else exc
        raise InputError(f"{label}: query failed ({type(cause).__name__})") from None
    finally:
        engine.dispose()


@task(name="load-table", retries=0)
def load_table(source: str, query: str | None = None) -> pd.DataFrame:
    """Load a whole table in one read (see `read_table`).

    Args:
        source: path of a CSV/Parquet file, a SQLAlchemy URL without a password, or
            `secret:NAME` for a URL kept in the Prefect Secret block NAME.
        query: SQL to run when `source` is a database URL.
    """
    return read_table(resolve_source(source), query)

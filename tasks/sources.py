"""Tasks that load whole tables from files (CSV, Parquet) or databases (SQLAlchemy URL + query)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import sqlalchemy
from prefect import task

from moltbot.errors import InputError


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


def read_table(source: str, query: str | None = None) -> pd.DataFrame:
    """Read a whole table: CSV/Parquet by suffix, or a SQL `query` on a SQLAlchemy URL.

    CSV values are read as text so the automation decides how to parse numbers and dates.

    Raises:
        InputError: missing or unreadable file, unknown format, bad URL or failing query.
    """
    label = source_label(source)
    if is_database_url(source):
        return _read_database(source, query, label)
    if query:
        raise InputError(f"{label}: 'query' only applies to a database URL source")
    path = Path(source)
    if not path.is_file():
        raise InputError(f"{label}: file not found ({path})")
    suffix = path.suffix.lower()
    try:
        if suffix in {".csv", ".txt"}:
            # utf-8-sig: spreadsheet exports often start with a byte-order mark.
            return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
        if suffix in {".parquet", ".pq"}:
            return pd.read_parquet(path)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except (UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise InputError(f"{label}: not a readable CSV file ({type(exc).__name__})") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{label}: unreadable ({type(exc).__name__})") from None
    raise InputError(f"{label}: unsupported file type {suffix!r} (use .csv or .parquet)")


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
    except sqlalchemy.exc.SQLAlchemyError as exc:
        # The driver's message may quote the query or the URL: keep only the class name.
        raise InputError(f"{label}: query failed ({type(exc).__name__})") from None
    finally:
        engine.dispose()


@task(name="load-table", retries=0)
def load_table(source: str, query: str | None = None) -> pd.DataFrame:
    """Load a whole table in one read (see `read_table`).

    Args:
        source: path of a CSV/Parquet file, or a SQLAlchemy URL.
        query: SQL to run when `source` is a database URL.
    """
    return read_table(source, query)

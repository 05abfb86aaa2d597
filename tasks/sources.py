"""Reading users' files and tables: strict text decoding, CSV/Parquet, databases (URL + query)."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import sqlalchemy
from prefect import task

from moltbot.errors import InputError
from moltbot.textfiles import decode_strictly, not_valid

SECRET_PREFIX = "secret:"


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

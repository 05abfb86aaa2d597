"""Tasks that count error lines per window: log files read incrementally, or a SQL table."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import sqlalchemy
from prefect import task
from prefect.cache_policies import NO_CACHE

from moltbot.errors import InputError
from moltbot.logscan import (
    DEFAULT_LEVELS,
    LogFormat,
    ScanStats,
    Tally,
    scan_files,
)
from moltbot.state.ledger import Ledger
from moltbot.state.log_offsets import LogCountStore, SignatureCount, merge_signatures
from tasks.sources import refuse_inline_password, resolve_source, source_label

SIGNATURES_KEPT_DAYS = 2
"""Signatures are only shown for recent windows; counts are kept for the baseline."""
TABLE_SIGNATURE_ROWS = 2000
"""Distinct messages a SQL source returns per count (most frequent first)."""

_SOURCE_KEYS = {
    "paths", "format", "levels", "level_field", "timestamp_field", "message_field", "pattern",
    "timestamp_format", "timezone", "url", "table", "timestamp_column", "level_column",
    "message_column",
}  # fmt: skip
_FILE_ONLY = {"paths", "format", "level_field", "timestamp_field", "message_field", "pattern"}
_FILE_ONLY |= {"timestamp_format", "timezone"}
_TABLE_ONLY = {"url", "table", "timestamp_column", "level_column", "message_column"}
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*(?:\.[A-Za-z_][A-Za-z0-9_$]*)?")


@dataclass(frozen=True)
class LogSource:
    """One named source of error lines: log files, or a table.

    Attributes:
        name: the name given in the `sources` parameter (part of every key).
        kind: `files` or `table`.
        patterns: glob patterns of the files.
        log_format: how a file's lines are read.
        url: the table's SQLAlchemy URL, or `secret:NAME`.
        table: the table (optionally `schema.table`).
        timestamp_column: the table's time column.
        level_column: the table's level column.
        message_column: the table's message column.
        levels: the error levels (upper-case).
    """

    name: str
    kind: Literal["files", "table"]
    patterns: tuple[str, ...] = ()
    log_format: LogFormat | None = None
    url: str | None = None
    table: str | None = None
    timestamp_column: str = "timestamp"
    level_column: str = "level"
    message_column: str = "message"
    levels: tuple[str, ...] = DEFAULT_LEVELS


def _text(config: Mapping[str, Any], key: str, where: str, default: str) -> str:
    value = config.get(key, default)
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{where}.{key} must be non-empty text")
    return value.strip()


def _levels(config: Mapping[str, Any], where: str) -> tuple[str, ...]:
    value = config.get("levels", list(DEFAULT_LEVELS))
    if isinstance(value, str):
        value = [value]
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(level, str | int) and str(level).strip() for level in value)
    ):
        raise InputError(f"{where}.levels must be a non-empty list of level names")
    return tuple(dict.fromkeys(str(level).strip().upper() for level in value))


def parse_sources(sources: Any, *, timezone: str) -> list[LogSource]:
    """The `sources` parameter as `LogSource`s, checked.

    `sources` maps a name to a table: files (`paths`: a glob or a list of globs; `format`:
    `json` (default) or `regex`; `levels`; for JSON `level_field`, `timestamp_field`,
    `message_field`; for regex a `pattern` with a named group `level` and optional
    `timestamp` and `message`; `timestamp_format` (strptime); `timezone` of times without an
    offset), or a table (`url`: a SQLAlchemy URL without a password or `secret:NAME`;
    `table`; `timestamp_column`, `level_column`, `message_column`; `levels`).

    Raises:
        InputError: one line naming the source and key at fault, never the value.
    """
    if not isinstance(sources, Mapping) or not sources:
        raise InputError("sources must map source names to their settings (paths or url)")
    parsed = []
    for name, config in sources.items():
        where = f"sources[{name!r}]"
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise InputError("sources: each source needs a name of 1 to 200 characters")
        if not isinstance(config, Mapping):
            raise InputError(f"{where} must be a table of settings (paths or url)")
        unknown = sorted(set(config) - _SOURCE_KEYS)
        if unknown:
            raise InputError(f"{where}: unknown key {unknown[0]!r}")
        levels = _levels(config, where)
        if ("paths" in config) == ("url" in config):
            raise InputError(f"{where} needs either paths (log files) or url (a table)")
        if "url" in config:
            parsed.append(_table_source(name, config, where, levels))
        else:
            parsed.append(_file_source(name, config, where, levels, timezone))
    return parsed


def _table_source(
    name: str, config: Mapping[str, Any], where: str, levels: tuple[str, ...]
) -> LogSource:
    misplaced = sorted(set(config) & (_FILE_ONLY - {"timezone"}))
    if misplaced:
        raise InputError(f"{where}.{misplaced[0]} applies to log files, not to a table")
    url = _text(config, "url", where, "")
    if not (url.startswith("secret:") or "://" in url):
        raise InputError(f"{where}.url must be a database URL or secret:<block name>")
    refuse_inline_password(url)
    columns = {}
    for key, default in (
        ("table", ""),
        ("timestamp_column", "timestamp"),
        ("level_column", "level"),
        ("message_column", "message"),
    ):
        value = _text(config, key, where, default)
        if not _IDENTIFIER.fullmatch(value):
            raise InputError(f"{where}.{key} must be a plain SQL name (letters, digits, _)")
        columns[key] = value
    return LogSource(name=name, kind="table", url=url, levels=levels, **columns)


def _file_source(
    name: str, config: Mapping[str, Any], where: str, levels: tuple[str, ...], timezone: str
) -> LogSource:
    misplaced = sorted(set(config) & _TABLE_ONLY)
    if misplaced:
        raise InputError(f"{where}.{misplaced[0]} applies to a table, not to log files")
    paths = config["paths"]
    paths = [paths] if isinstance(paths, str) else paths
    if (
        not isinstance(paths, list)
        or not paths
        or not all(isinstance(p, str) and p.strip() for p in paths)
    ):
        raise InputError(f"{where}.paths must be a glob pattern or a list of them")
    kind = config.get("format", "json")
    if kind not in ("json", "regex"):
        raise InputError(f"{where}.format must be json or regex")
    zone_name = _text(config, "timezone", where, timezone)
    try:
        zone = ZoneInfo(zone_name)
    except (ValueError, KeyError, OSError):
        raise InputError(f"{where}.timezone is not a known IANA timezone") from None
    timestamp_format = config.get("timestamp_format")
    if timestamp_format is not None and not (
        isinstance(timestamp_format, str) and "%" in timestamp_format
    ):
        raise InputError(f"{where}.timestamp_format must be a strptime format such as %Y-%m-%d")
    pattern = None
    if kind == "regex":
        if any(key in config for key in ("level_field", "timestamp_field", "message_field")):
            raise InputError(f"{where}: the *_field keys apply to format json, not regex")
        text = _text(config, "pattern", where, "")
        try:
            pattern = re.compile(text)
        except (re.error, RecursionError):
            raise InputError(f"{where}.pattern is not a valid regular expression") from None
        if "level" not in pattern.groupindex:
            raise InputError(f"{where}.pattern needs a named group (?P<level>...)")
    elif "pattern" in config:
        raise InputError(f"{where}.pattern applies to format regex, not json")
    log_format = LogFormat(
        kind=kind,
        levels=levels,
        level_field=_text(config, "level_field", where, "level"),
        timestamp_field=_text(config, "timestamp_field", where, "timestamp"),
        message_field=_text(config, "message_field", where, "message"),
        pattern=pattern,
        timestamp_format=timestamp_format,
        timezone=zone,
    )
    return LogSource(
        name=name,
        kind="files",
        patterns=tuple(p.strip() for p in paths),
        log_format=log_format,
        levels=levels,
    )


# --------------------------------------------------------------------------- counting


@dataclass
class SourceCount:
    """What one count of a source found, and whether it is stored.

    Attributes:
        name: the source.
        tally: the new error lines per window and signature (for a table: the windows from
            `recount_from` on, recounted whole).
        stats: the scan's figures (files, bytes, lines, errors, bad lines).
        committed: True when the offsets and counts are stored (False in a dry run).
        recount_from: a table's first recounted window (epoch seconds), whose stored counts
            the tally replaces; None for files (their tally adds to the stored counts).
        matched_nothing: glob patterns that matched no file (a warning, not a failure).
    """

    name: str
    tally: Tally
    stats: ScanStats = field(default_factory=ScanStats)
    committed: bool = False
    recount_from: int | None = None
    matched_nothing: list[str] = field(default_factory=list)


def window_floor(moment: datetime, window_seconds: int) -> datetime:
    """The start of the window holding `moment` (windows are aligned to the epoch, in UTC)."""
    epoch = int(moment.timestamp())
    return datetime.fromtimestamp(epoch - epoch % window_seconds, UTC)


@task(name="count-log-errors", cache_policy=NO_CACHE)
def count_log_errors(
    automation: str,
    source: LogSource,
    *,
    window_minutes: int,
    now: datetime,
    keep_days: int,
    commit: bool = True,
) -> SourceCount:
    """Count a source's new error lines per window and store them with the new offsets.

    Files are read from where the last count stopped (see `moltbot.logscan.scan_files`); a
    table's windows are counted by the database (`GROUP BY` window), from the last partial
    window on. The new offsets and the counts they produced are committed in one transaction,
    so a crash never counts a line twice or loses one.

    Args:
        automation: whose offsets and counts.
        source: the source.
        window_minutes: the counting window.
        now: the count's time (lines without a readable time count in its window).
        keep_days: counts older than this many days are deleted.
        commit: False (a dry run) counts without storing anything.

    Raises:
        InputError: an unusable table source (URL, missing table or column).
        OffsetsMoved: another run counted the same source at the same time.
    """
    window_seconds = window_minutes * 60
    with Ledger.from_settings() as ledger:
        store = LogCountStore(ledger, automation)
        keep = {
            "keep_counts_after": now - timedelta(days=keep_days),
            "keep_signatures_after": now - timedelta(days=SIGNATURES_KEPT_DAYS),
        }
        if source.kind == "files":
            assert source.log_format is not None
            read_from = store.cursors(source.name)
            scan = scan_files(
                source.patterns,
                read_from,
                source.log_format,
                window_seconds=window_seconds,
                now_epoch=now.timestamp(),
            )
            if commit:
                store.commit(
                    source.name,
                    window_minutes=window_minutes,
                    tally=scan.tally,
                    now=now,
                    read_from=read_from,
                    cursors=scan.cursors,
                    **keep,
                )
            return SourceCount(
                name=source.name,
                tally=scan.tally,
                stats=scan.stats,
                committed=commit,
                matched_nothing=scan.matched_nothing,
            )
        stored_from = store.recount_from(source.name)
        start = stored_from or window_floor(now - timedelta(days=keep_days), window_seconds)
        current = window_floor(now, window_seconds)
        tally = count_table_errors(
            source,
            start=start,
            end=now,
            window_seconds=window_seconds,
            signatures_from=max(start, current - timedelta(seconds=window_seconds)),
        )
        if commit:
            store.commit(
                source.name,
                window_minutes=window_minutes,
                tally=tally,
                now=now,
                read_from=None,
                recount_from=current,
                read_recount_from=stored_from,
                **keep,
            )
        return SourceCount(
            name=source.name,
            tally=tally,
            stats=ScanStats(error_lines=tally.total),
            committed=commit,
            recount_from=int(start.timestamp()),
        )


def count_table_errors(
    source: LogSource,
    *,
    start: datetime,
    end: datetime,
    window_seconds: int,
    signatures_from: datetime,
) -> Tally:
    """Error rows per window between `start` and `end`, counted by the database.

    One `GROUP BY` query counts every window; a second returns the most frequent messages per
    window from `signatures_from` on (only recent windows' signatures are shown). SQLite
    tables hold ISO 8601 text times (as SQLAlchemy writes them, read as UTC); PostgreSQL
    `timestamp`/`timestamptz` columns.

    Raises:
        InputError: an unusable URL, another database, or a failing query (the driver's text,
            which may quote the query, is not repeated).
    """
    assert source.url is not None and source.table is not None
    url = resolve_source(source.url)
    label = f"sources[{source.name!r}] ({source_label(url)})"
    try:
        engine = sqlalchemy.create_engine(url)
    except (sqlalchemy.exc.ArgumentError, ImportError) as exc:
        raise InputError(f"{label}: unusable database URL ({type(exc).__name__})") from None
    tally = Tally(window_seconds)
    try:
        sql = _table_sql(engine, source, window_seconds)
        levels = sqlalchemy.bindparam("levels", expanding=True)
        ranges = {"levels": list(source.levels), "end": _bound(engine, end)}
        with engine.connect() as connection:
            for window, errors in connection.execute(
                sqlalchemy.text(sql["counts"]).bindparams(levels),
                {**ranges, "start": _bound(engine, start)},
            ):
                tally.counts[int(window)] = int(errors)
            for window, message, errors in connection.execute(
                sqlalchemy.text(sql["signatures"]).bindparams(levels),
                {**ranges, "start": _bound(engine, signatures_from)},
            ):
                tally.add_signature(int(window), str(message or ""), int(errors))
    except sqlalchemy.exc.SQLAlchemyError as exc:
        raise InputError(f"{label}: query failed ({type(exc).__name__})") from None
    finally:
        engine.dispose()
    return tally


def _bound(engine: sqlalchemy.Engine, moment: datetime) -> Any:
    # SQLite compares epoch seconds (its times are text); PostgreSQL compares the column
    # itself, so an index on it is used.
    return int(moment.timestamp()) if engine.dialect.name == "sqlite" else moment


def _table_sql(engine: sqlalchemy.Engine, source: LogSource, window_seconds: int) -> dict[str, str]:
    """The two queries, with the names quoted for the dialect (they were checked as plain)."""
    quote = engine.dialect.identifier_preparer.quote
    assert source.table is not None
    table = ".".join(quote(part) for part in source.table.split("."))
    stamp, level, message = (
        quote(name)
        for name in (source.timestamp_column, source.level_column, source.message_column)
    )
    dialect = engine.dialect.name
    if dialect == "sqlite":
        bucket = f"(CAST(unixepoch({stamp}) AS INTEGER) / {window_seconds})"
        within = f"unixepoch({stamp}) >= :start AND unixepoch({stamp}) < :end"
    elif dialect == "postgresql":
        bucket = f"CAST(FLOOR(EXTRACT(EPOCH FROM {stamp}) / {window_seconds}) AS BIGINT)"
        within = f"{stamp} >= :start AND {stamp} < :end"
    else:
        raise InputError(
            f"sources[{source.name!r}]: a table source needs SQLite or PostgreSQL, not {dialect}"
        )
    where = f"WHERE {within} AND UPPER(CAST({level} AS TEXT)) IN :levels"
    return {
        "counts": f"SELECT {bucket} AS w, COUNT(*) AS n FROM {table} {where} GROUP BY 1",
        "signatures": (
            f"SELECT {bucket} AS w, {message} AS m, COUNT(*) AS n FROM {table} {where} "
            f"GROUP BY 1, 2 ORDER BY 3 DESC LIMIT {TABLE_SIGNATURE_ROWS}"
        ),
    }


# --------------------------------------------------------------------------- history


@dataclass(frozen=True)
class ErrorHistory:
    """A source's counts per window start (epoch seconds), with this run's count merged in.

    Attributes:
        counts: window start -> error lines.
        observed_since: when watching began (epoch seconds; None: just now).
    """

    counts: dict[int, int]
    observed_since: int | None


def merged_counts(
    stored: Mapping[int, int], pending: SourceCount | None, window_seconds: int
) -> dict[int, int]:
    """Stored counts with an uncommitted count merged in: a file count adds, a table count
    replaces its windows from `recount_from` on."""
    counts = dict(stored)
    if pending is None or pending.committed:
        return counts
    if pending.recount_from is not None:
        counts = {start: n for start, n in counts.items() if start < pending.recount_from}
    for window, errors in pending.tally.counts.items():
        start = window * window_seconds
        counts[start] = counts.get(start, 0) + errors
    return counts


@task(name="read-error-history", cache_policy=NO_CACHE)
def read_error_history(
    automation: str,
    count: SourceCount,
    *,
    window_minutes: int,
    since: datetime,
    signature_windows: list[int],
) -> tuple[ErrorHistory, list[SignatureCount]]:
    """A source's stored counts since `since` and the signatures of `signature_windows`
    (window starts, epoch seconds), with an uncommitted (dry-run) count merged in."""
    window_seconds = window_minutes * 60
    with Ledger.from_settings() as ledger:
        store = LogCountStore(ledger, automation)
        history = store.history(count.name, window_minutes=window_minutes, since=since)
        signatures = store.signatures(
            count.name, window_minutes=window_minutes, starts=signature_windows
        )
    counts = merged_counts(history.counts, count, window_seconds)
    observed = int(history.observed_since.timestamp()) if history.observed_since else None
    if not count.committed:
        if count.tally.counts:
            first = min(count.tally.counts) * window_seconds
            observed = first if observed is None else min(observed, first)
        wanted = {start // window_seconds for start in signature_windows}
        kept = [(s.signature, s.errors, s.sample) for s in signatures]
        if count.recount_from is not None:
            kept = []
        kept += [
            (signature, errors, count.tally.samples.get(signature, ""))
            for (window, signature), errors in count.tally.signatures.items()
            if window in wanted
        ]
        signatures = merge_signatures(kept)
    return ErrorHistory(counts, observed), signatures

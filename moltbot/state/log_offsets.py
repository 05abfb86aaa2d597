"""Log reading state in the ledger: file offsets, error counts per window and per signature."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Integer,
    String,
    Table,
    Text,
    and_,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from moltbot.logscan import FileCursor, Tally
from moltbot.state.ledger import Ledger, UTCDateTime, ensure_table, metadata

log_offsets_table = Table(
    "log_offsets",
    metadata,
    Column("automation", String(200), primary_key=True),
    Column("source", String(200), primary_key=True),
    # A file is known by its device and inode, so a rotation (a rename) keeps its offset.
    Column("device", String(40), primary_key=True),
    Column("inode", String(40), primary_key=True),
    Column("path", Text, nullable=False),
    Column("offset", BigInteger, nullable=False),
    Column("head_digest", String(64), nullable=False),
    Column("head_length", Integer, nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

error_sources_table = Table(
    "error_sources",
    metadata,
    Column("automation", String(200), primary_key=True),
    Column("source", String(200), primary_key=True),
    # From when the source has been watched: windows before it are unknown, not zero.
    Column("observed_since", UTCDateTime(), nullable=False),
    # A SQL source: windows from here on are recounted on the next run (None: a file source).
    Column("recount_from", UTCDateTime(), nullable=True),
    Column("updated_at", UTCDateTime(), nullable=False),
)

error_counts_table = Table(
    "error_counts",
    metadata,
    Column("automation", String(200), primary_key=True),
    Column("source", String(200), primary_key=True),
    # Counts of another window length are another series (a changed `window_minutes`
    # starts a fresh baseline instead of mixing lengths).
    Column("window_minutes", Integer, primary_key=True),
    Column("window_start", UTCDateTime(), primary_key=True),
    Column("errors", BigInteger, nullable=False),
)

error_signatures_table = Table(
    "error_signatures",
    metadata,
    Column("automation", String(200), primary_key=True),
    Column("source", String(200), primary_key=True),
    Column("window_minutes", Integer, primary_key=True),
    Column("window_start", UTCDateTime(), primary_key=True),
    Column("signature", String(256), primary_key=True),
    Column("errors", BigInteger, nullable=False),
    # One occurrence, masked before it was stored.
    Column("sample", Text, nullable=False),
)

_TABLES = (log_offsets_table, error_sources_table, error_counts_table, error_signatures_table)


class OffsetsMoved(RuntimeError):
    """Another run committed offsets of the same source since this run read them."""


@dataclass(frozen=True)
class SourceHistory:
    """A source's stored error counts.

    Attributes:
        counts: window start (epoch seconds) -> error lines.
        observed_since: when the source started being watched (None: never).
    """

    counts: dict[int, int]
    observed_since: datetime | None


@dataclass(frozen=True)
class SignatureCount:
    """One signature's error lines over some windows, with a masked sample."""

    signature: str
    errors: int
    sample: str


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def _moment(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


class LogCountStore:
    """One automation's log offsets and error counts, on the ledger's own engine.

    `commit` writes a scan's new offsets and the counts it produced in one transaction, with a
    compare-and-set on the offsets it started from: a crash in between leaves neither (the
    lines are read and counted again, once), and of two runs that read the same offsets only
    the first commits.

    Args:
        ledger: the open ledger whose engine to use.
        automation: whose state (part of every key).
    """

    def __init__(self, ledger: Ledger, automation: str) -> None:
        self.automation = automation
        self._engine = ledger.engine
        if self._engine.dialect.name not in ("sqlite", "postgresql"):
            raise NotImplementedError(
                f"log counts need SQLite or PostgreSQL, not {self._engine.dialect.name}"
            )
        for table in _TABLES:
            ensure_table(self._engine, table)

    def _where(self, table: Table, source: str) -> Any:
        return and_(table.c.automation == self.automation, table.c.source == source)

    def cursors(self, source: str) -> dict[tuple[str, str], FileCursor]:
        """The stored cursors of `source`'s files, by (device, inode)."""
        table = log_offsets_table
        with self._engine.connect() as conn:
            rows = conn.execute(select(table).where(self._where(table, source))).all()
        return {
            (row.device, row.inode): FileCursor(
                device=row.device,
                inode=row.inode,
                path=row.path,
                offset=row.offset,
                head_digest=row.head_digest,
                head_length=row.head_length,
            )
            for row in rows
        }

    def recount_from(self, source: str) -> datetime | None:
        """Where a SQL source's next count starts (None: never counted)."""
        table = error_sources_table
        with self._engine.connect() as conn:
            return conn.execute(
                select(table.c.recount_from).where(self._where(table, source))
            ).scalar_one_or_none()

    def history(self, source: str, *, window_minutes: int, since: datetime) -> SourceHistory:
        """Error counts of `source`'s windows from `since` on, and when watching began."""
        counts = error_counts_table
        sources = error_sources_table
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(counts.c.window_start, counts.c.errors).where(
                    self._where(counts, source),
                    counts.c.window_minutes == window_minutes,
                    counts.c.window_start >= since,
                )
            ).all()
            observed = conn.execute(
                select(sources.c.observed_since).where(self._where(sources, source))
            ).scalar_one_or_none()
        return SourceHistory({_epoch(row.window_start): row.errors for row in rows}, observed)

    def signatures(
        self, source: str, *, window_minutes: int, starts: Sequence[int]
    ) -> list[SignatureCount]:
        """Signatures of the windows starting at `starts` (epoch seconds), most frequent first."""
        table = error_signatures_table
        if not starts:
            return []
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(table.c.signature, table.c.errors, table.c.sample).where(
                    self._where(table, source),
                    table.c.window_minutes == window_minutes,
                    table.c.window_start.in_([_moment(start) for start in starts]),
                )
            ).all()
        return merge_signatures((row.signature, row.errors, row.sample) for row in rows)

    def commit(
        self,
        source: str,
        *,
        window_minutes: int,
        tally: Tally,
        now: datetime,
        read_from: Mapping[tuple[str, str], FileCursor] | None = None,
        cursors: Sequence[FileCursor] = (),
        recount_from: datetime | None = None,
        read_recount_from: datetime | None = None,
        keep_counts_after: datetime,
        keep_signatures_after: datetime,
    ) -> None:
        """Store a scan's offsets and counts in one transaction.

        A file source passes `read_from` (the cursors its scan started from) and `cursors`
        (where it stopped); its counts are added. A SQL source passes `recount_from` (the new
        start of its next count) and `read_recount_from` (the one it counted from); its counts
        from `read_recount_from` on replace the stored ones (the last window was partial).

        Raises:
            OffsetsMoved: another run committed this source's offsets in between (nothing is
                written).
        """
        with self._engine.begin() as conn:
            if read_from is not None:
                self._move_cursors(conn, source, read_from, cursors, now)
            self._move_source(
                conn,
                source,
                tally=tally,
                now=now,
                recount_from=recount_from,
                read_recount_from=read_recount_from,
                sql=read_from is None,
            )
            if read_from is None and read_recount_from is not None:
                for table in (error_counts_table, error_signatures_table):
                    conn.execute(
                        delete(table).where(
                            self._where(table, source),
                            table.c.window_minutes == window_minutes,
                            table.c.window_start >= read_recount_from,
                        )
                    )
            self._add_counts(conn, source, window_minutes, tally)
            for table, keep_after in (
                (error_counts_table, keep_counts_after),
                (error_signatures_table, keep_signatures_after),
            ):
                conn.execute(
                    delete(table).where(
                        self._where(table, source), table.c.window_start < keep_after
                    )
                )

    def _move_cursors(
        self,
        conn: Connection,
        source: str,
        read_from: Mapping[tuple[str, str], FileCursor],
        cursors: Sequence[FileCursor],
        now: datetime,
    ) -> None:
        table = log_offsets_table
        kept = {cursor.identity for cursor in cursors}
        for cursor in cursors:
            values = {
                "path": cursor.path,
                "offset": cursor.offset,
                "head_digest": cursor.head_digest,
                "head_length": cursor.head_length,
                "updated_at": now,
            }
            before = read_from.get(cursor.identity)
            if before is None:
                try:
                    conn.execute(
                        insert(table).values(
                            automation=self.automation,
                            source=source,
                            device=cursor.device,
                            inode=cursor.inode,
                            **values,
                        )
                    )
                except IntegrityError:
                    # The transaction is rolled back whole: nothing of this scan is stored.
                    raise OffsetsMoved(f"{source}: another run read the same files") from None
                continue
            moved = conn.execute(
                update(table)
                .where(
                    self._where(table, source),
                    table.c.device == cursor.device,
                    table.c.inode == cursor.inode,
                    table.c.offset == before.offset,
                    table.c.head_digest == before.head_digest,
                )
                .values(**values)
            ).rowcount
            if moved != 1:
                raise OffsetsMoved(f"{source}: another run read the same files")
        # Files no longer matched (deleted, or rotated out of the glob) are forgotten.
        for identity, before in read_from.items():
            if identity in kept:
                continue
            conn.execute(
                delete(table).where(
                    self._where(table, source),
                    table.c.device == identity[0],
                    table.c.inode == identity[1],
                    table.c.offset == before.offset,
                )
            )

    def _move_source(
        self,
        conn: Connection,
        source: str,
        *,
        tally: Tally,
        now: datetime,
        recount_from: datetime | None,
        read_recount_from: datetime | None,
        sql: bool,
    ) -> None:
        table = error_sources_table
        earliest = [now]
        if tally.counts:
            earliest.append(_moment(min(tally.counts) * tally.window_seconds))
        observed = min(earliest)
        row = conn.execute(select(table).where(self._where(table, source))).one_or_none()
        if row is None:
            try:
                conn.execute(
                    insert(table).values(
                        automation=self.automation,
                        source=source,
                        observed_since=observed,
                        recount_from=recount_from,
                        updated_at=now,
                    )
                )
            except IntegrityError:
                raise OffsetsMoved(f"{source}: another run counted it at the same time") from None
            return
        if sql and row.recount_from != read_recount_from:
            raise OffsetsMoved(f"{source}: another run counted it at the same time")
        conn.execute(
            update(table)
            .where(self._where(table, source))
            .values(
                observed_since=min(row.observed_since, observed),
                recount_from=recount_from if sql else None,
                updated_at=now,
            )
        )

    def _add_counts(self, conn: Connection, source: str, window_minutes: int, tally: Tally) -> None:
        if not tally.counts:
            return
        dialect = postgresql if self._engine.dialect.name == "postgresql" else sqlite
        step = tally.window_seconds
        counts = dialect.insert(error_counts_table)
        conn.execute(
            counts.on_conflict_do_update(
                index_elements=["automation", "source", "window_minutes", "window_start"],
                set_={"errors": error_counts_table.c.errors + counts.excluded.errors},
            ),
            [
                {
                    "automation": self.automation,
                    "source": source,
                    "window_minutes": window_minutes,
                    "window_start": _moment(window * step),
                    "errors": errors,
                }
                for window, errors in sorted(tally.counts.items())
            ],
        )
        signatures = dialect.insert(error_signatures_table)
        conn.execute(
            signatures.on_conflict_do_update(
                index_elements=[
                    "automation",
                    "source",
                    "window_minutes",
                    "window_start",
                    "signature",
                ],
                set_={"errors": error_signatures_table.c.errors + signatures.excluded.errors},
            ),
            [
                {
                    "automation": self.automation,
                    "source": source,
                    "window_minutes": window_minutes,
                    "window_start": _moment(window * step),
                    "signature": signature,
                    "errors": errors,
                    "sample": tally.samples.get(signature, ""),
                }
                for (window, signature), errors in sorted(tally.signatures.items())
            ],
        )


def merge_signatures(rows: Any) -> list[SignatureCount]:
    """(signature, errors, sample) rows summed per signature, most frequent first (ties by
    signature), each with the first sample given."""
    errors: dict[str, int] = {}
    samples: dict[str, str] = {}
    for signature, count, sample in rows:
        errors[signature] = errors.get(signature, 0) + int(count)
        samples.setdefault(signature, sample)
    ordered = sorted(errors.items(), key=lambda item: (-item[1], item[0]))
    return [SignatureCount(signature, count, samples[signature]) for signature, count in ordered]

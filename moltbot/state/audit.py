"""The audit trail: an append-only, hash-chained record of who did what, kept in the ledger."""

from __future__ import annotations

import hashlib
import json
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import Any, Protocol

from sqlalchemy import Column, Integer, String, Table, Text, delete, insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from moltbot.masking import mask_text
from moltbot.state.ledger import UTCDateTime, ensure_table, metadata

# The hash a chain starts from: the first row ever written links to it.
GENESIS = "0" * 64
ANCHOR_NAME = "audit"
TARGET_MAX_CHARS = 500
DETAIL_MAX_CHARS = 1000
# Appends race only with other appends; each round re-reads the anchor, so a few always settle.
_APPEND_ROUNDS = 20

audit_table = Table(
    "audit",
    metadata,
    # Consecutive from the anchor's pruned prefix on: a gap is a removed row.
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("actor", String(255), nullable=False),
    Column("action", String(64), nullable=False),
    Column("automation", String(200), nullable=True),
    Column("target", Text, nullable=False),
    # Canonical JSON of the masked parameters (None: none given).
    Column("parameters", Text, nullable=True),
    Column("outcome", String(64), nullable=False),
    Column("detail", Text, nullable=True),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

# One row: where the chain ends (so removing the last rows shows) and where it begins after a
# prune (so a pruned prefix is not mistaken for removed rows).
audit_anchor_table = Table(
    "audit_anchor",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("last_seq", Integer, nullable=False),
    Column("last_hash", String(64), nullable=False),
    Column("pruned_seq", Integer, nullable=False),
    Column("pruned_hash", String(64), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

# One row per day whose table was published as a Prefect artifact: the last entry it held and
# when. Shared by every process on the ledger, so runs publish a day at most once per interval
# between them, and the next day's first publication knows whether the day's last entries are out.
audit_published_table = Table(
    "audit_published",
    metadata,
    # ISO date in the audit timezone (the artifact key's date).
    Column("day", String(10), primary_key=True),
    Column("last_seq", Integer, nullable=False),
    Column("published_at", UTCDateTime(), nullable=False),
)


class OnLedger(Protocol):
    """Anything that works on the ledger's database: the ledger itself, the webhook inbox."""

    @property
    def engine(self) -> Engine: ...


class AuditAction:
    """The actions the trail records (plain strings, so new ones need no migration)."""

    RUN = "run"
    APPROVE = "approve"
    REJECT = "reject"
    EDIT = "edit"
    REVIEW_TIMEOUT = "review timed out"
    APPROVAL_REFUSED = "approval refused"
    REPLAY = "replay"
    RESOLVE = "resolve"
    DEPLOY = "deploy"
    CONFIG_CHANGED = "config changed"
    BLOCK_SAVED = "block saved"
    WEBHOOK = "webhook"
    PRUNE = "prune"
    ESCALATE = "escalate"
    ACKNOWLEDGE = "acknowledge"


@dataclass(frozen=True)
class AuditRow:
    """One entry of the trail.

    Attributes:
        seq: its place in the chain (1, 2, …; consecutive).
        at: when (UTC).
        actor: who: `user:alice` (the CLI's OS user), `deployment:daily-report/daily
            (schedule)`, `webhook:stripe`, `reviewer:kim`, or a reverse proxy's identity.
        action: what (see `AuditAction`).
        automation: which automation, when one is concerned.
        target: what it acted on (a flow run, an effect key, a deployment, a file).
        parameters: the masked parameters, when any.
        outcome: `ok`, `completed`, `failed`, `refused`, `timed out`…
        detail: a masked one-line remark (a reviewer's reason, an error).
        prev_hash: the previous row's hash (`GENESIS` for the first row ever).
        hash: this row's hash over all the fields above.
    """

    seq: int
    at: datetime
    actor: str
    action: str
    automation: str | None
    target: str
    parameters: dict[str, Any] | None
    outcome: str
    detail: str | None
    prev_hash: str
    hash: str

    def as_dict(self) -> dict[str, Any]:
        """The row as JSON types."""
        return {
            "seq": self.seq,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "action": self.action,
            "automation": self.automation,
            "target": self.target,
            "parameters": self.parameters,
            "outcome": self.outcome,
            "detail": self.detail,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


@dataclass(frozen=True)
class Publication:
    """The last published version of a day's audit table.

    Attributes:
        day: the day (in the audit timezone).
        last_seq: the last entry that version holds.
        published_at: when it was published (UTC).
    """

    day: date
    last_seq: int
    published_at: datetime


@dataclass(frozen=True)
class Verification:
    """What `AuditTrail.verify` found.

    Attributes:
        ok: True when every row links to the one before it and hashes to its stored hash, and
            the chain ends where the anchor says.
        checked: how many rows were read.
        first_bad: the sequence number of the first row that fails (or the first missing one).
        kind: what is wrong with it (None when ok): `altered` (its hash does not match),
            `missing` (removed), `unlinked` (it does not link to the row before: something
            before it was removed, inserted or rewritten), `inserted` (it lies in the pruned
            prefix), `tail_missing` (rows first_bad..anchor_seq are gone) or `beyond_anchor`
            (the chain goes on past the anchor, or ends elsewhere than it says).
        anchor_seq: where the anchor says the chain ends.
        head: the last row's hash (the value to keep elsewhere to detect a rewrite of everything).
    """

    ok: bool
    checked: int
    first_bad: int | None = None
    kind: str | None = None
    anchor_seq: int = 0
    head: str = GENESIS


def row_hash(
    *,
    seq: int,
    at: datetime,
    actor: str,
    action: str,
    automation: str | None,
    target: str,
    parameters: str | None,
    outcome: str,
    detail: str | None,
    prev_hash: str,
) -> str:
    """SHA-256 over a row's fields as stored (canonical JSON, microsecond UTC time)."""
    document = json.dumps(
        [
            seq,
            at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            actor,
            action,
            automation,
            target,
            parameters,
            outcome,
            detail,
            prev_hash,
        ],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(document.encode("utf-8")).hexdigest()


def masked_parameters(parameters: Mapping[str, Any] | None) -> str | None:
    """Canonical JSON of `parameters` with every string masked (secrets, personal data)."""
    if parameters is None:
        return None
    text = json.dumps(
        _mask_values(dict(parameters)), sort_keys=True, ensure_ascii=False, default=str
    )
    return text


def _mask_values(value: Any) -> Any:
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, Mapping):
        return {str(key): _mask_values(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_mask_values(item) for item in value]
    return value


def _one_line(text: str | None, limit: int) -> str | None:
    if text is None:
        return None
    flat = " ".join(mask_text(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class AuditTrail:
    """Appends to and checks the audit chain on the ledger's engine.

    Every row stores the hash of the row before it, and the anchor row stores the last
    sequence number and hash, so `verify` finds a row altered, inserted or removed anywhere,
    the last ones included. Appends are a compare-and-set on the anchor: concurrent writers
    (CLI, workers, the gateway) each get the next number, none forks the chain.

    Args:
        ledger: the open ledger whose database holds the trail (or the webhook inbox, on the
            same database).
    """

    def __init__(self, ledger: OnLedger) -> None:
        self._engine = ledger.engine
        # Checking the tables costs a few catalogue queries: once per engine, not per trail
        # (the gateway's dispatcher makes a trail for every pass).
        if self._engine not in _TABLES_READY:
            for table in (audit_table, audit_anchor_table, audit_published_table):
                ensure_table(self._engine, table)
            _TABLES_READY.add(self._engine)

    def record(
        self,
        action: str,
        target: str,
        *,
        actor: str,
        automation: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        outcome: str = "ok",
        detail: str | None = None,
        at: datetime | None = None,
    ) -> AuditRow:
        """Append one entry (masked) and return it as stored."""
        at = (at or datetime.now(UTC)).astimezone(UTC)
        values = _values(
            action,
            target,
            actor=actor,
            automation=automation,
            parameters=parameters,
            outcome=outcome,
            detail=detail,
            at=at,
        )
        for _ in range(_APPEND_ROUNDS):
            try:
                with self._engine.begin() as conn:
                    anchor = _read_anchor(conn)
                    seq = anchor.last_seq + 1
                    digest = row_hash(seq=seq, prev_hash=anchor.last_hash, **values)
                    conn.execute(
                        insert(audit_table).values(
                            seq=seq, prev_hash=anchor.last_hash, hash=digest, **values
                        )
                    )
                    moved = conn.execute(
                        update(audit_anchor_table)
                        .where(
                            audit_anchor_table.c.name == ANCHOR_NAME,
                            audit_anchor_table.c.last_seq == anchor.last_seq,
                        )
                        .values(last_seq=seq, last_hash=digest, updated_at=at)
                    ).rowcount
                    if moved != 1:
                        raise _Raced()
            except (IntegrityError, _Raced):
                continue
            return _as_row({**values, "seq": seq, "prev_hash": anchor.last_hash, "hash": digest})
        raise RuntimeError("audit trail: could not append after many concurrent writers")

    def record_in(self, conn: Connection, entries: Sequence[AuditEntry]) -> list[AuditRow]:
        """Append entries (masked) inside the caller's transaction: they commit, or roll back,
        with what the caller wrote in it (one commit for a whole pass of the dispatcher).

        The anchor row is read for update, so on PostgreSQL concurrent appends wait for this
        transaction instead of racing it; on SQLite the caller should write before calling, so
        its transaction holds the database's write lock already (else a concurrent append may
        move the anchor between the read and the update).

        Raises:
            AuditConflict: another writer moved the anchor meanwhile (SQLite without the write
                lock, or two first appends ever): roll back and try the transaction again.
        """
        if not entries:
            return []
        try:
            anchor = _read_anchor(conn)
        except IntegrityError as exc:  # two first appends ever both created the anchor
            raise AuditConflict("another writer started the audit trail meanwhile") from exc
        seq, last_hash = anchor.last_seq, anchor.last_hash
        stored: list[dict[str, Any]] = []
        for entry in entries:
            values = _values(
                entry.action,
                entry.target,
                actor=entry.actor,
                automation=entry.automation,
                parameters=entry.parameters,
                outcome=entry.outcome,
                detail=entry.detail,
                at=(entry.at or datetime.now(UTC)).astimezone(UTC),
            )
            seq += 1
            digest = row_hash(seq=seq, prev_hash=last_hash, **values)
            stored.append({**values, "seq": seq, "prev_hash": last_hash, "hash": digest})
            last_hash = digest
        try:
            conn.execute(insert(audit_table), stored)
        except IntegrityError as exc:
            raise AuditConflict("another writer appended to the audit trail meanwhile") from exc
        moved = conn.execute(
            update(audit_anchor_table)
            .where(
                audit_anchor_table.c.name == ANCHOR_NAME,
                audit_anchor_table.c.last_seq == anchor.last_seq,
            )
            .values(last_seq=seq, last_hash=last_hash, updated_at=stored[-1]["at"])
        ).rowcount
        if moved != 1:
            raise AuditConflict("another writer appended to the audit trail meanwhile")
        return [_as_row(values) for values in stored]

    def rows(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        automation: str | None = None,
        limit: int | None = None,
    ) -> list[AuditRow]:
        """Entries in chain order, optionally only those at or after `since`, before `until` or
        of one automation; with `limit`, the last `limit` of them."""
        statement = select(audit_table).order_by(audit_table.c.seq)
        if since is not None:
            statement = statement.where(audit_table.c.at >= since)
        if until is not None:
            statement = statement.where(audit_table.c.at < until)
        if automation is not None:
            statement = statement.where(audit_table.c.automation == automation)
        if limit is not None:
            statement = statement.order_by(None).order_by(audit_table.c.seq.desc()).limit(limit)
        with self._engine.connect() as conn:
            found = [_as_row(row._mapping) for row in conn.execute(statement)]
        return sorted(found, key=lambda row: row.seq)

    def head(self) -> str:
        """The anchor's hash of the last row (`GENESIS` for an empty trail)."""
        with self._engine.connect() as conn:
            return _peek_anchor(conn).last_hash

    def latest(self, action: str) -> AuditRow | None:
        """The last entry of `action`, or None."""
        statement = (
            select(audit_table)
            .where(audit_table.c.action == action)
            .order_by(audit_table.c.seq.desc())
            .limit(1)
        )
        with self._engine.connect() as conn:
            row = conn.execute(statement).first()
        return None if row is None else _as_row(row._mapping)

    def last_before(self, instant: datetime) -> AuditRow | None:
        """The last entry (in chain order) written before `instant`, or None."""
        statement = (
            select(audit_table)
            .where(audit_table.c.at < instant)
            .order_by(audit_table.c.seq.desc())
            .limit(1)
        )
        with self._engine.connect() as conn:
            row = conn.execute(statement).first()
        return None if row is None else _as_row(row._mapping)

    def publication(self, day: date) -> Publication | None:
        """The last publication of `day`'s table, or None when it was never published."""
        with self._engine.connect() as conn:
            row = conn.execute(
                select(audit_published_table).where(audit_published_table.c.day == day.isoformat())
            ).first()
        return None if row is None else Publication(day, row.last_seq, row.published_at)

    def claim_publication(
        self, day: date, *, last_seq: int, at: datetime, seen: Publication | None
    ) -> bool:
        """Take the turn to publish `day`'s table (up to `last_seq`) at `at`: a compare-and-set
        against `seen`, what the caller read, so of concurrent runs one publishes."""
        values = {"last_seq": last_seq, "published_at": at}
        try:
            with self._engine.begin() as conn:
                if seen is None:
                    conn.execute(
                        insert(audit_published_table).values(day=day.isoformat(), **values)
                    )
                    return True
                return (
                    conn.execute(
                        update(audit_published_table)
                        .where(
                            audit_published_table.c.day == day.isoformat(),
                            audit_published_table.c.published_at == seen.published_at,
                        )
                        .values(**values)
                    ).rowcount
                    == 1
                )
        except IntegrityError:
            return False

    def release_publication(self, day: date, *, at: datetime, seen: Publication | None) -> None:
        """Undo a claim taken at `at` whose publication failed, so the next run publishes."""
        mine = (
            audit_published_table.c.day == day.isoformat(),
            audit_published_table.c.published_at == at,
        )
        with self._engine.begin() as conn:
            if seen is None:
                conn.execute(delete(audit_published_table).where(*mine))
            else:
                conn.execute(
                    update(audit_published_table)
                    .where(*mine)
                    .values(last_seq=seen.last_seq, published_at=seen.published_at)
                )

    def note_publication(self, day: date, *, last_seq: int, at: datetime) -> None:
        """Record that `day`'s table up to `last_seq` was published at `at` (whatever before)."""
        for _ in range(_APPEND_ROUNDS):
            seen = self.publication(day)
            if self.claim_publication(day, last_seq=last_seq, at=at, seen=seen):
                return

    def verify(self) -> Verification:
        """Walk the chain from the anchor's pruned prefix to its head (see `Verification`)."""
        with self._engine.connect() as conn:
            anchor = _peek_anchor(conn)
            return replace(_walk(conn, anchor), anchor_seq=anchor.last_seq)

    def prune_before(self, cutoff: datetime, *, dry_run: bool = False) -> int:
        """Remove the oldest rows older than `cutoff` (a prefix of the chain: the first row at
        or after `cutoff` and everything after it stay), anchoring the chain at the last
        removed row so `verify` still passes. Returns how many rows were (or would be) removed.
        """
        with self._engine.begin() as conn:
            anchor = _read_anchor(conn)
            first_kept = conn.execute(
                select(audit_table.c.seq)
                .where(audit_table.c.at >= cutoff)
                .order_by(audit_table.c.seq)
                .limit(1)
            ).scalar()
            end = anchor.last_seq if first_kept is None else first_kept - 1
            last_pruned = conn.execute(
                select(audit_table.c.seq, audit_table.c.hash)
                .where(audit_table.c.seq <= end)
                .order_by(audit_table.c.seq.desc())
                .limit(1)
            ).first()
            if last_pruned is None:
                return 0
            count = last_pruned.seq - anchor.pruned_seq
            if dry_run:
                return count
            conn.execute(delete(audit_table).where(audit_table.c.seq <= last_pruned.seq))
            # A day whose every entry is gone has nothing left to publish.
            conn.execute(
                delete(audit_published_table).where(
                    audit_published_table.c.last_seq <= last_pruned.seq
                )
            )
            conn.execute(
                update(audit_anchor_table)
                .where(audit_anchor_table.c.name == ANCHOR_NAME)
                .values(
                    pruned_seq=last_pruned.seq,
                    pruned_hash=last_pruned.hash,
                    updated_at=datetime.now(UTC),
                )
            )
        return count

    def count_before(self, cutoff: datetime) -> int:
        """How many rows `prune_before(cutoff)` would remove."""
        return self.prune_before(cutoff, dry_run=True)


class _Raced(Exception):
    """Another writer moved the anchor between our read and our update."""


class AuditConflict(Exception):
    """Another writer appended to the trail during `record_in`'s transaction."""


@dataclass(frozen=True)
class AuditEntry:
    """One entry to append with `AuditTrail.record_in` (the arguments of `record`)."""

    action: str
    target: str
    actor: str
    automation: str | None = None
    parameters: Mapping[str, Any] | None = None
    outcome: str = "ok"
    detail: str | None = None
    at: datetime | None = None


# Engines whose audit tables are known to exist.
_TABLES_READY: weakref.WeakSet[Engine] = weakref.WeakSet()


def _values(
    action: str,
    target: str,
    *,
    actor: str,
    automation: str | None,
    parameters: Mapping[str, Any] | None,
    outcome: str,
    detail: str | None,
    at: datetime,
) -> dict[str, Any]:
    """A row's fields as stored (masked, cut to size), without its place in the chain."""
    return {
        "at": at,
        "actor": _one_line(actor, 255) or "unknown",
        "action": action,
        "automation": automation,
        "target": _one_line(target, TARGET_MAX_CHARS) or "",
        "parameters": masked_parameters(parameters),
        "outcome": outcome,
        "detail": _one_line(detail, DETAIL_MAX_CHARS),
    }


@dataclass(frozen=True)
class _Anchor:
    last_seq: int
    last_hash: str
    pruned_seq: int
    pruned_hash: str


def _peek_anchor(conn: Connection) -> _Anchor:
    row = conn.execute(
        select(audit_anchor_table).where(audit_anchor_table.c.name == ANCHOR_NAME)
    ).first()
    if row is None:
        return _Anchor(0, GENESIS, 0, GENESIS)
    return _Anchor(row.last_seq, row.last_hash, row.pruned_seq, row.pruned_hash)


def _read_anchor(conn: Connection) -> _Anchor:
    """The anchor, created at the chain's start when missing (inside the caller's transaction).

    Its row stays locked until the transaction ends (PostgreSQL; a SQLite writer holds the
    database's lock): every writer takes it before it touches the rows, so an append that
    shares its transaction with other writes (`record_in`) and a lone one wait for each other
    in one order and never deadlock.
    """
    statement = select(audit_anchor_table).where(audit_anchor_table.c.name == ANCHOR_NAME)
    row = conn.execute(statement.with_for_update()).first()
    if row is not None:
        return _Anchor(row.last_seq, row.last_hash, row.pruned_seq, row.pruned_hash)
    conn.execute(
        insert(audit_anchor_table).values(
            name=ANCHOR_NAME,
            last_seq=0,
            last_hash=GENESIS,
            pruned_seq=0,
            pruned_hash=GENESIS,
            updated_at=datetime.now(UTC),
        )
    )
    return _Anchor(0, GENESIS, 0, GENESIS)


def _walk(conn: Connection, anchor: _Anchor) -> Verification:
    """Check every row's link and hash, then that the chain ends at the anchor."""
    expected_seq = anchor.pruned_seq + 1
    expected_prev = anchor.pruned_hash
    checked = 0
    for row in conn.execute(select(audit_table).order_by(audit_table.c.seq)):
        fields = row._mapping
        seq = fields["seq"]
        checked += 1
        if seq < expected_seq:
            return _bad(checked, seq, "inserted")
        if seq > expected_seq:
            return _bad(checked, expected_seq, "missing")
        if fields["prev_hash"] != expected_prev:
            return _bad(checked, seq, "unlinked")
        digest = row_hash(
            seq=seq,
            at=fields["at"],
            actor=fields["actor"],
            action=fields["action"],
            automation=fields["automation"],
            target=fields["target"],
            parameters=fields["parameters"],
            outcome=fields["outcome"],
            detail=fields["detail"],
            prev_hash=fields["prev_hash"],
        )
        if digest != fields["hash"]:
            return _bad(checked, seq, "altered")
        expected_seq, expected_prev = seq + 1, digest
    if expected_seq - 1 < anchor.last_seq:
        return _bad(checked, expected_seq, "tail_missing")
    if expected_seq - 1 > anchor.last_seq or expected_prev != anchor.last_hash:
        return _bad(checked, expected_seq - 1, "beyond_anchor")
    return Verification(ok=True, checked=checked, head=expected_prev)


def _bad(checked: int, seq: int, kind: str) -> Verification:
    return Verification(ok=False, checked=checked, first_bad=seq, kind=kind)


def _as_row(fields: Mapping[str, Any]) -> AuditRow:
    parameters = fields.get("parameters")
    return AuditRow(
        seq=fields["seq"],
        at=fields["at"],
        actor=fields["actor"],
        action=fields["action"],
        automation=fields.get("automation"),
        target=fields["target"],
        parameters=json.loads(parameters) if parameters else None,
        outcome=fields["outcome"],
        detail=fields.get("detail"),
        prev_hash=fields["prev_hash"],
        hash=fields["hash"],
    )

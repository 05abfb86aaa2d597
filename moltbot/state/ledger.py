"""The effects ledger: each external effect is claimed in SQL before it runs, so none runs twice."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    Engine,
    Index,
    Integer,
    MetaData,
    Row,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import DatabaseError, IntegrityError
from sqlalchemy.types import TypeDecorator, TypeEngine

from moltbot.config.settings import Settings, get_settings
from moltbot.masking import mask_text

ERROR_MAX_CHARS = 1000
SQLITE_BUSY_TIMEOUT_MS = 10_000

# A claim loses a race only when another claimant changed the row in between; each retry re-reads
# the row, so a handful of rounds always settles (the winner's row is then fresh or done).
_CLAIM_ROUNDS = 8


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend.

    PostgreSQL stores `timestamptz`. Backends without a reliable timezone type (SQLite, MySQL)
    store naive UTC, which keeps the stored text comparable and round-trips exactly; values are
    read back as aware UTC everywhere.
    """

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        """Use a timezone-aware column type only where the backend has a real one."""
        return dialect.type_descriptor(DateTime(timezone=dialect.name == "postgresql"))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Convert to UTC; drop the tzinfo where the column is naive."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("ledger timestamps must be timezone-aware")
        value = value.astimezone(UTC)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Return aware UTC datetimes."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# The ledger schema lives here, in one MetaData, so later tables (watermarks, outbox) sit beside
# `effects` and are created by the same `create_all`.
metadata = MetaData()

effects_table = Table(
    "effects",
    metadata,
    Column("key", String(512), primary_key=True),
    Column("automation", String(200), nullable=False),
    Column("flow_run_id", String(64), nullable=True),
    Column("kind", String(32), nullable=False),
    Column("target", String(255), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("remote_id", String(512), nullable=True),
    Column("error", Text, nullable=True),
    # Added by the effects layer (see `_upgrade_schema` for ledgers created before them).
    Column("holder", String(255), nullable=True),
    Column("route", Text, nullable=True),
    Column("policy", String(16), nullable=True),
    Column("via", String(255), nullable=True),
    Column("tried", Text, nullable=True),
    Column("payload", Text, nullable=True),
    Column("announced_at", UTCDateTime(), nullable=True),
    # A message held for the end of quiet hours goes out then (status `queued`).
    Column("due_at", UTCDateTime(), nullable=True),
    # Why it went out: the automation's rule and the policy document's version (`moltbot policy`).
    Column("rule_id", String(255), nullable=True),
    Column("policy_version", String(32), nullable=True),
    Index("ix_effects_automation_status", "automation", "status"),
)

# Columns a ledger created by an older moltbot lacks; `_upgrade_schema` adds them in place.
_ADDED_COLUMNS = (
    "holder",
    "route",
    "policy",
    "via",
    "tried",
    "payload",
    "announced_at",
    "due_at",
    "rule_id",
    "policy_version",
)


class EffectStatus(StrEnum):
    """Where an effect stands: claimed and in flight, done, failed (retryable), dead (every
    destination failed: replay it), in doubt (it may have happened and cannot be looked up:
    a person resolves it), or queued (a message held for the end of quiet hours, with its
    payload: a digest delivers it at `due_at`)."""

    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"
    DEAD = "dead"
    IN_DOUBT = "in_doubt"
    QUEUED = "queued"


@dataclass(frozen=True)
class Effect:
    """One ledger row: an intended external effect and its outcome so far."""

    key: str
    automation: str
    flow_run_id: str | None
    kind: str
    target: str
    status: EffectStatus
    attempts: int
    created_at: datetime
    updated_at: datetime
    remote_id: str | None
    error: str | None
    holder: str | None = None
    route: str | None = None
    policy: str | None = None
    via: str | None = None
    tried: str | None = None
    payload: str | None = None
    announced_at: datetime | None = None
    due_at: datetime | None = None
    rule_id: str | None = None
    policy_version: str | None = None


@dataclass(frozen=True)
class Claim:
    """The answer to `Ledger.claim`.

    Attributes:
        acquired: True when the caller now owns the effect and must perform it.
        effect: The row after claiming; when not acquired, the current row (`done`: report it as
            skipped; `pending`: another run is performing it; `dead`: it needs `force`).
        previous: When acquired by taking a row over, that row as it was (`pending` means its
            holder died with the outcome unknown); None for a new row.
    """

    acquired: bool
    effect: Effect
    previous: Effect | None = None


class Ledger:
    """Records external effects so that retries, re-runs and crashes never duplicate them.

    Claim before acting: `claim` inserts or takes over the row for a key inside a transaction,
    relying on the primary key and on compare-and-set updates, so exactly one of several
    concurrent claimants acquires it. The tables are created on first use.

    Args:
        url: SQLAlchemy URL; a SQLite file gets WAL journaling, a busy timeout and its folder.
        lease_seconds: How long a `pending` claim is honoured without news (`claim` or
            `note_attempt`); after that the claimant is presumed crashed and the key can be
            claimed again.
    """

    def __init__(self, url: str, *, lease_seconds: float = 900.0) -> None:
        self.lease = timedelta(seconds=lease_seconds)
        self._engine = _create_engine(url)
        self._schema_ready = False
        self._schema_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Ledger:
        """Open the ledger configured in `settings` (read now when not given)."""
        settings = settings or get_settings()
        return cls(settings.resolved_ledger_url)

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine, with the schema created."""
        if not self._schema_ready:
            with self._schema_lock:
                if not self._schema_ready:
                    _create_schema(self._engine)
                    self._schema_ready = True
        return self._engine

    def claim(
        self,
        key: str,
        *,
        automation: str,
        kind: str,
        target: str,
        flow_run_id: str | None = None,
        force: bool = False,
        revive: bool = False,
        holder: str | None = None,
        holder_is_dead: Callable[[Effect], bool] | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> Claim:
        """Claim the effect `key` before performing it.

        A new key is inserted as `pending` with one attempt. An existing row is taken over
        (`pending`, attempts + 1) when it `failed`, when it is `pending` but its lease expired
        or `holder_is_dead` says its holder is gone, with `revive` when it is `dead` or
        `in_doubt`, or with `force` when it is `done`, `dead` or `in_doubt`. Otherwise the
        claim is not acquired.

        Args:
            key: Idempotency key (automation, logical item and target), at most 512 characters.
            automation: Name of the automation performing the effect.
            kind: What the effect is: "message", "ticket", "page", "row_update"…
            target: Where it goes, e.g. the channel block name.
            flow_run_id: The Prefect flow run claiming it, for the audit trail.
            force: Perform it again even if it is already done or dead.
            revive: Take over a dead or in-doubt row (a replay), never a done one.
            holder: Who holds the claim (process identity), so others can tell it died.
            holder_is_dead: Tells whether a fresh `pending` row's holder is gone.
            details: Other columns to store with the claim (route, policy, payload, rule_id,
                policy_version).

        Returns:
            Whether the caller acquired the effect, and the row.
        """
        engine = self.engine
        for _ in range(_CLAIM_ROUNDS):
            current = self.get(key)
            now = _now()
            if current is None:
                effect = Effect(
                    key=key,
                    automation=automation,
                    flow_run_id=flow_run_id,
                    kind=kind,
                    target=target,
                    status=EffectStatus.PENDING,
                    attempts=1,
                    created_at=now,
                    updated_at=now,
                    remote_id=None,
                    error=None,
                    holder=holder,
                    **_detail_values(details),
                )
                try:
                    with engine.begin() as conn:
                        conn.execute(insert(effects_table).values(**_as_row(effect)))
                except IntegrityError:
                    continue  # another claimant inserted it first: decide again on its row
                return Claim(acquired=True, effect=effect)
            if not self._can_take_over(
                current, now, force=force, revive=revive, holder_is_dead=holder_is_dead
            ):
                return Claim(acquired=False, effect=current)
            taken = replace(
                current,
                status=EffectStatus.PENDING,
                attempts=current.attempts + 1,
                updated_at=now,
                flow_run_id=flow_run_id,
                holder=holder,
                **_detail_values(details),
            )
            # Compare-and-set on everything a competing transition changes: if the row moved
            # since we read it, rowcount is 0 and we read it again.
            statement = (
                update(effects_table)
                .where(
                    effects_table.c.key == key,
                    effects_table.c.status == current.status.value,
                    effects_table.c.attempts == current.attempts,
                    effects_table.c.updated_at == current.updated_at,
                )
                .values(
                    status=taken.status.value,
                    attempts=taken.attempts,
                    updated_at=now,
                    flow_run_id=flow_run_id,
                    holder=holder,
                    **_detail_values(details),
                )
            )
            with engine.begin() as conn:
                won = conn.execute(statement).rowcount == 1
            if won:
                return Claim(acquired=True, effect=taken, previous=current)
        raise RuntimeError(f"ledger key {key!r} kept changing while claiming it")

    def note_attempt(self, key: str) -> None:
        """Count one more attempt inside the current claim (a retry) and renew its lease.

        Raises:
            KeyError: No row for `key`.
        """
        statement = (
            update(effects_table)
            .where(effects_table.c.key == key)
            .values(attempts=effects_table.c.attempts + 1, updated_at=_now())
        )
        with self.engine.begin() as conn:
            if conn.execute(statement).rowcount == 0:
                raise KeyError(key)

    def complete(
        self,
        key: str,
        *,
        remote_id: str | None = None,
        via: str | None = None,
        tried: str | None = None,
    ) -> Effect:
        """Record the effect as done, with the id the remote service gave it.

        The stored payload is dropped: a done effect is never sent again, and the ledger keeps
        no message content longer than it must.

        Raises:
            KeyError: No row for `key`.
        """
        return self._finish(
            key,
            status=EffectStatus.DONE.value,
            remote_id=remote_id,
            error=None,
            via=via,
            tried=tried,
            payload=None,
        )

    def fail(
        self,
        key: str,
        error: str,
        *,
        dead: bool = False,
        in_doubt: bool = False,
        tried: str | None = None,
    ) -> Effect:
        """Record the effect as failed (claimable again by the next run), dead or in doubt.

        Args:
            key: The effect's key.
            error: What went wrong; masked and truncated to 1000 characters before storing.
            dead: Give up on it: only a replay (or a forced claim) performs it again.
            in_doubt: It may have happened and cannot be checked: a person resolves it.
            tried: JSON list of the destinations tried and how each failed.

        Raises:
            KeyError: No row for `key`.
        """
        status = EffectStatus.FAILED
        if dead:
            status = EffectStatus.DEAD
        if in_doubt:
            status = EffectStatus.IN_DOUBT
        values: dict[str, Any] = {"status": status.value, "error": clean_error(error)}
        if tried is not None:
            values["tried"] = tried
        # The remote id of an earlier success (before a forced re-run) is kept for the audit trail.
        return self._finish(key, **values)

    def queue(self, key: str, due_at: datetime) -> Effect:
        """Hold the claimed message `key` (its payload kept) until `due_at`: the end of quiet
        hours, when a digest delivers it (`release_queued`).

        Raises:
            KeyError: No row for `key`.
        """
        return self._finish(key, status=EffectStatus.QUEUED.value, due_at=due_at, error=None)

    def queued_due(self, now: datetime) -> list[Effect]:
        """The queued effects whose `due_at` has come, oldest first."""
        statement = (
            select(effects_table)
            .where(
                effects_table.c.status == EffectStatus.QUEUED.value,
                effects_table.c.due_at <= now,
            )
            .order_by(effects_table.c.created_at, effects_table.c.key)
        )
        with self.engine.connect() as conn:
            return [_as_effect(row) for row in conn.execute(statement)]

    def release_queued(self, keys: list[str], *, remote_id: str, via: str) -> int:
        """Record queued messages done, delivered by the digest `remote_id` (its ledger key) on
        `via`, in one transaction; rows no longer queued are left as they are.

        Returns:
            How many rows were released.
        """
        if not keys:
            return 0
        statement = (
            update(effects_table)
            .where(
                effects_table.c.key.in_(keys),
                effects_table.c.status == EffectStatus.QUEUED.value,
            )
            .values(
                status=EffectStatus.DONE.value,
                remote_id=remote_id,
                via=via,
                payload=None,
                updated_at=_now(),
            )
        )
        with self.engine.begin() as conn:
            return conn.execute(statement).rowcount

    def mark_announced(self, key: str) -> bool:
        """Record that the ops channel was told about this dead or in-doubt effect.

        Returns:
            True for the caller that set it first (only that one announces).
        """
        statement = (
            update(effects_table)
            .where(effects_table.c.key == key, effects_table.c.announced_at.is_(None))
            .values(announced_at=_now())
        )
        with self.engine.begin() as conn:
            return conn.execute(statement).rowcount == 1

    def resolve(self, key: str, *, sent: bool) -> Effect:
        """A person's answer about an in-doubt effect: it was `sent` (done) or must be resent
        (failed, so the next run or a replay performs it).

        Raises:
            KeyError: No row for `key`.
            ValueError: The effect is not in doubt.
        """
        current = self.get(key)
        if current is None:
            raise KeyError(key)
        if current.status != EffectStatus.IN_DOUBT:
            raise ValueError(f"effect is {current.status.value}, not in_doubt")
        if sent:
            return self._finish(
                key,
                status=EffectStatus.DONE.value,
                error=None,
                payload=None,
                remote_id=current.remote_id or "resolved-by-person",
            )
        return self._finish(key, status=EffectStatus.FAILED.value, announced_at=None)

    def release(self, key: str) -> None:
        """Drop a `pending` claim that never acted (dry run, aborted before sending).

        Rows in any other state are kept: they record something that happened.
        """
        statement = delete(effects_table).where(
            effects_table.c.key == key, effects_table.c.status == EffectStatus.PENDING.value
        )
        with self.engine.begin() as conn:
            conn.execute(statement)

    def get(self, key: str) -> Effect | None:
        """The row for `key`, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(select(effects_table).where(effects_table.c.key == key)).first()
        return None if row is None else _as_effect(row)

    def effects(
        self,
        *,
        automation: str | None = None,
        status: EffectStatus | None = None,
        key_prefix: str | None = None,
    ) -> list[Effect]:
        """All rows, oldest first, optionally only one automation's, status's or key prefix's."""
        statement = select(effects_table).order_by(effects_table.c.created_at, effects_table.c.key)
        if automation is not None:
            statement = statement.where(effects_table.c.automation == automation)
        if status is not None:
            statement = statement.where(effects_table.c.status == EffectStatus(status).value)
        if key_prefix is not None:
            escaped = key_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            statement = statement.where(effects_table.c.key.like(f"{escaped}%", escape="\\"))
        with self.engine.connect() as conn:
            return [_as_effect(row) for row in conn.execute(statement)]

    def remote_id_via(self, logical_key: str, via: str) -> str | None:
        """The remote id of the done effect `<logical_key>:<route name>` that destination `via`
        took (a message's id on one channel: where its follow-up replies); None if none did."""
        found = [
            effect
            for effect in self.effects(key_prefix=f"{logical_key}:", status=EffectStatus.DONE)
            if effect.via == via and effect.remote_id and _logical_key(effect) == logical_key
        ]
        return found[-1].remote_id if found else None

    def close(self) -> None:
        """Close the pooled database connections."""
        self._engine.dispose()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def is_held(
        self,
        effect: Effect,
        now: datetime,
        holder_is_dead: Callable[[Effect], bool] | None = None,
    ) -> bool:
        """True while a pending claim belongs to someone: its lease runs and its holder is not
        known to be gone."""
        if effect.status != EffectStatus.PENDING or now - effect.updated_at > self.lease:
            return False
        return not (holder_is_dead is not None and holder_is_dead(effect))

    def _can_take_over(
        self,
        current: Effect,
        now: datetime,
        *,
        force: bool,
        revive: bool,
        holder_is_dead: Callable[[Effect], bool] | None,
    ) -> bool:
        if current.status == EffectStatus.FAILED:
            return True
        if current.status == EffectStatus.PENDING:
            return not self.is_held(current, now, holder_is_dead)
        if current.status in (EffectStatus.DEAD, EffectStatus.IN_DOUBT):
            return force or revive
        return force

    def _finish(self, key: str, **values: Any) -> Effect:
        statement = (
            update(effects_table)
            .where(effects_table.c.key == key)
            .values(updated_at=_now(), **values)
        )
        with self.engine.begin() as conn:
            if conn.execute(statement).rowcount == 0:
                raise KeyError(key)
            row = conn.execute(select(effects_table).where(effects_table.c.key == key)).one()
        return _as_effect(row)


def _logical_key(effect: Effect) -> str:
    """A message effect's key without its route's name (`message_intent` appends it)."""
    links = json.loads(effect.route) if effect.route else []
    suffix = f":{links[0]}" if links else f":{effect.key.rsplit(':', 1)[-1]}"
    return effect.key.removesuffix(suffix)


def _now() -> datetime:
    return datetime.now(UTC)


def clean_error(error: str) -> str:
    """`error` masked, then cut to `ERROR_MAX_CHARS`: what the ledger's tables store."""
    # Mask before truncating: a cut could leave half a secret that no longer matches a pattern.
    masked = mask_text(str(error))
    if len(masked) <= ERROR_MAX_CHARS:
        return masked
    return masked[: ERROR_MAX_CHARS - 1] + "…"


def _detail_values(details: Mapping[str, Any] | None) -> dict[str, Any]:
    allowed = {"route", "policy", "payload", "rule_id", "policy_version"}
    unknown = set(details or {}) - allowed
    if unknown:
        raise ValueError(f"not a claim detail: {sorted(unknown)}")
    return dict(details or {})


def _as_row(effect: Effect) -> dict[str, Any]:
    return {
        "key": effect.key,
        "automation": effect.automation,
        "flow_run_id": effect.flow_run_id,
        "kind": effect.kind,
        "target": effect.target,
        "status": effect.status.value,
        "attempts": effect.attempts,
        "created_at": effect.created_at,
        "updated_at": effect.updated_at,
        "remote_id": effect.remote_id,
        "error": effect.error,
        "holder": effect.holder,
        "route": effect.route,
        "policy": effect.policy,
        "via": effect.via,
        "tried": effect.tried,
        "payload": effect.payload,
        "announced_at": effect.announced_at,
        "due_at": effect.due_at,
        "rule_id": effect.rule_id,
        "policy_version": effect.policy_version,
    }


def _as_effect(row: Row[Any]) -> Effect:
    return Effect(
        key=row.key,
        automation=row.automation,
        flow_run_id=row.flow_run_id,
        kind=row.kind,
        target=row.target,
        status=EffectStatus(row.status),
        attempts=row.attempts,
        created_at=row.created_at,
        updated_at=row.updated_at,
        remote_id=row.remote_id,
        error=row.error,
        holder=row.holder,
        route=row.route,
        policy=row.policy,
        via=row.via,
        tried=row.tried,
        payload=row.payload,
        announced_at=row.announced_at,
        due_at=row.due_at,
        rule_id=row.rule_id,
        policy_version=row.policy_version,
    )


# Engines by URL, one per database this process uses: SQLAlchemy keeps compiled statements and
# the dialect's type handling per engine, so an engine per `Ledger` compiled every statement of
# every run again (most of what writing an audit entry cost). `Ledger.close` still closes the
# pooled connections; only the engine object is kept. Bounded: every test may name a new file.
_ENGINE_CACHE_SIZE = 8
_engines: OrderedDict[str, Engine] = OrderedDict()
_engines_lock = threading.Lock()


def _create_engine(url: str) -> Engine:
    parsed = make_url(url)
    in_memory = False
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        in_memory = not database or database == ":memory:" or "mode=memory" in database
        if not in_memory and not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    if in_memory:
        # Each in-memory ledger is its own database: it must not be shared.
        return _new_engine(url)
    with _engines_lock:
        engine = _engines.get(url)
        if engine is not None:
            _engines.move_to_end(url)
            return engine
        engine = _engines[url] = _new_engine(url)
        while len(_engines) > _ENGINE_CACHE_SIZE:
            _, evicted = _engines.popitem(last=False)
            evicted.dispose()
        return engine


def _new_engine(url: str) -> Engine:
    engine = create_engine(make_url(url))
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _set_sqlite_pragmas)
    return engine


def _forget_connections_after_fork() -> None:
    # A forked child must not use the parent's pooled connections (SQLAlchemy's advice for
    # engines that outlive a fork); it opens its own.
    for engine in list(_engines.values()):
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_forget_connections_after_fork)


def _set_sqlite_pragmas(dbapi_connection: sqlite3.Connection, _record: object) -> None:
    cursor = dbapi_connection.cursor()
    try:
        # busy_timeout first: switching to WAL needs a lock another process may briefly hold.
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        # WAL lets readers run while one writer commits, so concurrent runs wait less.
        cursor.execute("PRAGMA journal_mode = WAL")
    finally:
        cursor.close()


def _create_schema(engine: Engine) -> None:
    # Two processes opening a fresh database can both see a table missing; the loser's CREATE
    # fails, and its next pass finds everything in place.
    for attempt in range(3):
        try:
            metadata.create_all(engine)
            _upgrade_schema(engine)
            return
        except DatabaseError:
            if attempt == 2:
                raise


def _upgrade_schema(engine: Engine) -> None:
    """Add the columns a ledger created by an older moltbot lacks (all nullable)."""
    add_missing_columns(engine, effects_table, _ADDED_COLUMNS)


def add_missing_columns(engine: Engine, table: Table, names: tuple[str, ...]) -> None:
    """Add the nullable columns `names` of `table` that a table created by an older moltbot
    lacks (its rows read them as None)."""
    preparer = engine.dialect.identifier_preparer
    for attempt in range(3):
        present = {column["name"] for column in inspect(engine).get_columns(table.name)}
        missing = [name for name in names if name not in present]
        if not missing:
            return
        try:
            with engine.begin() as conn:
                for name in missing:
                    kind = table.c[name].type.compile(dialect=engine.dialect)
                    conn.execute(
                        text(
                            f"ALTER TABLE {preparer.quote(table.name)} "
                            f"ADD COLUMN {preparer.quote(name)} {kind}"
                        )
                    )
            return
        except DatabaseError:
            # Two processes may both find a column missing; the loser's ALTER fails and its
            # next look finds the column in place.
            if attempt == 2:
                raise


def ensure_table(engine: Engine, table: Table) -> None:
    """Create `table` (of `metadata`) unless it exists.

    The ledger creates every table of `metadata` on first use, but a Ledger opened before a
    module defining another table was imported has already done so without it.
    """
    for attempt in range(3):
        try:
            table.create(engine, checkfirst=True)
            return
        except DatabaseError:
            # Two processes may both find the table missing; the loser's CREATE fails.
            if attempt == 2:
                raise


def serialize_sqlite_writes(engine: Engine) -> None:
    """Make this process's writers to a SQLite database take turns on a lock (once per engine;
    nothing on another backend).

    SQLite admits one writer at a time. Another one waits in SQLite's busy handler, which
    sleeps between its tries, up to 100 ms each: it may start long after the lock came free,
    and under steady writes a waiter can lose round after round until the busy timeout ends it
    with "database is locked". Here a connection's first write waits on an in-process lock
    instead, handed on as soon as the writing connection returns to the pool (after its
    commit or rollback). Writers in other processes still meet the busy handler; a write
    waiting longer than the busy timeout goes ahead and leaves the outcome to SQLite.
    """
    if engine.dialect.name != "sqlite" or engine in _WRITE_GATES:
        return
    gate = _WriteGate(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)
    _WRITE_GATES[engine] = gate

    def before_cursor_execute(conn: Connection, _cursor: Any, statement: str, *_: Any) -> None:
        if "moltbot_gated" not in conn.info and statement.lstrip()[:7].upper().startswith(_WRITES):
            conn.info["moltbot_gated"] = gate.enter()

    def released(_dbapi_connection: Any, record: Any, *_: Any) -> None:
        if record.info.pop("moltbot_gated", False):
            gate.leave()

    event.listen(engine, "before_cursor_execute", before_cursor_execute)
    event.listen(engine, "checkin", released)
    event.listen(engine, "invalidate", released)


# Statements that take SQLite's write lock (pysqlite opens a transaction before the DML ones).
_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "ALTER", "DROP")
_WRITE_GATES: weakref.WeakKeyDictionary[Engine, _WriteGate] = weakref.WeakKeyDictionary()


class _WriteGate:
    """A lock for one writer thread at a time; the thread holding it may enter again (another
    connection of its own), and any thread may hand it on (a connection is returned to the pool
    by whoever closes it)."""

    def __init__(self, *, timeout: float) -> None:
        self._timeout = timeout
        self._changed = threading.Condition()
        self._holder: int | None = None
        self._count = 0
        self.waiting = 0
        """How many threads wait for the gate now."""

    def enter(self) -> bool:
        """Wait for the gate and hold it; False (not held) after waiting `timeout`."""
        me = threading.get_ident()
        with self._changed:
            self.waiting += 1
            try:
                free = self._changed.wait_for(
                    lambda: self._holder in (None, me), timeout=self._timeout
                )
            finally:
                self.waiting -= 1
            if not free:
                return False
            self._holder = me
            self._count += 1
            return True

    def leave(self) -> None:
        """Give up one hold; the last one frees the gate for the next writer."""
        with self._changed:
            self._count -= 1
            if self._count <= 0:
                self._holder = None
                self._count = 0
                self._changed.notify()

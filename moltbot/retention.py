"""Retention: what `moltbot prune` removes from moltbot's state, store by store, and keeps."""

from __future__ import annotations

import json
import os
import stat
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy import Connection, delete, func, select, type_coerce

from moltbot.config.settings import Settings
from moltbot.errors import InputError
from moltbot.state.audit import AuditTrail
from moltbot.state.escalations import EscalationStatus, EscalationStore, escalations_table
from moltbot.state.inbox import InboxStatus, inbox_table
from moltbot.state.item_state import item_states_table
from moltbot.state.ledger import EffectStatus, Ledger, UTCDateTime, effects_table, ensure_table
from moltbot.state.payments import payments_table
from moltbot.state.watermarks import watermarks_table

# Keys per DELETE statement: well under SQLite's and PostgreSQL's bind-parameter limits.
_DELETE_BATCH = 500

FINISHED_INBOX = (InboxStatus.DISPATCHED, InboxStatus.IGNORED)
"""Inbox entries that are settled: their runs were created (or nothing was routed)."""


class RetentionStore(ABC):
    """One kind of moltbot state that `moltbot prune` ages out.

    `count` and `prune` take the same cut-off and agree: `prune(cutoff)` removes exactly what
    `count(cutoff)` counted, unless the state changed in between. Each store decides what is
    finished and safe to remove; `kept` says how much older state it keeps because it is still
    needed (0 by default).

    Attributes:
        name: the store's id in `--json` output.
        labels: what the human output calls it, by locale (``en`` is the fallback).
    """

    name: ClassVar[str]
    labels: ClassVar[Mapping[str, str]] = {}

    @abstractmethod
    def count(self, cutoff: datetime) -> int:
        """How many items `prune(cutoff)` would remove (nothing is changed)."""

    @abstractmethod
    def prune(self, cutoff: datetime) -> int:
        """Remove the finished items older than `cutoff`; return how many were removed."""

    def kept(self, cutoff: datetime) -> int:
        """How many items older than `cutoff` stay because they are still needed."""
        return 0


@dataclass(frozen=True)
class PruneResult:
    """What one store removed (or would remove, in a dry run) and kept."""

    store: str
    labels: Mapping[str, str]
    count: int
    kept: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (the labels are for the human output only)."""
        return {"store": self.store, "count": self.count, "kept": self.kept}


def prune_stores(
    stores: Sequence[RetentionStore], cutoff: datetime, *, dry_run: bool
) -> list[PruneResult]:
    """Prune every store (or only count, with `dry_run`), in order.

    Args:
        stores: the stores, e.g. `retention_stores(...)`.
        cutoff: remove what finished before this moment (aware).
        dry_run: count only; remove nothing.
    """
    if cutoff.tzinfo is None:
        raise ValueError("the cut-off must be timezone-aware")
    results = []
    for store in stores:
        kept = store.kept(cutoff)
        count = store.count(cutoff) if dry_run else store.prune(cutoff)
        results.append(PruneResult(store.name, dict(store.labels), count, kept))
    return results


def retention_stores(ledger: Ledger, settings: Settings) -> list[RetentionStore]:
    """The stores moltbot prunes: finished ledger effects, settled webhook inbox entries, outbox
    files, the oldest audit entries, old payment events, settled escalations and shadow mode's
    run inputs past their limit. Watermarks, item states and channel circuits are current state
    and are never pruned."""
    now = datetime.now(UTC)
    return [
        FinishedEffects(ledger),
        FinishedInboxEntries(ledger),
        OutboxFiles(settings.outbox_dir),
        AuditRows(ledger),
        OldPaymentEvents(ledger, now=now),
        SettledEscalations(ledger),
        ShadowInputs(ledger, now=now, keep_days=settings.shadow_retention_days),
    ]


class ShadowInputs(RetentionStore):
    """Run inputs kept for `moltbot shadow`: those recorded before the cut-off, and always
    those older than `shadow_retention_days` (they may hold personal data, so they do not
    outlive that limit whatever age a prune names)."""

    name = "shadow_inputs"
    labels: ClassVar[Mapping[str, str]] = {
        "en": "shadow mode: recorded run inputs",
        "ko": "섀도 모드: 기록된 실행 입력",
    }

    def __init__(self, ledger: Ledger, *, now: datetime, keep_days: int) -> None:
        from moltbot.state.recorded_inputs import RecordedInputs

        self._store = RecordedInputs(ledger)
        self._limit = now - timedelta(days=keep_days)

    def count(self, cutoff: datetime) -> int:
        """Inputs recorded before `cutoff` or past the retention limit."""
        return self._store.count_before(max(cutoff, self._limit))

    def prune(self, cutoff: datetime) -> int:
        """Delete them."""
        return self._store.delete_before(max(cutoff, self._limit))


PAYMENT_HISTORY_KEPT = timedelta(days=3)
"""payment-failures counts a customer's failures over a day and summarises yesterday."""


class OldPaymentEvents(RetentionStore):
    """payment-failures' recorded events (masked, customers as keyed hashes) older than the
    cut-off by when they happened, but never the last `PAYMENT_HISTORY_KEPT`, which the
    automation still reads: those are kept. (error-spike deletes its own counts past its
    baseline on every run.)"""

    name = "payment_events"
    labels: ClassVar[Mapping[str, str]] = {
        "en": "payment-failures: payment events",
        "ko": "payment-failures: 결제 이벤트",
    }

    def __init__(self, ledger: Ledger, *, now: datetime) -> None:
        self._engine = ledger.engine
        self._floor = now - PAYMENT_HISTORY_KEPT
        ensure_table(self._engine, payments_table)

    def _count(self, *conditions: Any) -> int:
        statement = select(func.count()).select_from(payments_table).where(*conditions)
        with self._engine.connect() as conn:
            return conn.execute(statement).scalar_one()

    def count(self, cutoff: datetime) -> int:
        """Events that happened before `cutoff` and before the kept history."""
        return self._count(payments_table.c.occurred_at < min(cutoff, self._floor))

    def kept(self, cutoff: datetime) -> int:
        """Events before `cutoff` kept because the automation still reads them."""
        if cutoff <= self._floor:
            return 0
        column = payments_table.c.occurred_at
        return self._count(column >= self._floor, column < cutoff)

    def prune(self, cutoff: datetime) -> int:
        """Delete the events before `cutoff` and before the kept history."""
        limit = min(cutoff, self._floor)
        with self._engine.begin() as conn:
            return conn.execute(
                delete(payments_table).where(payments_table.c.occurred_at < limit)
            ).rowcount


class SettledEscalations(RetentionStore):
    """Escalations acknowledged or ended (their route ran out) before the cut-off; open ones
    are still climbing their route and stay, however old."""

    name = "escalations"
    labels: ClassVar[Mapping[str, str]] = {
        "en": "escalations: acknowledged or ended",
        "ko": "에스컬레이션: 확인됐거나 끝남",
    }

    def __init__(self, ledger: Ledger) -> None:
        self._engine = EscalationStore(ledger).engine

    def _settled_before(self, cutoff: datetime) -> Any:
        table = escalations_table
        return (table.c.status != EscalationStatus.OPEN.value) & (table.c.updated_at < cutoff)

    def count(self, cutoff: datetime) -> int:
        """Settled escalations last changed before `cutoff`."""
        statement = (
            select(func.count()).select_from(escalations_table).where(self._settled_before(cutoff))
        )
        with self._engine.connect() as conn:
            return conn.execute(statement).scalar_one()

    def prune(self, cutoff: datetime) -> int:
        """Delete them."""
        with self._engine.begin() as conn:
            return conn.execute(
                delete(escalations_table).where(self._settled_before(cutoff))
            ).rowcount


class AuditRows(RetentionStore):
    """The oldest audit entries: a prefix of the chain, anchored so `moltbot audit --verify`
    keeps passing (the anchor keeps the last removed row's hash)."""

    name = "audit"
    labels: ClassVar[Mapping[str, str]] = {
        "en": "audit trail: entries",
        "ko": "감사 기록: 항목",
    }

    def __init__(self, ledger: Ledger) -> None:
        self._trail = AuditTrail(ledger)

    def count(self, cutoff: datetime) -> int:
        """How many of the oldest entries were written before `cutoff`."""
        return self._trail.count_before(cutoff)

    def prune(self, cutoff: datetime) -> int:
        """Remove them and move the chain's anchor past them."""
        return self._trail.prune_before(cutoff)


class FinishedEffects(RetentionStore):
    """Done effects whose keys no run will claim again.

    Only `done` rows go, and not every one: a done row is the guard that keeps its key from
    being performed twice, so it stays while a run can still rebuild that key:

    - its automation holds a watermark window it has not committed (the next run re-plans
      exactly that window, with the same keys);
    - its automation keeps item states and has not written them since the row was done (a run
      that crashed before saving them recomputes the same transitions, hence the same keys).
      A run stamps the states it writes with its start, before its own effects are done, so
      the last alerting run's rows stay until a later run changes some state;
    - another row of the same logical item (the key without its destination) is pending,
      failed, dead or in doubt (a re-run or replay of that item skips the destinations
      already done).

    Rows that are pending, failed, dead or in doubt are never removed: they await a run or a
    person.
    """

    name = "effects"
    labels: ClassVar[Mapping[str, str]] = {
        "en": "ledger: finished effects",
        "ko": "원장: 끝난 작업",
    }

    def __init__(self, ledger: Ledger) -> None:
        self._engine = ledger.engine
        for table in (watermarks_table, item_states_table):
            ensure_table(self._engine, table)

    def count(self, cutoff: datetime) -> int:
        """How many done rows `prune` would remove."""
        return len(self._removable(cutoff)[0])

    def kept(self, cutoff: datetime) -> int:
        """Rows older than `cutoff` that stay: unfinished ones and done ones still guarding."""
        return self._removable(cutoff)[1]

    def prune(self, cutoff: datetime) -> int:
        """Delete the removable done rows (each still done and old when it is deleted)."""
        keys, _ = self._removable(cutoff)
        table = effects_table
        removed = 0
        with self._engine.begin() as conn:
            for start in range(0, len(keys), _DELETE_BATCH):
                # Re-checked in the statement: a row a run took over since it was read stays.
                removed += conn.execute(
                    delete(table).where(
                        table.c.key.in_(keys[start : start + _DELETE_BATCH]),
                        table.c.status == EffectStatus.DONE.value,
                        table.c.updated_at < cutoff,
                    )
                ).rowcount
        return removed

    def _removable(self, cutoff: datetime) -> tuple[list[str], int]:
        """The keys of the removable rows, and how many rows older than `cutoff` stay."""
        table = effects_table
        with self._engine.connect() as conn:
            old = conn.execute(
                select(table.c.key, table.c.automation, table.c.status, table.c.updated_at,
                       table.c.route)
                .where(table.c.updated_at < cutoff)
                .order_by(table.c.updated_at, table.c.key)
            ).all()  # fmt: skip
            unsettled = conn.execute(
                select(table.c.key, table.c.route).where(table.c.status != EffectStatus.DONE.value)
            ).all()
            holding = set(
                conn.execute(
                    select(watermarks_table.c.automation)
                    .where(watermarks_table.c.pending.is_not(None))
                    .distinct()
                ).scalars()
            )
            states_written = _last_state_writes(conn)
        open_items = {logical_item(key, route) for key, route in unsettled}
        removable = []
        for row in old:
            if row.status != EffectStatus.DONE.value or row.automation in holding:
                continue
            written = states_written.get(row.automation)
            if written is not None and row.updated_at > written:
                continue
            if logical_item(row.key, row.route) in open_items:
                continue
            removable.append(row.key)
        return removable, len(old) - len(removable)


def logical_item(key: str, route: str | None) -> str:
    """The logical item of a ledger key: the key without its destination.

    A delivery's key is the message's key plus ``:`` and its route's first link (which may hold
    a ``:`` itself, ``sheets:<block>``); other keys end in ``:<destination>`` too
    (``…:notion``, ``…:jira:<project>`` drops the project).
    """
    links = json.loads(route) if route else []
    if links and key.endswith(f":{links[0]}"):
        return key[: -len(links[0]) - 1]
    return key.rpartition(":")[0]


def _last_state_writes(conn: Connection) -> dict[str, datetime]:
    """When each automation last wrote its item states."""
    table = item_states_table
    # max() loses the column type on SQLite: coerce it back so it is read as an aware datetime.
    latest = type_coerce(func.max(table.c.updated_at), UTCDateTime())
    rows = conn.execute(select(table.c.automation, latest).group_by(table.c.automation))
    return {automation: written for automation, written in rows if written is not None}


class FinishedInboxEntries(RetentionStore):
    """Webhook inbox entries that are dispatched or ignored; pending and failed ones stay.

    A sender's redelivery of a pruned event is accepted as new: the cut-off must be longer than
    any sender redelivers for.
    """

    name = "webhook_inbox"
    labels: ClassVar[Mapping[str, str]] = {
        "en": "webhook inbox: settled entries",
        "ko": "웹훅 수신함: 처리된 항목",
    }

    def __init__(self, ledger: Ledger) -> None:
        self._engine = ledger.engine
        ensure_table(self._engine, inbox_table)

    def count(self, cutoff: datetime) -> int:
        """How many settled entries last changed before `cutoff`."""
        return self._count(cutoff, FINISHED_INBOX)

    def kept(self, cutoff: datetime) -> int:
        """Pending and failed entries older than `cutoff` (a dispatcher or a person acts)."""
        return self._count(cutoff, tuple(set(InboxStatus) - set(FINISHED_INBOX)))

    def prune(self, cutoff: datetime) -> int:
        """Delete the settled entries that last changed before `cutoff`."""
        with self._engine.begin() as conn:
            return conn.execute(
                delete(inbox_table).where(*self._old(cutoff, FINISHED_INBOX))
            ).rowcount

    def _count(self, cutoff: datetime, statuses: Iterable[InboxStatus]) -> int:
        statement = (
            select(func.count()).select_from(inbox_table).where(*self._old(cutoff, statuses))
        )
        with self._engine.connect() as conn:
            return int(conn.execute(statement).scalar_one())

    @staticmethod
    def _old(cutoff: datetime, statuses: Iterable[InboxStatus]) -> tuple[Any, ...]:
        return (
            inbox_table.c.status.in_([status.value for status in statuses]),
            inbox_table.c.updated_at < cutoff,
        )


class OutboxFiles(RetentionStore):
    """Files the outbox channel wrote into `<MOLTBOT_HOME>/outbox`, by their modification time.

    Only regular files directly in the folder are removed (never a folder, never through a
    symlink). Outbox channel blocks saved with a folder of their own are not touched.
    """

    name = "outbox_files"
    labels: ClassVar[Mapping[str, str]] = {"en": "outbox folder: files", "ko": "outbox 폴더: 파일"}

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def count(self, cutoff: datetime) -> int:
        """How many files were last modified before `cutoff`."""
        return len(self._old_files(cutoff))

    def prune(self, cutoff: datetime) -> int:
        """Delete the files last modified before `cutoff`."""
        removed = 0
        for path in self._old_files(cutoff):
            try:
                path.unlink()
            except FileNotFoundError:
                continue  # removed meanwhile
            removed += 1
        return removed

    def _old_files(self, cutoff: datetime) -> list[Path]:
        limit = cutoff.timestamp()
        try:
            entries = list(os.scandir(self.folder))
        except FileNotFoundError:
            return []
        old = []
        for entry in entries:
            info = entry.stat(follow_symlinks=False)
            if stat.S_ISREG(info.st_mode) and info.st_mtime < limit:
                old.append(Path(entry.path))
        return sorted(old)


def cutoff_for(older_than: str, *, now: datetime) -> datetime:
    """The moment `--older-than` names: `now` (aware) minus the age (`90d`, `12h`, `2w`).

    Raises:
        InputError: not an age, or one reaching before the calendar's start.
    """
    from moltbot.durations import parse_age

    try:
        return (now - parse_age(older_than, option="--older-than")).astimezone(UTC)
    except OverflowError:
        raise InputError("--older-than reaches back before the year 1") from None

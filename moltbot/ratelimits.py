"""Client-side rate limits per external API and credential, shared by every process in SQL.

Each limit is a token bucket kept as one row of a ``rate_buckets`` table, in the form of the
generic cell rate algorithm (GCRA): the row holds the instant the bucket is full again. Taking a
token is one atomic ``UPDATE … RETURNING`` that moves that instant on by one request's worth of
time and returns it; the caller then sleeps until its request fits into the bucket. Every process
and worker using the same database therefore shares one bucket per API credential, at one
statement per request, without a read-modify-write race. A row is created on first use.

The table lives in the configured ledger database (``MOLTBOT_LEDGER_URL``: PostgreSQL in
production, shared by every host). With the default SQLite ledger it gets a file of its own
beside it, ``<home>/rate-limits.sqlite3``: SQLite has one write lock per file, and a commit per
API request should not queue with the effect claims; and a run refused before its first effect
still leaves no ledger behind.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from requests import PreparedRequest, Response
from requests.adapters import HTTPAdapter
from sqlalchemy import (
    Column,
    Engine,
    Float,
    MetaData,
    String,
    Table,
    case,
    create_engine,
    event,
    insert,
    literal,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from moltbot.config.ratelimits import RateLimits, ServiceRateLimit
from moltbot.config.settings import Settings, get_settings
from moltbot.masking import mask_text
from moltbot.state.ledger import SQLITE_BUSY_TIMEOUT_MS, ensure_table

logger = logging.getLogger("moltbot.ratelimits")

BUCKETS_FILE = "rate-limits.sqlite3"

rate_buckets_table = Table(
    "rate_buckets",
    MetaData(),
    # `<service>:<12 hex digits of the credential's SHA-256>`; the credential itself never.
    Column("bucket", String(100), primary_key=True),
    # When the bucket is full again (seconds since the epoch, on the limiters' clock): a
    # request at `now` may go once `full_at` is at most `burst` requests' worth ahead of it.
    Column("full_at", Float, nullable=False),
)

# Engines by URL: one per bucket database a process uses, so building a client costs no connect.
# Bounded because every test (and `--home`) may name another one.
_ENGINE_CACHE_SIZE = 4
_engines: OrderedDict[str, Engine] = OrderedDict()
_engines_lock = threading.Lock()
# Engines whose ``rate_buckets`` table is known to exist (checking costs a query per client).
_ready_engines: weakref.WeakSet[Engine] = weakref.WeakSet()
# The row may be inserted by another process between our update and insert: a few rounds settle it.
_ROUNDS = 3
# A double holds epoch seconds to about 0.2 µs, and every token taken adds a rounding: waits this
# short are that rounding (and far below network jitter), not a limit.
_NEGLIGIBLE_WAIT = 0.001


def credential_fingerprint(credential: str) -> str:
    """The first 12 hex digits of the credential's SHA-256: a bucket name that reveals nothing."""
    return hashlib.sha256(credential.encode()).hexdigest()[:12]


def buckets_url(settings: Settings) -> str:
    """Where the buckets live: the configured ledger's database, else a SQLite file in home."""
    if settings.ledger_url:
        return settings.ledger_url
    return f"sqlite:///{(settings.home / BUCKETS_FILE).resolve()}"


class RateLimiter:
    """Takes tokens from the shared buckets, sleeping until each request may go.

    Args:
        engine: the buckets' database (its ``rate_buckets`` table is created if missing).
        limits: the configured limits (``[rate_limits]``).
        clock: seconds since the epoch, the same for every process sharing the buckets.
        sleep: how to wait; tests pass one that moves their clock instead.
    """

    def __init__(
        self,
        engine: Engine,
        limits: RateLimits,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.limits = limits
        self._engine = engine
        self._clock = clock
        self._sleep = sleep
        if engine not in _ready_engines:
            ensure_table(engine, rate_buckets_table)
            _ready_engines.add(engine)

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> RateLimiter:
        """The limiter on the configured buckets (`buckets_url`) and limits, in real time."""
        settings = settings or get_settings()
        return cls(_engine_for(buckets_url(settings)), settings.rate_limits)

    def gate(self, service: str, credential: str) -> RateGate | None:
        """The gate for one credential of `service`; None when that service is not limited.

        Args:
            service: a `RateLimits` field: notion, sheets_read, sheets_write, slack or jira.
            credential: what the service counts requests by (token, webhook URL, account);
                only its fingerprint is stored.
        """
        limit = self.limits.for_service(service)
        if limit is None:
            return None
        return RateGate(self, f"{service}:{credential_fingerprint(credential)}", limit)

    def acquire(self, bucket: str, limit: ServiceRateLimit) -> float:
        """Take one token from `bucket`, sleeping until the request fits; the seconds slept.

        When the database cannot be reached the request goes unlimited (the service's 429
        and the retry layer still hold it back), with a warning: a limiter must not stop a run
        the service itself would accept.
        """
        interval = 1.0 / limit.rate
        now = self._clock()
        try:
            full_at = self._reserve(bucket, now, interval)
        except SQLAlchemyError as exc:
            logger.warning(
                "rate limit %s not applied: its database is unreachable (%s)",
                bucket,
                mask_text(type(exc).__name__),
            )
            return 0.0
        # The bucket holds `burst` requests' worth of time: a request may go once the bucket,
        # counting it, is no fuller than that.
        wait = full_at - limit.burst * interval - now
        if wait < _NEGLIGIBLE_WAIT:
            return 0.0
        logger.debug("rate limit %s: waiting %.3f s", bucket, wait)
        self._sleep(wait)
        return wait

    def _reserve(self, bucket: str, now: float, interval: float) -> float:
        """Move the bucket's `full_at` on by one request (from now at the earliest); return it."""
        table = rate_buckets_table
        start = literal(now, Float)
        moved = (
            update(table)
            .where(table.c.bucket == bucket)
            .values(
                full_at=case((table.c.full_at > start, table.c.full_at), else_=start) + interval
            )
            .returning(table.c.full_at)
        )
        for _ in range(_ROUNDS):
            with self._engine.begin() as conn:
                full_at = conn.execute(moved).scalar_one_or_none()
            if full_at is not None:
                return float(full_at)
            try:
                with self._engine.begin() as conn:
                    conn.execute(insert(table).values(bucket=bucket, full_at=now + interval))
                return now + interval
            except IntegrityError:
                # Another process created the row first: take the token from it.
                continue
        raise RuntimeError(f"rate bucket {bucket} could not be created or updated")


@dataclass(frozen=True)
class RateGate:
    """One credential's bucket: `wait()` before each request to that API.

    Attributes:
        limiter: the limiter holding the buckets.
        bucket: the bucket's name (``notion:1a2b3c4d5e6f``).
        limit: the limit in force.
    """

    limiter: RateLimiter
    bucket: str
    limit: ServiceRateLimit

    def wait(self) -> float:
        """Take a token, sleeping until the request may go; the seconds slept."""
        return self.limiter.acquire(self.bucket, self.limit)

    def httpx_hook(self, request: httpx.Request) -> None:
        """An httpx ``request`` event hook (every request the client sends waits its turn)."""
        self.wait()


def rate_gate(service: str, credential: str, limiter: RateLimiter | None = None) -> RateGate | None:
    """The gate for `credential` of `service` from `limiter` (default: the configured one).

    Returns None, without opening any database, when limits are off for the service, and
    (with a warning) when the buckets' database cannot be opened.
    """
    if limiter is None:
        settings = get_settings()
        if settings.rate_limits.for_service(service) is None:
            return None
        try:
            limiter = RateLimiter.from_settings(settings)
        except SQLAlchemyError as exc:
            logger.warning(
                "rate limit %s not applied: its database is unreachable (%s)",
                service,
                mask_text(type(exc).__name__),
            )
            return None
    return limiter.gate(service, credential)


class RateLimitedAdapter(HTTPAdapter):
    """A requests transport adapter that waits at `gate` before sending each request."""

    def __init__(self, gate: RateGate, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gate = gate

    def send(self, request: PreparedRequest, *args: Any, **kwargs: Any) -> Response:
        """Wait for a token, then send as the plain adapter does."""
        self.gate.wait()
        return super().send(request, *args, **kwargs)


def _engine_for(url: str) -> Engine:
    with _engines_lock:
        engine = _engines.get(url)
        if engine is not None:
            _engines.move_to_end(url)
            return engine
        engine = _create_engine(url)
        _engines[url] = engine
        while len(_engines) > _ENGINE_CACHE_SIZE:
            _, evicted = _engines.popitem(last=False)
            evicted.dispose()
        return engine


def _create_engine(url: str) -> Engine:
    # As the ledger does: a SQLite file gets its folder, WAL (readers never wait for the one
    # writer) and a busy timeout (writers from other processes queue instead of failing).
    parsed = make_url(url)
    database = parsed.database or ":memory:"
    if parsed.get_backend_name() == "sqlite" and not database.startswith((":memory:", "file:")):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(parsed)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _set_sqlite_pragmas)
    return engine


def _set_sqlite_pragmas(dbapi_connection: Any, _record: object) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
    finally:
        cursor.close()

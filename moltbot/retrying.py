"""Retrying calls to external services: backoff with jitter that honours `Retry-After`."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TypeVar

from moltbot.config.settings import Settings, get_settings
from moltbot.errors import ServiceError

T = TypeVar("T")

logger = logging.getLogger("moltbot.retrying")

# The wait between attempts of every adapter that is not handed one: `time.sleep`, except inside
# `recorded_sleeps` (tests see each wait, a `Retry-After` included, and wait for none).
_SLEEP: ContextVar[Callable[[float], None]] = ContextVar("moltbot_retry_sleep", default=time.sleep)


@contextmanager
def recorded_sleeps() -> Iterator[list[float]]:
    """Within the block, retries record their waits in the yielded list instead of sleeping.

    Covers every `call_with_retries` without its own `sleep` in this thread and in threads
    started from a copy of its context (Prefect's task runners copy it).
    """
    waits: list[float] = []
    token = _SLEEP.set(waits.append)
    try:
        yield waits
    finally:
        _SLEEP.reset(token)


def retry_sleep(seconds: float) -> None:
    """Wait `seconds` between attempts (recorded instead inside `recorded_sleeps`)."""
    _SLEEP.get()(seconds)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter for transient failures, honouring `Retry-After`."""

    attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 30.0
    retry_after_cap: float = 120.0
    jitter: float = 0.5

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> RetryPolicy:
        """The policy configured by `MOLTBOT_RETRY_*` settings."""
        settings = settings or get_settings()
        return cls(
            attempts=settings.retry_attempts,
            base_delay=settings.retry_base_delay,
            max_delay=settings.retry_max_delay,
            retry_after_cap=settings.retry_after_cap,
        )

    def delay(self, failed_attempt: int, error: ServiceError) -> float | None:
        """Seconds to wait before the next attempt, or None when the error must not be retried."""
        if not error.transient or failed_attempt >= self.attempts:
            return None
        if error.retry_after is not None:
            # The service said when; waiting less just earns another 429.
            return error.retry_after if error.retry_after <= self.retry_after_cap else None
        backoff = min(self.base_delay * 2 ** (failed_attempt - 1), self.max_delay)
        return backoff * (1 + random.uniform(-self.jitter, self.jitter))


def call_with_retries(
    operation: Callable[[], T],
    *,
    classify: Callable[[Exception], ServiceError | None],
    describe: str,
    policy: RetryPolicy | None = None,
    sleep: Callable[[float], None] | None = None,
    before_retry: Callable[[ServiceError], None] | None = None,
) -> T:
    """Run `operation`, retrying the failures `classify` calls transient, and return its result.

    Args:
        operation: the call to make (one HTTP request or one client-library call).
        classify: turns a client library's exception into a `ServiceError` (with the service's
            own message and the block's name); None means "not a service failure", which is
            re-raised untouched because it is a bug.
        describe: what is being done, for the retry log line (``sheets 'ops': read 'Orders'``).
        policy: backoff settings; `RetryPolicy.from_settings()` when None.
        sleep: the wait function; default `retry_sleep` (see `recorded_sleeps`).
        before_retry: called with the failure before each retry, e.g. to check whether a
            create that failed with a 5xx happened after all.

    Raises:
        ServiceError: the last failure, once it is permanent or the attempts are used up.
    """
    policy = policy or RetryPolicy.from_settings()
    attempt = 1
    while True:
        try:
            return operation()
        except Exception as exc:
            failure = classify(exc)
            if failure is None:
                raise
            wait = policy.delay(attempt, failure)
            if wait is None:
                raise failure from exc
            logger.warning(
                "%s: attempt %d failed (%s); retrying in %.1fs", describe, attempt, failure, wait
            )
            (sleep or retry_sleep)(wait)
            attempt += 1
            if before_retry is not None:
                before_retry(failure)


def retry_after_seconds(value: str | None) -> float | None:
    """Parse a `Retry-After` header in seconds (an HTTP date counts as 1 s); None if absent."""
    if value is None or not value.strip():
        return None
    try:
        return max(float(value.strip()), 0.0)
    except ValueError:
        return 1.0

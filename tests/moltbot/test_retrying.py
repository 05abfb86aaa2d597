"""Retrying service calls: transient failures retried with the service's wait, others at once."""

from __future__ import annotations

import pytest

from moltbot.errors import ServiceError
from moltbot.retrying import RetryPolicy, call_with_retries, retry_after_seconds


class Flaky:
    """Fails with the given exceptions in turn, then answers "done"."""

    def __init__(self, *failures: Exception) -> None:
        self.failures = list(failures)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "done"


class StatusError(Exception):
    def __init__(self, status: int, retry_after: float | None = None) -> None:
        super().__init__(f"status {status}")
        self.status = status
        self.retry_after = retry_after


def classify(exc: Exception) -> ServiceError | None:
    if not isinstance(exc, StatusError):
        return None
    transient = exc.status == 429 or exc.status >= 500
    return ServiceError(
        f"block 'x': {exc.status}",
        transient=transient,
        status=exc.status,
        retry_after=exc.retry_after,
    )


POLICY = RetryPolicy(attempts=3, base_delay=0.5, max_delay=4, jitter=0)


def test_transient_failures_are_retried_waiting_what_the_service_asked() -> None:
    waits: list[float] = []
    operation = Flaky(StatusError(429, retry_after=7), StatusError(503))
    result = call_with_retries(
        operation, classify=classify, describe="read", policy=POLICY, sleep=waits.append
    )
    assert (result, operation.calls, waits) == ("done", 3, [7, 1.0])


def test_a_permanent_failure_is_raised_at_once_as_the_service_error() -> None:
    operation = Flaky(StatusError(403))
    with pytest.raises(ServiceError, match="block 'x': 403") as raised:
        call_with_retries(
            operation, classify=classify, describe="read", policy=POLICY, sleep=lambda _: None
        )
    assert operation.calls == 1
    assert isinstance(raised.value.__cause__, StatusError)


def test_attempts_are_bounded() -> None:
    operation = Flaky(*[StatusError(500) for _ in range(5)])
    with pytest.raises(ServiceError, match="500"):
        call_with_retries(
            operation, classify=classify, describe="read", policy=POLICY, sleep=lambda _: None
        )
    assert operation.calls == 3


def test_a_wait_beyond_the_cap_is_not_waited_for() -> None:
    operation = Flaky(StatusError(429, retry_after=3600))
    with pytest.raises(ServiceError):
        call_with_retries(
            operation, classify=classify, describe="read", policy=POLICY, sleep=lambda _: None
        )
    assert operation.calls == 1


def test_unclassified_exceptions_are_bugs_and_propagate_untouched() -> None:
    operation = Flaky(KeyError("oops"))
    with pytest.raises(KeyError):
        call_with_retries(operation, classify=classify, describe="read", policy=POLICY)
    assert operation.calls == 1


def test_before_retry_sees_each_failure_before_the_next_attempt() -> None:
    seen: list[int | None] = []
    operation = Flaky(StatusError(500), StatusError(502))
    call_with_retries(
        operation,
        classify=classify,
        describe="create",
        policy=POLICY,
        sleep=lambda _: None,
        before_retry=lambda failure: seen.append(failure.status),
    )
    assert seen == [500, 502]


@pytest.mark.parametrize(
    ("header", "seconds"),
    [(None, None), ("", None), ("3", 3.0), (" 1.5 ", 1.5), ("-2", 0.0), ("Wed, 21 Oct 2026", 1.0)],
)
def test_retry_after_header(header: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(header) == seconds


@pytest.mark.parametrize(
    ("status", "transient", "maybe_applied"),
    [(400, False, False), (401, False, False), (408, True, False), (429, True, False),
     (500, True, True), (503, True, True)],
)  # fmt: skip
def test_service_error_for_an_http_status(status: int, transient: bool, maybe_applied: bool):
    error = ServiceError.for_status("block 'x': answered", status, retry_after=2)
    assert (error.transient, error.maybe_applied, error.status, error.retry_after) == (
        transient,
        maybe_applied,
        status,
        2,
    )
    assert str(error) == "block 'x': answered"

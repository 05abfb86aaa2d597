"""The HTTP health-check task: every endpoint checked at once, with bounded parallelism."""

from __future__ import annotations

import asyncio
import concurrent.futures
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import httpx
from prefect import task
from prefect.cache_policies import NO_CACHE

from blocks.http import HttpHeaders
from moltbot.config.monitoring import DEFAULT_MAX_PARALLEL, ServiceCheck

FailureReason = Literal["timeout", "refused", "tls", "dns", "closed", "connect", "status", "text"]
"""Why a check failed: no answer in time, connection refused, a TLS error, an unknown host, the
connection closed without an answer, another connection error, an unexpected status, the body
lacks the expected text. Never the body or a header: only these words reach messages."""

# A body is read only to look for the expected text, and no further than this: a health page
# that streams without end must not hold the check (or memory).
MAX_BODY_BYTES = 1024 * 1024


@dataclass(frozen=True)
class CheckResult:
    """What checking one service found.

    Attributes:
        service: the service's name.
        ok: the answer came in time, with an expected status (and the expected text).
        status_code: the status answered; None without an answer.
        latency_ms: from sending the request to the end of the answer (headers, and the body
            when it is searched); None without an answer.
        reason: why the check failed; None when `ok`.
    """

    service: str
    ok: bool
    status_code: int | None
    latency_ms: float | None
    reason: FailureReason | None = None


LATENCY_CLOCK: Callable[[], float] = time.perf_counter
"""The clock a flow's checks measure latency with (a test of a whole flow run replaces it)."""


@task(name="check-services", cache_policy=NO_CACHE)
def check_services(
    services: Mapping[str, ServiceCheck],
    header_blocks: Mapping[str, HttpHeaders] | None = None,
    *,
    max_parallel: int = DEFAULT_MAX_PARALLEL,
    clock: Callable[[], float] | None = None,
) -> list[CheckResult]:
    """Check every service once, at most `max_parallel` at a time; results in `services` order.

    The checks run concurrently on one event loop, so a hundred endpoints take about as long as
    the slowest of them (when `max_parallel` covers them), not the sum. Redirects are not
    followed: a secret header must not travel to whatever host a redirect names (list 301 in
    `expected_status` when that is the healthy answer).

    Args:
        services: service name -> how it is checked.
        header_blocks: the loaded `HttpHeaders` blocks, by block name, that services name in
            `headers_block`; their values are unwrapped only to build the requests.
        max_parallel: checks in flight at once.
        clock: seconds as a float, read before and after each request (latency); tests give
            a settable one.

    Raises:
        KeyError: a service names a headers block not given (a caller bug).
    """
    blocks = header_blocks or {}
    named = {spec.headers_block for spec in services.values() if spec.headers_block}
    missing = sorted(named - set(blocks))
    if missing:
        raise KeyError(f"headers blocks not given: {', '.join(missing)}")
    values = {block: blocks[block].header_values() for block in named}
    headers = {
        name: values[spec.headers_block] if spec.headers_block else {}
        for name, spec in services.items()
    }
    return run_checks(services, headers, max_parallel=max_parallel, clock=clock or LATENCY_CLOCK)


def run_checks(
    services: Mapping[str, ServiceCheck],
    headers: Mapping[str, Mapping[str, str]],
    *,
    max_parallel: int = DEFAULT_MAX_PARALLEL,
    clock: Callable[[], float] = time.perf_counter,
) -> list[CheckResult]:
    """`check_services` without Prefect: the headers already unwrapped, per service."""
    if max_parallel < 1:
        raise ValueError(f"max_parallel must be at least 1, got {max_parallel}")
    checks = _check_all(services, headers, max_parallel=max_parallel, clock=clock)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(checks)
    # Called from inside an event loop (an async caller): run on a loop of our own.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, checks).result()


async def _check_all(
    services: Mapping[str, ServiceCheck],
    headers: Mapping[str, Mapping[str, str]],
    *,
    max_parallel: int,
    clock: Callable[[], float],
) -> list[CheckResult]:
    gate = asyncio.Semaphore(max_parallel)
    limits = httpx.Limits(max_connections=max_parallel, max_keepalive_connections=max_parallel)
    # Per-request timeouts come from each service; the pool wait is bounded by the semaphore.
    async with httpx.AsyncClient(limits=limits, follow_redirects=False, timeout=None) as client:

        async def one(name: str, spec: ServiceCheck) -> CheckResult:
            async with gate:
                return await check_one(client, name, spec, headers.get(name, {}), clock=clock)

        return list(await asyncio.gather(*(one(name, spec) for name, spec in services.items())))


async def check_one(
    client: httpx.AsyncClient,
    name: str,
    spec: ServiceCheck,
    headers: Mapping[str, str],
    *,
    clock: Callable[[], float] = time.perf_counter,
) -> CheckResult:
    """Check one service: one request, its status, and the body's text when `contains` is set.

    The whole check, body included, must end within `spec.timeout_seconds`.
    """
    started = clock()
    status: int | None = None
    try:
        async with asyncio.timeout(spec.timeout_seconds):
            request = client.build_request(
                spec.method,
                spec.url,
                headers=dict(headers),
                content=b"" if spec.method == "POST" else None,
                timeout=httpx.Timeout(spec.timeout_seconds),
            )
            response = await client.send(request, stream=True)
            try:
                status = response.status_code
                found = (
                    await _body_contains(response, spec.contains)
                    if spec.contains is not None and status in spec.expected_status
                    else True
                )
            finally:
                await response.aclose()
    except (TimeoutError, httpx.TimeoutException):
        return CheckResult(name, False, status, None, "timeout")
    except httpx.HTTPError as exc:
        return CheckResult(name, False, status, None, _transport_reason(exc))
    latency_ms = round((clock() - started) * 1000.0, 1)
    if status not in spec.expected_status:
        return CheckResult(name, False, status, latency_ms, "status")
    if not found:
        return CheckResult(name, False, status, latency_ms, "text")
    return CheckResult(name, True, status, latency_ms)


async def _body_contains(response: httpx.Response, text: str) -> bool:
    """Whether the body's first `MAX_BODY_BYTES` contain `text` (decoded as the answer says)."""
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) >= MAX_BODY_BYTES:
            break
    return text in bytes(body[:MAX_BODY_BYTES]).decode(response.encoding or "utf-8", "replace")


def _transport_reason(exc: httpx.HTTPError) -> FailureReason:
    """A transport failure in one word: the exception's text is never shown (it may hold a
    URL with a token, or what the server sent)."""
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
        return "closed"
    if isinstance(exc, httpx.ConnectError):
        cause: BaseException | None = exc
        while cause is not None:
            if isinstance(cause, ssl.SSLError):
                return "tls"
            if isinstance(cause, ConnectionRefusedError):
                return "refused"
            cause = cause.__cause__ or cause.__context__
        text = str(exc).lower()
        if "ssl" in text or "certificate" in text:
            return "tls"
        if "refused" in text:
            return "refused"
        if "name or service not known" in text or "nodename nor servname" in text:
            return "dns"
        if "getaddrinfo" in text or "name resolution" in text:
            return "dns"
    return "connect"

"""The HTTP check task against the sandbox's targets: reasons, latency, headers, parallelism."""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest

from blocks.http import HttpHeaders
from flows.service_health.plan import classify
from moltbot.config.monitoring import ServiceCheck
from moltbot.masking import mask_text
from moltbot.sandbox import Sandbox
from tasks.http_checks import CheckResult, check_services, run_checks
from tests.e2e.servers import HANG_GUARD_SECONDS


class Clock:
    """One clock for the targets' delays and the checks: a slow answer moves it on."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    async def sleep(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


def target(sandbox: Sandbox, name: str, **keys: object) -> ServiceCheck:
    return ServiceCheck(url=f"{sandbox.base_url}/targets/{name}", **keys)


def check(services: dict[str, ServiceCheck], **keys: object) -> dict[str, CheckResult]:
    return {result.service: result for result in run_checks(services, {}, **keys)}


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_each_failure_has_its_reason_and_never_the_body(sandbox: Sandbox) -> None:
    targets = sandbox.state.targets
    targets.set("down", "down", body="secret stack trace")
    targets.set("drop", "drop")
    targets.set("teapot", "up", status=418)
    services = {
        "up": target(sandbox, "up"),
        "down": target(sandbox, "down"),
        "drop": target(sandbox, "drop"),
        "text": target(sandbox, "up", contains="healthy"),
        "teapot": target(sandbox, "teapot", expected_status=[200, 418]),
        "refused": ServiceCheck(url=f"http://127.0.0.1:{closed_port()}/health"),
        # The sandbox speaks plain HTTP: a TLS handshake with it fails.
        "tls": ServiceCheck(url=f"https://127.0.0.1:{sandbox.port}/targets/up"),
    }

    results = check(services)

    assert {name: (r.ok, r.status_code, r.reason) for name, r in results.items()} == {
        "up": (True, 200, None),
        "down": (False, 503, "status"),
        "drop": (False, None, "closed"),
        "text": (False, 200, "text"),
        "teapot": (True, 418, None),
        "refused": (False, None, "refused"),
        "tls": (False, None, "tls"),
    }
    assert "secret stack trace" not in repr(results)


def test_a_check_slower_than_its_timeout_is_a_timeout(sandbox: Sandbox) -> None:
    # An hour's delay (released by the sandbox reset after the test): the timeout always wins.
    sandbox.state.targets.set("stuck", "slow", delay_ms=3_600_000)

    [result] = run_checks({"stuck": target(sandbox, "stuck", timeout_seconds=0.2)}, {})

    assert (result.ok, result.status_code, result.latency_ms, result.reason) == (
        False,
        None,
        None,
        "timeout",
    )


def test_latency_comes_from_the_injected_clock_and_classifies_degraded(sandbox: Sandbox) -> None:
    clock = Clock()
    sandbox.state.targets.sleep = clock.sleep
    sandbox.state.targets.set("slow", "slow", delay_ms=400)
    services = {
        "fast": target(sandbox, "fast", latency_ms=200),
        "slow": target(sandbox, "slow", latency_ms=200),
    }

    # One at a time: the shared clock then moves only during the slow one's own check.
    results = check(services, max_parallel=1, clock=clock)

    assert (results["fast"].latency_ms, results["slow"].latency_ms) == (0.0, 400.0)
    assert classify(results["fast"], services["fast"]) == "ok"
    assert classify(results["slow"], services["slow"]) == "slow"


def test_secret_headers_arrive_whole_and_reach_no_result(sandbox: Sandbox) -> None:
    secret = "hk-7f3a9c2e5b1d4f60"
    sandbox.state.targets.set("api", "up", required_headers={"X-Api-Key": secret})
    block = HttpHeaders(headers={"X-Api-Key": secret, "Accept": "text/plain"})
    services = {
        "with": target(sandbox, "api", headers_block="api-headers"),
        "without": target(sandbox, "api"),
    }

    results = check_services.fn(services, {"api-headers": block})

    assert [(r.service, r.status_code, r.ok) for r in results] == [
        ("with", 200, True),
        ("without", 401, False),
    ]
    logged = sandbox.state.targets.requests_to("api")
    assert sorted("x-api-key" in r.header_names for r in logged) == [False, True]
    assert secret not in repr(results)
    # Unwrapping the block registered the value with the masker.
    assert mask_text(f"key {secret}") == "key ***"


def test_a_headers_block_not_given_is_a_caller_bug(sandbox: Sandbox) -> None:
    with pytest.raises(KeyError, match="headers blocks not given: missing"):
        check_services.fn({"a": target(sandbox, "a", headers_block="missing")}, {})


@pytest.mark.parametrize(("services", "max_parallel"), [(9, 3), (10, 10)])
def test_checks_run_concurrently_up_to_max_parallel(
    sandbox: Sandbox, services: int, max_parallel: int
) -> None:
    """Each answer waits until a whole batch of `max_parallel` requests has arrived: only
    checks that really run side by side finish, and more at once would show as a higher
    peak."""
    in_flight = 0
    peak = 0
    arrived = 0
    batches: dict[int, asyncio.Event] = {}

    async def batch_barrier(seconds: float) -> None:
        nonlocal in_flight, peak, arrived
        in_flight += 1
        peak = max(peak, in_flight)
        arrived += 1
        batch = (arrived - 1) // max_parallel
        event = batches.setdefault(batch, asyncio.Event())
        if arrived % max_parallel == 0:
            event.set()
        async with asyncio.timeout(HANG_GUARD_SECONDS):
            await event.wait()
        in_flight -= 1

    sandbox.state.targets.sleep = batch_barrier
    names = [f"svc-{index}" for index in range(services)]
    for name in names:
        sandbox.state.targets.set(name, "slow", delay_ms=300)

    results = check({name: target(sandbox, name) for name in names}, max_parallel=max_parallel)

    assert all(result.ok for result in results.values())
    assert list(results) == names
    assert peak == max_parallel


def test_max_parallel_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="max_parallel must be at least 1"):
        run_checks({}, {}, max_parallel=0)

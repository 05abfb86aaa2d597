"""The sandbox's switchable HTTP targets: up, down, slow, drop, control route, request log."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from moltbot.sandbox import Sandbox
from moltbot.sandbox.targets import TargetsState
from tests.e2e.servers import HANG_GUARD_SECONDS


def url(sandbox: Sandbox, name: str) -> str:
    return f"{sandbox.base_url}/targets/{name}"


def test_a_target_nobody_switched_is_up(sandbox: Sandbox) -> None:
    response = httpx.get(url(sandbox, "api"))

    assert (response.status_code, response.text) == (200, "OK")
    [logged] = sandbox.state.targets.requests_to("api")
    assert (logged.method, logged.status) == ("GET", 200)


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST"])
def test_down_answers_503_to_every_method(sandbox: Sandbox, method: str) -> None:
    sandbox.state.targets.set("api", "down")

    response = httpx.request(method, url(sandbox, "api"))

    assert response.status_code == 503
    assert response.text == ("" if method == "HEAD" else "Service Unavailable")
    assert [r.method for r in sandbox.state.targets.requests_to("api")] == [method]


def test_status_and_body_are_configurable(sandbox: Sandbox) -> None:
    sandbox.state.targets.set("web", "down", status=500, body="boom")
    sandbox.state.targets.set("health", "up", status=204, body="")

    assert (httpx.get(url(sandbox, "web")).status_code, httpx.get(url(sandbox, "web")).text) == (
        500,
        "boom",
    )
    assert httpx.get(url(sandbox, "health")).status_code == 204


def test_control_route_switches_a_target_and_lists_the_log(sandbox: Sandbox) -> None:
    control = f"{sandbox.base_url}/targets/_control"

    switched = httpx.post(f"{control}/pay", json={"mode": "down", "status": 502})
    answered = httpx.get(url(sandbox, "pay"))
    listing = httpx.get(control).json()

    assert switched.status_code == 200
    assert switched.json() == {
        "name": "pay",
        "mode": "down",
        "status": 502,
        "delay_ms": 1000,
        "body": None,
        "required_headers": [],
    }
    assert answered.status_code == 502
    assert listing["targets"]["pay"]["mode"] == "down"
    assert [(r["target"], r["status"]) for r in listing["requests"]] == [("pay", 502)]
    assert httpx.post(f"{control}/pay", json={"mode": "sideways"}).status_code == 422
    assert httpx.post(f"{control}/_x", json={"mode": "up"}).status_code == 400
    assert httpx.delete(control).json() == {"reset": True}
    assert httpx.get(url(sandbox, "pay")).status_code == 200


def test_drop_closes_the_connection_without_an_answer(sandbox: Sandbox) -> None:
    sandbox.state.targets.set("api", "drop")

    # A dropped connection reads as a protocol error or a reset, as the timing falls.
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        httpx.get(url(sandbox, "api"))

    assert [r.status for r in sandbox.state.targets.requests_to("api")] == [0]


def test_slow_waits_through_the_injected_sleep(sandbox: Sandbox) -> None:
    waited: list[float] = []

    async def sleep(seconds: float) -> None:
        waited.append(seconds)

    sandbox.state.targets.sleep = sleep
    sandbox.state.targets.set("api", "slow", delay_ms=400, body="fine")

    response = httpx.get(url(sandbox, "api"))

    assert (response.status_code, response.text) == (200, "fine")
    assert waited == [0.4]


def test_a_real_slow_wait_ends_when_released() -> None:
    state = TargetsState()

    async def wait_an_hour() -> None:
        async with asyncio.timeout(HANG_GUARD_SECONDS):
            waiting = asyncio.ensure_future(state.sleep(3600))
            await asyncio.sleep(0)  # one turn of the loop: the wait is registered
            state.reset()
            await waiting

    asyncio.run(wait_an_hour())

    assert state._waiters == set()


def test_required_headers_must_arrive_whole_and_only_names_are_logged(sandbox: Sandbox) -> None:
    sandbox.state.targets.set("api", "up", required_headers={"X-Api-Key": "s3cret-value-1"})

    refused = httpx.get(url(sandbox, "api"), headers={"X-Api-Key": "wrong"})
    accepted = httpx.get(url(sandbox, "api"), headers={"X-Api-Key": "s3cret-value-1"})

    assert (refused.status_code, accepted.status_code) == (401, 200)
    logged = sandbox.state.targets.requests_to("api")
    assert all("x-api-key" in r.header_names for r in logged)
    assert "s3cret-value-1" not in repr(logged)
    assert "s3cret-value-1" not in httpx.get(f"{sandbox.base_url}/targets/_control").text


def test_reset_puts_every_target_back_up(sandbox: Sandbox) -> None:
    sandbox.state.targets.set("api", "down")
    httpx.get(url(sandbox, "api"))

    sandbox.reset()

    assert sandbox.state.targets.targets == {} and sandbox.state.targets.requests == []
    assert httpx.get(url(sandbox, "api")).status_code == 200


def test_bad_settings_are_refused_from_python() -> None:
    state = TargetsState()
    with pytest.raises(ValueError, match="mode must be one of"):
        state.set("api", "sideways")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="status must be from 100 to 599"):
        state.set("api", "down", status=42)
    with pytest.raises(ValueError, match="delay_ms must not be negative"):
        state.set("api", "slow", delay_ms=-1)

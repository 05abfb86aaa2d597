"""The emulator kit: request log, route faults (status, hang, slow, drop, random share), limits."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import requests
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from moltbot.sandbox.kit import (
    EmulatorCore,
    JsonBodyProblem,
    SlidingWindowLimiter,
    TokenBucketLimiter,
    install_emulator,
    read_json_object,
)
from moltbot.sandbox.smtp import bind_socket


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": status, "message": message}}, status_code=status)


@pytest.fixture(scope="module")
def probe() -> Iterator[tuple[str, EmulatorCore, list[str]]]:
    """A tiny emulator mounted at /probe on a real uvicorn server; yields (url, core, handled)."""
    core = EmulatorCore("probe", seed=1)
    handled: list[str] = []
    sub = FastAPI()

    @sub.get("/v1/items/{item_path:path}")
    def get_item(item_path: str) -> dict[str, str]:
        handled.append(item_path)
        return {"item": item_path}

    @sub.post("/v1/items")
    def create_item() -> JSONResponse:
        handled.append("created")
        return JSONResponse({"created": True}, status_code=201)

    install_emulator(sub, core, _error)
    root = FastAPI()
    root.mount("/probe", sub)
    sock = bind_socket("127.0.0.1", None)
    server = uvicorn.Server(uvicorn.Config(root, log_config=None, lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/probe", core, handled
    server.should_exit = True
    server.force_exit = True
    thread.join(timeout=5)


@pytest.fixture
def emulator(probe: tuple[str, EmulatorCore, list[str]]) -> tuple[str, EmulatorCore, list[str]]:
    _, core, handled = probe
    core.reset()
    handled.clear()
    return probe


def test_log_keeps_decoded_path_below_the_mount_query_and_status(emulator) -> None:
    url, core, _ = emulator
    assert httpx.get(f"{url}/v1/items/%27%EC%9D%91%EB%8B%B5%27%21A1?x=1").status_code == 200
    assert httpx.post(f"{url}/v1/items").status_code == 201
    assert httpx.get(f"{url}/v1/nothing").status_code == 404

    logged = core.requests
    assert [(r.method, r.path, r.query, r.status, r.fault) for r in logged] == [
        ("GET", "/v1/items/'응답'!A1", "x=1", 200, None),
        ("POST", "/v1/items", "", 201, None),
        ("GET", "/v1/nothing", "", 404, None),
    ]
    assert core.count("GET", r"^/v1/items/") == 1
    assert core.count(path="items") == 2


def test_status_fault_hits_only_its_route_and_count_and_skips_the_handler(emulator) -> None:
    url, core, handled = emulator
    core.inject_fault(429, method="POST", path=r"^/v1/items$", count=2)

    assert httpx.get(f"{url}/v1/items/a").status_code == 200
    first = httpx.post(f"{url}/v1/items")
    assert (first.status_code, first.headers["retry-after"]) == (429, "1")
    assert first.json()["error"]["code"] == 429
    assert httpx.post(f"{url}/v1/items").status_code == 429
    assert httpx.post(f"{url}/v1/items").status_code == 201
    assert handled == ["a", "created"]
    assert [r.fault for r in core.requests] == [None, "status", "status", None]
    assert core.pending_faults == []


def test_fault_message_and_retry_after_are_the_ones_given(emulator) -> None:
    url, core, _ = emulator
    core.inject_fault(503, retry_after=7, message="try later")
    answer = httpx.get(f"{url}/v1/items/a")
    assert (answer.status_code, answer.headers["retry-after"]) == (503, "7")
    assert answer.json()["error"]["message"] == "try later"


def test_probability_hits_a_share_and_is_repeatable_with_a_seed(emulator) -> None:
    url, core, _ = emulator
    core.inject_fault(500, count=None, probability=0.3)
    with httpx.Client() as client:
        statuses = [client.get(f"{url}/v1/items/{n}").status_code for n in range(60)]
    core.clear_faults()
    failures = statuses.count(500)
    # 60 draws at p=0.3: the seeded sequence gives a share well inside (0, 60).
    assert 5 <= failures <= 35
    assert set(statuses) == {200, 500}

    again = EmulatorCore("again", seed=1)
    again.inject_fault(500, count=None, probability=0.3)
    replay = [500 if again.take_fault("GET", "/x") else 200 for _ in range(60)]
    assert replay.count(500) == failures


def test_hang_outlasts_the_client_timeout_and_does_nothing(emulator) -> None:
    url, core, handled = emulator
    core.inject_fault(kind="hang", seconds=1.0)
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(f"{url}/v1/items/a", timeout=0.3)
    core.release_held()  # the hang ends now instead of being waited out
    deadline = time.monotonic() + 5  # a guard against a hang that never ends, not a bound
    while not core.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    assert handled == []
    assert [(r.status, r.fault) for r in core.requests] == [(504, "hang")]


def test_a_request_held_across_a_reset_is_not_logged_after_it(emulator) -> None:
    url, core, _ = emulator
    core.inject_fault(kind="hang", seconds=0.5)
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(f"{url}/v1/items/a", timeout=0.2)
    core.reset()
    time.sleep(0.6)
    assert core.requests == []


def test_slow_answers_normally_after_the_wait(emulator) -> None:
    url, core, handled = emulator
    core.inject_fault(kind="slow", seconds=0.3)
    started = time.monotonic()
    assert httpx.get(f"{url}/v1/items/a").json() == {"item": "a"}
    assert time.monotonic() - started >= 0.3
    assert handled == ["a"]
    assert [(r.status, r.fault) for r in core.requests] == [(200, "slow")]


def test_drop_closes_the_connection_without_an_answer(emulator) -> None:
    url, core, handled = emulator
    core.inject_fault(kind="drop", method="GET")
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"{url}/v1/items/a", timeout=5)
    # A close (FIN) or a reset (RST), depending on timing: either way no answer came.
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        core.inject_fault(kind="drop")
        httpx.get(f"{url}/v1/items/a")
    assert handled == []
    assert [(r.status, r.fault) for r in core.requests] == [(0, "drop"), (0, "drop")]
    assert httpx.get(f"{url}/v1/items/b").status_code == 200


def test_after_apply_runs_the_handler_then_loses_its_answer(emulator) -> None:
    url, core, handled = emulator
    core.inject_fault(500, method="POST", after_apply=True, count=2)
    core.inject_fault(kind="drop", after_apply=True)
    lost = httpx.post(f"{url}/v1/items")
    refused = httpx.post(f"{url}/v1/elsewhere")  # not applied: its own answer goes back
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        httpx.get(f"{url}/v1/items/a")

    assert (lost.status_code, refused.status_code) == (500, 404)
    assert handled == ["created", "a"]
    assert [(r.status, r.fault) for r in core.requests] == [
        (500, "status_after_apply"),
        (404, None),
        (0, "drop_after_apply"),
    ]


def test_control_routes_list_add_and_clear_without_being_logged(emulator) -> None:
    url, core, _ = emulator
    added = httpx.post(f"{url}/_sandbox/faults", json={"status": 429, "path": "items", "count": 1})
    assert added.status_code == 201
    assert added.json()["retry_after"] == 1
    assert [f["status"] for f in httpx.get(f"{url}/_sandbox/faults").json()] == [429]
    assert httpx.get(f"{url}/v1/items/a").status_code == 429
    assert httpx.get(f"{url}/_sandbox/requests").json()[0]["status"] == 429
    bad = httpx.post(f"{url}/_sandbox/faults", json={"status": 200})
    assert bad.status_code == 422
    assert httpx.delete(f"{url}/_sandbox/requests").json() == {"cleared": True}
    assert core.requests == []


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"status": 200}, "4xx or 5xx"),
        ({"kind": "explode"}, "fault kind"),
        ({"count": 0}, "at least 1"),
        ({"probability": 1.5}, "probability"),
        ({"kind": "hang", "seconds": -1}, "negative"),
        ({"kind": "slow", "after_apply": True}, "after_apply"),
    ],
)
def test_bad_faults_are_refused(arguments: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EmulatorCore("x").inject_fault(**arguments)


def test_sliding_window_allows_limit_per_window_per_key() -> None:
    now = [0.0]
    limiter = SlidingWindowLimiter(2, window=60, clock=lambda: now[0])
    assert [limiter.acquire("ann"), limiter.acquire("ann")] == [None, None]
    assert limiter.acquire("ann") == pytest.approx(60)
    assert limiter.acquire("bob") is None
    now[0] = 30.0
    assert limiter.acquire("ann") == pytest.approx(30)
    now[0] = 60.0
    assert limiter.acquire("ann") is None
    assert SlidingWindowLimiter(None).acquire() is None


def test_token_bucket_allows_bursts_then_the_average_rate() -> None:
    now = [0.0]
    bucket = TokenBucketLimiter(3.0, burst=3, clock=lambda: now[0])
    assert [bucket.acquire() for _ in range(3)] == [None, None, None]
    assert bucket.acquire() == pytest.approx(1 / 3)
    now[0] = 1.0
    assert [bucket.acquire() for _ in range(3)] == [None, None, None]
    assert bucket.acquire() is not None
    bucket.reset()
    assert bucket.acquire() is None


class _BadBody(Exception):
    def __init__(self, problem: JsonBodyProblem) -> None:
        super().__init__(problem)
        self.problem = problem


def _read(raw: bytes) -> dict | str:
    """What `read_json_object` makes of a POST body: the object, or the problem it names."""

    async def receive() -> dict:
        return {"type": "http.request", "body": raw, "more_body": False}

    request = Request({"type": "http", "method": "POST", "headers": []}, receive)
    try:
        return asyncio.run(read_json_object(request, _BadBody))
    except _BadBody as exc:
        return exc.problem


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"", {}),
        (b"  \n", {}),
        ('{"a": [1, "가"]}'.encode(), {"a": [1, "가"]}),
        (b"{not json", "malformed"),
        (b"[1, 2]", "not an object"),
    ],
)
def test_read_json_object_hands_the_problem_to_the_service(raw: bytes, expected: object) -> None:
    assert _read(raw) == expected

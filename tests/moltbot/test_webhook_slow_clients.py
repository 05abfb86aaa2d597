"""The gateway's connection limits: slow clients are cut off, and so is one client's excess."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from pydantic import SecretStr

from moltbot.state.inbox import Inbox
from moltbot.state.ledger import Ledger
from moltbot.webhooks.app import SourceVerifier, create_gateway_app
from moltbot.webhooks.config import GatewayConfig
from moltbot.webhooks.gateway import gateway_protocol
from moltbot.webhooks.signatures import sign_stripe
from tests.e2e.servers import HANG_GUARD_SECONDS

SECRET = "whsec_slow_client_test"
# The deadlines differ so that the test can tell the two kinds of timer apart.
HEADER_SECONDS = 10.0
BODY_SECONDS = 30.0


class ManualTimer:
    """One timer of `ManualTimers`: armed, then fired, or cancelled."""

    def __init__(
        self, timers: ManualTimers, delay: float, due: float, callback: Callable[[], None]
    ) -> None:
        self.timers, self.delay, self.due, self.callback = timers, delay, due, callback
        self.loop = asyncio.get_running_loop()
        self.state = "armed"

    def cancel(self) -> None:
        with self.timers.changed:
            if self.state in ("armed", "firing"):
                self.state = "cancelled"
                self.timers.changed.notify_all()

    def run(self) -> None:
        with self.timers.changed:
            if self.state != "firing":
                return  # cancelled on the loop after the test advanced the clock
            self.state = "fired"
            self.timers.changed.notify_all()
        self.callback()


class ManualTimers:
    """The gateway's deadline timers on a clock the test advances.

    The gateway arms and cancels them on its event loop; `advance`, called from the test's
    thread, hands each timer that came due to that loop, where a real timer would fire.
    """

    def __init__(self) -> None:
        self.now = 0.0
        self.changed = threading.Condition()
        self._timers: list[ManualTimer] = []

    def call_later(self, delay: float, callback: Callable[[], None]) -> ManualTimer:
        with self.changed:
            timer = ManualTimer(self, delay, self.now + delay, callback)
            self._timers.append(timer)
            self.changed.notify_all()
        return timer

    def armed(self) -> list[float]:
        """The delays of the timers neither fired nor cancelled, sorted."""
        with self.changed:
            return sorted(timer.delay for timer in self._timers if timer.state == "armed")

    def wait_until_armed(self, delays: list[float]) -> None:
        """Block until exactly these timers are armed (the server reached that point)."""
        with self.changed:
            reached = self.changed.wait_for(
                lambda: self.armed() == sorted(delays), timeout=HANG_GUARD_SECONDS
            )
        assert reached, f"armed timers {self.armed()}, expected {sorted(delays)}"

    def advance(self, seconds: float) -> None:
        """Move the clock on; the timers due by then fire on the server's loop."""
        with self.changed:
            self.now += seconds
            due = [t for t in self._timers if t.state == "armed" and t.due <= self.now]
            for timer in due:
                timer.state = "firing"
        for timer in due:
            timer.loop.call_soon_threadsafe(timer.run)


@dataclass
class Gateway:
    address: tuple[str, int]
    timers: ManualTimers
    inbox: Inbox

    @property
    def url(self) -> str:
        return f"http://{self.address[0]}:{self.address[1]}"


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Gateway]]:
    """Starts the gateway on uvicorn with manual deadline timers; stops it afterwards."""
    stops: list[Callable[[], None]] = []

    def start(max_connections_per_client: int = 20) -> Gateway:
        timers = ManualTimers()
        ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite3'}")
        app = create_gateway_app(
            GatewayConfig.from_table(None),
            Inbox(ledger),
            {"stripe": SourceVerifier(scheme="stripe", secret=SecretStr(SECRET))},
            body_timeout_seconds=BODY_SECONDS,
            call_later=timers.call_later,
        )
        protocol = gateway_protocol(
            header_timeout_seconds=HEADER_SECONDS,
            max_connections_per_client=max_connections_per_client,
            call_later=timers.call_later,
        )
        server = uvicorn.Server(uvicorn.Config(app, log_config=None, lifespan="off", http=protocol))
        # Listening before uvicorn runs: clients connect at once, uvicorn accepts when ready.
        listener = socket.create_server(("127.0.0.1", 0))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
        thread.start()

        def stop() -> None:
            server.should_exit = True
            thread.join(HANG_GUARD_SECONDS)
            ledger.close()
            assert not thread.is_alive(), "uvicorn did not shut down"

        stops.append(stop)
        return Gateway(listener.getsockname(), timers, Inbox(ledger))

    yield start
    for stop in stops:
        stop()


def connect(gateway: Gateway, source: str = "127.0.0.1") -> socket.socket:
    """A raw TCP connection to the gateway from the loopback address `source`."""
    return socket.create_connection(
        gateway.address, timeout=HANG_GUARD_SECONDS, source_address=(source, 0)
    )


def read_until_closed(connection: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (the hang guard bounds it)."""
    received = b""
    while chunk := connection.recv(4096):
        received += chunk
    return received


def still_open(connection: socket.socket) -> bool:
    """Whether the server has neither answered nor closed the connection, without waiting."""
    connection.setblocking(False)
    try:
        connection.recv(1)
    except BlockingIOError:
        return True
    finally:
        connection.settimeout(HANG_GUARD_SECONDS)
    return False


def post_signed(gateway: Gateway, event_id: str, source: str = "127.0.0.1") -> httpx.Response:
    body = json.dumps(
        {"id": event_id, "type": "payment.failed", "created": int(time.time()), "data": {}}
    ).encode()
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport, timeout=HANG_GUARD_SECONDS) as client:
        return client.post(
            f"{gateway.url}/hooks/stripe",
            content=body,
            headers={"Stripe-Signature": sign_stripe(body, SECRET, int(time.time()))},
        )


SLOW_BODY_HEAD = (
    b"POST /hooks/stripe HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
    b'Content-Length: 100\r\n\r\n{"id":'
)


def test_slow_clients_are_cut_off_at_their_deadlines_while_a_valid_request_is_served(
    serve: Callable[..., Gateway],
) -> None:
    gateway = serve()
    with connect(gateway) as slow_header, connect(gateway) as slow_body:
        slow_header.sendall(b"POST /hooks/stripe HTTP/1.1\r\nHost: gateway\r\n")  # no more
        slow_body.sendall(SLOW_BODY_HEAD)  # 6 of 100 bytes
        gateway.timers.wait_until_armed([HEADER_SECONDS, BODY_SECONDS])

        accepted = post_signed(gateway, "evt_slow_1")
        waiting = still_open(slow_header), still_open(slow_body)
        gateway.timers.advance(HEADER_SECONDS)
        header_answer = read_until_closed(slow_header)
        body_waiting = still_open(slow_body)
        gateway.timers.advance(BODY_SECONDS - HEADER_SECONDS)
        body_answer = read_until_closed(slow_body)

    assert accepted.status_code == 202
    assert [entry.event_id for entry in gateway.inbox.entries()] == ["evt_slow_1"]
    assert waiting == (True, True)
    assert header_answer == b""  # closed without an answer
    assert body_waiting is True  # its own deadline had not come yet
    assert body_answer.startswith(b"HTTP/1.1 408 ")
    assert b"connection: close" in body_answer.lower()
    assert b"body not received within 30 s" in body_answer
    # Every deadline was cancelled or fired: none outlives its connection.
    gateway.timers.wait_until_armed([])


def test_a_client_at_its_connection_cap_is_refused_while_others_are_served(
    serve: Callable[..., Gateway],
) -> None:
    gateway = serve(max_connections_per_client=2)
    with connect(gateway) as first, connect(gateway) as second:
        gateway.timers.wait_until_armed([HEADER_SECONDS, HEADER_SECONDS])

        with connect(gateway) as third:
            refused = read_until_closed(third)
        with connect(gateway) as fourth:
            # A refused connection did not free a place.
            refused_again = read_until_closed(fourth)
        other_client = post_signed(gateway, "evt_other_client", source="127.0.0.2")
        first.close()
        gateway.timers.wait_until_armed([HEADER_SECONDS])  # the server saw it go
        freed_place = post_signed(gateway, "evt_freed_place")
        second_waiting = still_open(second)

    assert refused.startswith(b"HTTP/1.1 503 ")
    assert refused.endswith(b'{"error": "too many connections from this client"}')
    assert refused_again.startswith(b"HTTP/1.1 503 ")
    assert other_client.status_code == 202
    assert freed_place.status_code == 202
    assert second_waiting is True
    assert sorted(entry.event_id for entry in gateway.inbox.entries()) == [
        "evt_freed_place",
        "evt_other_client",
    ]


def test_the_cap_is_configured_in_the_webhooks_table() -> None:
    assert GatewayConfig.from_table(None).max_connections_per_client == 20
    assert (
        GatewayConfig.from_table({"max_connections_per_client": 4}).max_connections_per_client == 4
    )

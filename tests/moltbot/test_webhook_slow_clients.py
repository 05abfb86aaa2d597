"""The gateway cuts off clients that trickle their headers or body; others are served as usual."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from pydantic import SecretStr

from moltbot.state.inbox import Inbox
from moltbot.state.ledger import Ledger
from moltbot.webhooks.app import SourceVerifier, create_gateway_app
from moltbot.webhooks.config import GatewayConfig
from moltbot.webhooks.gateway import header_deadline_protocol
from moltbot.webhooks.signatures import sign_stripe
from tests.e2e.servers import HANG_GUARD_SECONDS

SECRET = "whsec_slow_client_test"
# Short deadlines so the tests need not wait: the server's own timers decide, not a test clock.
DEADLINE_SECONDS = 0.3


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """The gateway on uvicorn with short header and body deadlines; yields (host, port)."""
    with Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite3'}") as ledger:
        app = create_gateway_app(
            GatewayConfig.from_table(None),
            Inbox(ledger),
            {"stripe": SourceVerifier(scheme="stripe", secret=SecretStr(SECRET))},
            body_timeout_seconds=DEADLINE_SECONDS,
        )
        config = uvicorn.Config(
            app, host="127.0.0.1", port=0, log_config=None, lifespan="off",
            http=header_deadline_protocol(DEADLINE_SECONDS),
        )  # fmt: skip
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            assert thread.is_alive(), "uvicorn did not start"
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        try:
            yield "127.0.0.1", port
        finally:
            server.should_exit = True
            thread.join(HANG_GUARD_SECONDS)


def read_until_closed(connection: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (the hang guard bounds it)."""
    connection.settimeout(HANG_GUARD_SECONDS)
    received = b""
    while chunk := connection.recv(4096):
        received += chunk
    return received


def test_a_client_trickling_its_headers_is_cut_off(gateway: tuple[str, int]) -> None:
    with socket.create_connection(gateway) as slow:
        slow.sendall(b"POST /hooks/stripe HTTP/1.1\r\nHost: gateway\r\n")  # and no more

        assert read_until_closed(slow) == b""


def test_a_client_trickling_its_body_gets_408(gateway: tuple[str, int]) -> None:
    with socket.create_connection(gateway) as slow:
        slow.sendall(
            b"POST /hooks/stripe HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"id":'
        )

        answer = read_until_closed(slow)

    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b"body not received within 0.3 s" in answer


def test_other_clients_are_served_while_a_slow_one_waits(gateway: tuple[str, int]) -> None:
    host, port = gateway
    body = json.dumps(
        {"id": "evt_slow_1", "type": "payment.failed", "created": int(time.time()), "data": {}}
    ).encode()
    with socket.create_connection(gateway) as slow:
        slow.sendall(b"POST /hooks/stripe HTTP/1.1\r\n")
        answer = httpx.post(
            f"http://{host}:{port}/hooks/stripe",
            content=body,
            headers={"Stripe-Signature": sign_stripe(body, SECRET, int(time.time()))},
        )
        assert answer.status_code == 202
        assert read_until_closed(slow) == b""

"""Tests of the gateway process: blocks loaded at start, real uvicorn, the dispatcher thread."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL
from prefect.settings.context import temporary_settings
from pydantic import SecretStr

from blocks.webhooks import WebhookSource
from moltbot.errors import InputError, ServiceError
from moltbot.masking import mask_text
from moltbot.state.inbox import Inbox, InboxStatus
from moltbot.state.ledger import Ledger
from moltbot.webhooks.config import GatewayConfig
from moltbot.webhooks.gateway import build_gateway
from moltbot.webhooks.secrets import load_gateway_secrets
from moltbot.webhooks.signatures import sign_stripe


@flow(name="webhook-test-gateway-sink")
def gateway_sink(events: list[dict[str, Any]], mapping: str = "events") -> int:
    """Stands in for ticket-creation: same parameter names and types."""
    return len(events)


class ServerThread:
    """A real uvicorn server on a free port, in a thread (its lifespan runs the dispatcher)."""

    def __init__(self, app: FastAPI) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc_info: object) -> None:
        self.server.should_exit = True
        self.thread.join(15)


@pytest.fixture
def names() -> dict[str, str]:
    """Unique block and deployment names for one test (the Prefect API lives for the session)."""
    suffix = uuid.uuid4().hex[:8]
    return {"stripe": f"webhook-stripe-{suffix}", "github": f"webhook-github-{suffix}",
            "deployment": f"d-{suffix}"}  # fmt: skip


def test_the_block_registers_its_secret_with_the_masker_when_loaded(
    prefect_api: str, names: dict[str, str]
) -> None:
    secret = f"whsec_{uuid.uuid4().hex}"
    WebhookSource(signing_secret=SecretStr(secret), scheme="stripe").save(names["stripe"])

    loaded = WebhookSource.load(names["stripe"])

    assert loaded.signing_secret.get_secret_value() == secret
    assert mask_text(f"secret is {secret}") == "secret is ***"


def test_missing_blocks_stop_the_gateway_naming_all_of_them(
    prefect_api: str, names: dict[str, str], tmp_path: Path
) -> None:
    config = GatewayConfig.from_table(
        {"sources": {"stripe": {"block": names["stripe"]}, "github": {"block": names["github"]}}}
    )

    with pytest.raises(InputError) as raised:
        build_gateway(config, f"sqlite:///{tmp_path / 'ledger.sqlite3'}")

    message = str(raised.value)
    assert f"missing WebhookSource block(s): {names['github']}, {names['stripe']}" in message
    assert not (tmp_path / "ledger.sqlite3").exists()


def test_a_block_with_another_scheme_than_configured_is_refused(
    prefect_api: str, names: dict[str, str], tmp_path: Path
) -> None:
    WebhookSource(signing_secret=SecretStr("gh-secret-1234"), scheme="github").save(names["github"])
    config = GatewayConfig.from_table(
        {"sources": {"stripe": {"block": names["github"], "scheme": "stripe"}}}
    )

    with pytest.raises(InputError, match="source 'stripe' expects scheme 'stripe' but block"):
        load_gateway_secrets(config, home=tmp_path)


def test_without_a_prefect_api_url_the_gateway_does_not_start(
    prefect_api: str, tmp_path: Path
) -> None:
    with (
        temporary_settings(restore_defaults={PREFECT_API_URL}),
        pytest.raises(InputError, match="set PREFECT_API_URL"),
    ):
        load_gateway_secrets(GatewayConfig.from_table(None), home=tmp_path)


def test_an_unreachable_prefect_api_at_start_without_other_secrets_is_a_service_error(
    prefect_api: str, tmp_path: Path
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}/api"

    with (
        temporary_settings(updates={PREFECT_API_URL: closed}),
        pytest.raises(ServiceError) as raised,
    ):
        load_gateway_secrets(GatewayConfig.from_table(None), home=tmp_path, environ={})

    assert re.search(r"the Prefect API at \S+ is unreachable \(ConnectError\)", str(raised.value))
    # What would have let it start.
    assert str(raised.value).endswith(
        "set MOLTBOT_SECRET_CACHE_KEY to keep an encrypted copy of the blocks at each start, "
        "or set MOLTBOT_WEBHOOK_SECRET_STRIPE, MOLTBOT_WEBHOOK_SECRET_GITHUB"
    )


@pytest.fixture
def gateway(prefect_api: str, names: dict[str, str], tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A gateway served by uvicorn, routing payment.failed to a real test deployment."""
    secret = f"whsec_{uuid.uuid4().hex}"
    WebhookSource(signing_secret=SecretStr(secret), scheme="stripe").save(names["stripe"])
    gateway_sink.to_deployment(name=names["deployment"]).apply()
    deployment = f"webhook-test-gateway-sink/{names['deployment']}"
    config = GatewayConfig.from_table(
        {
            "sources": {"stripe": {"block": names["stripe"]}},
            "routes": {
                "payment.failed": {
                    "deployment": deployment,
                    "parameters": {"events": ["{{ event }}"], "mapping": "payment-failed"},
                }
            },
        }
    )
    ledger_url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    server = ServerThread(build_gateway(config, ledger_url))
    with server as url, Ledger(ledger_url) as ledger:
        yield {"url": url, "port": server.port, "secret": secret, "inbox": Inbox(ledger),
               "deployment": deployment}  # fmt: skip
    # Shutting the server down stopped the dispatcher thread its lifespan started.
    assert not [t for t in threading.enumerate() if t.name == "moltbot-webhook-dispatcher"]


def signed_post(gateway: dict[str, Any], document: dict[str, Any]) -> httpx.Response:
    body = json.dumps(document, ensure_ascii=False).encode()
    signature = sign_stripe(body, gateway["secret"], int(time.time()))
    return httpx.post(
        f"{gateway['url']}/hooks/stripe",
        content=body,
        headers={"Stripe-Signature": signature, "Content-Type": "application/json"},
    )


def wait_for(condition: Any, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return value


def test_a_signed_webhook_becomes_a_flow_run_with_its_korean_payload(
    gateway: dict[str, Any],
) -> None:
    document = {
        "id": f"evt_{uuid.uuid4().hex[:12]}",
        "type": "payment.failed",
        "created": int(time.time()),
        "data": {"object": {"customer": "김민수", "memo": "카드 한도 초과 — 결제 실패"}},
    }

    accepted = signed_post(gateway, document)
    duplicate = signed_post(gateway, document)

    assert accepted.status_code == 202
    assert duplicate.status_code == 200
    assert duplicate.json() == {"id": accepted.json()["id"], "status": "duplicate"}
    inbox: Inbox = gateway["inbox"]
    entry = wait_for(
        lambda: (e := inbox.get(accepted.json()["id"])).status == InboxStatus.DISPATCHED and e
    )
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(uuid.UUID(entry.flow_run_id))
    assert run.parameters == {"events": [entry.event], "mapping": "payment-failed"}
    assert run.parameters["events"][0]["payload"]["object"]["memo"] == "카드 한도 초과 — 결제 실패"
    health = httpx.get(f"{gateway['url']}/healthz").json()
    assert health["inbox"] == {"pending": 0, "dispatched": 1, "failed": 0, "ignored": 0}
    assert health["dispatcher"] == "running"


def test_a_declared_2_mib_body_is_answered_413_before_it_is_sent(gateway: dict[str, Any]) -> None:
    with socket.create_connection(("127.0.0.1", gateway["port"]), timeout=5) as connection:
        connection.sendall(
            b"POST /hooks/stripe HTTP/1.1\r\nHost: gateway\r\n"
            b"Content-Type: application/json\r\nContent-Length: 2097152\r\n\r\n"
        )
        answer = connection.recv(4096).decode()

    assert answer.startswith("HTTP/1.1 413")
    assert gateway["inbox"].entries() == []

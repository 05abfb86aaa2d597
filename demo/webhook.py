"""The demo's webhook leg: a signed payment event -> gateway -> inbox -> flow run -> Jira issue."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import SecretStr

from moltbot.state.inbox import Inbox, InboxEntry
from moltbot.state.ledger import Ledger

DEMO_DEPLOYMENT = "ticket-creation/demo"
PAYMENTS_DEPLOYMENT = "payment-failures/demo"
# The demo's gateway: the generic event opens a ticket at once (the ticket-creation leg); Stripe's
# failures go to payment-failures, which batches them and opens a ticket for a repeated customer.
DEMO_ROUTES = {
    "payment.failed": DEMO_DEPLOYMENT,
    "payment_intent.payment_failed": PAYMENTS_DEPLOYMENT,
}
DEMO_SOURCE = "demo-shop"
# The same event id on every demo: the second demo shows the gateway answering "duplicate".
DEMO_EVENT_ID = "evt_demo_payment_0001"
# Generous bounds for a loaded laptop; they only turn a hang into a clear line.
GATEWAY_START_SECONDS = 30.0
DISPATCH_SECONDS = 60.0


@dataclass(frozen=True)
class WebhookDemo:
    """What the webhook leg did.

    Attributes:
        status: the gateway's HTTP status (202 accepted, 200 duplicate).
        answer: the gateway's answer (`accepted` or `duplicate`).
        flow_run_id: the run the dispatcher created (None for a duplicate).
        issue_keys: the Jira issues the run created.
        result: the run's result (None for a duplicate).
    """

    status: int
    answer: str
    flow_run_id: str | None
    issue_keys: list[str]
    result: dict[str, Any] | None


def payment_failed_event(created: int) -> dict[str, Any]:
    """A Stripe-style `payment.failed` event for the shipped `payment-failed` ticket mapping."""
    return {
        "id": DEMO_EVENT_ID,
        "type": "payment.failed",
        "created": created,
        "data": {
            "order_id": "ORD-20261203-0042",
            "amount": 129000,
            "provider": "토스페이먼츠",
            "error_code": "CARD_LIMIT_EXCEEDED",
            "customer_email": "minsu.kim@example.com",
            "severity": "high",
        },
    }


def register_demo_deployment(jira_block: str, automation: str = "ticket-creation") -> None:
    """Register `<automation>/demo` (no schedule; the gateway starts its runs)."""
    from moltbot.registry import get_automation

    flow = get_automation(automation).load_flow()
    deployment = flow.to_deployment(
        name="demo",
        parameters={"jira_block": jira_block},
        tags=["moltbot", "demo"],
        description=f"The demo's {automation} runs, started by its signed webhooks.",
    )
    deployment.apply()


@contextmanager
def running_gateway(ledger_url: str, secret: str) -> Iterator[str]:
    """The real gateway app (inbox on the ledger, dispatcher on) on a free port; yields its URL."""
    import uvicorn

    from moltbot.webhooks.app import SourceVerifier
    from moltbot.webhooks.config import GatewayConfig
    from moltbot.webhooks.gateway import build_gateway

    config = GatewayConfig.from_table(
        {
            "sources": {DEMO_SOURCE: {"block": "demo-webhook", "scheme": "stripe"}},
            "routes": {
                event_type: {
                    "deployment": deployment,
                    "parameters": {"inbox_ids": ["{{ inbox_id }}"]},
                }
                for event_type, deployment in DEMO_ROUTES.items()
            },
        }
    )
    verifiers = {DEMO_SOURCE: SourceVerifier(scheme="stripe", secret=SecretStr(secret))}
    app = build_gateway(config, ledger_url, verifiers=verifiers)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, log_level="warning")
    )
    thread = threading.Thread(target=server.run, name="moltbot-demo-gateway", daemon=True)
    thread.start()
    deadline = time.monotonic() + GATEWAY_START_SECONDS
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the demo's webhook gateway did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


def run_webhook_demo(ledger_url: str, jira_block: str) -> WebhookDemo:
    """Post one signed event to the gateway and run the flow run it dispatches, in process.

    The gateway checks the signature, commits the event to the inbox and answers 202; its
    dispatcher creates the `ticket-creation/demo` run with the inbox id as its only parameter
    (the customer's details stay out of the run's parameters). A worker would pick the run up;
    the demo runs it here with Prefect's engine, so no worker has to be started.
    """
    register_demo_deployment(jira_block)
    secret = f"whsec_demo_{secrets.token_hex(8)}"
    with running_gateway(ledger_url, secret) as url, Ledger(ledger_url) as ledger:
        answer, entry = post_event(url, secret, payment_failed_event(int(time.time())), ledger)
    if entry is None:
        return WebhookDemo(answer.status_code, answer.json().get("status", ""), None, [], None)
    result = execute_flow_run(entry.flow_run_id, "ticket-creation")
    keys = [issue["key"] for issue in result.get("created", [])]
    return WebhookDemo(answer.status_code, "accepted", entry.flow_run_id, keys, result)


def post_event(
    url: str, secret: str, event: dict[str, Any], ledger: Ledger
) -> tuple[httpx.Response, InboxEntry | None]:
    """Post `event` signed to the demo source; wait until the dispatcher created its run.

    Returns:
        The gateway's answer, and the inbox entry with its flow run (None unless accepted).
    """
    from moltbot.webhooks.signatures import sign_stripe

    body = json.dumps(event, ensure_ascii=False).encode()
    answer = httpx.post(
        f"{url}/hooks/{DEMO_SOURCE}",
        content=body,
        headers={
            "Stripe-Signature": sign_stripe(body, secret, int(time.time())),
            "Content-Type": "application/json",
        },
    )
    if answer.status_code != 202:
        return answer, None
    inbox = Inbox(ledger)
    deadline = time.monotonic() + DISPATCH_SECONDS
    while (entry := inbox.get(answer.json()["id"])) is None or entry.flow_run_id is None:
        if entry is not None and entry.status == "failed":
            raise RuntimeError(f"the gateway could not start the run: {entry.error}")
        if time.monotonic() > deadline:
            raise RuntimeError("the gateway's dispatcher did not start the run")
        time.sleep(0.1)
    return answer, entry


def execute_flow_run(flow_run_id: str, automation: str) -> dict[str, Any]:
    """Run a flow run the server created (as a worker would), in this process; its result."""
    from prefect.client.orchestration import get_client
    from prefect.flow_engine import run_flow

    from moltbot.registry import get_automation

    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(flow_run_id)
    flow = get_automation(automation).load_flow()
    state = run_flow(flow, flow_run=flow_run, parameters=flow_run.parameters, return_type="state")
    return state.result()

"""The webhook gateway against a real Prefect server: signed events become runs, exactly once."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet

from blocks import WebhookSource
from moltbot.sandbox import Sandbox
from moltbot.sandbox.blocks import save_sandbox_blocks
from moltbot.webhooks.signatures import sign_stripe
from tests.e2e.servers import (
    PrefectServer,
    background,
    flow_runs,
    free_port,
    moltbot_command,
    read_deployment,
    runs_in_state,
    wait_for,
)

pytestmark = pytest.mark.slow

SECRET = "whsec_e2e_서명_secret"
REPO_CONFIG = Path(__file__).resolve().parents[2] / "moltbot.toml"


def save_webhook_sources() -> None:
    """The two sources of the gateway's default config, with their signing secrets."""
    WebhookSource(signing_secret=SECRET, scheme="stripe").save("webhook-stripe", overwrite=True)
    WebhookSource(signing_secret="gh-secret", scheme="github").save(
        "webhook-github", overwrite=True
    )


def write_config(folder: Path) -> None:
    """The shipped ticket mappings, the ticket-creation deployment's Jira block, and a route
    of `payment.failed` to ticket-creation (by default it goes to payment-failures)."""
    (folder / "moltbot.toml").write_text(
        REPO_CONFIG.read_text(encoding="utf-8")
        + '\n[deployments.ticket-creation]\nparameters = { jira_block = "sandbox-jira" }\n'
        + '\n[webhooks.routes]\n"payment.failed" = [{ deployment = "ticket-creation/default" }, '
        + '{ event = "moltbot.alert.{type}" }]\n',
        encoding="utf-8",
    )


def payment_failed(event_id: str, order: str) -> dict[str, Any]:
    """A Stripe-style `payment.failed` event body."""
    return {
        "id": event_id,
        "type": "payment.failed",
        "created": int(time.time()),
        "data": {
            "order_id": order,
            "amount": 45000,
            "provider": "toss",
            "error_code": "CARD_DECLINED",
            "severity": "high",
            "customer_email": "minji.kim@example.com",
        },
    }


def post_signed(gateway: str, event: dict[str, Any]) -> httpx.Response:
    body = json.dumps(event, ensure_ascii=False).encode()
    signature = sign_stripe(body, SECRET, int(time.time()))
    return httpx.post(
        f"{gateway}/hooks/stripe",
        content=body,
        headers={"Stripe-Signature": signature, "Content-Type": "application/json"},
        timeout=10,
    )


def health(gateway: str) -> dict[str, Any] | None:
    try:
        response = httpx.get(f"{gateway}/healthz", timeout=2)
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None


def gateway_process(folder: Path, env: dict[str, str]) -> tuple[Any, str]:
    port = free_port()
    command = moltbot_command("webhook", "serve", "--port", str(port))
    return (
        background(command, env=env, cwd=folder, log=folder / "gateway.log"),
        f"http://127.0.0.1:{port}",
    )


def test_a_signed_payment_failed_webhook_becomes_a_completed_ticket_creation_run(
    prefect_server: PrefectServer, sandbox: Sandbox, tmp_path: Path
) -> None:
    api = prefect_server.api_url
    with prefect_server.as_current():
        save_sandbox_blocks(sandbox)
        save_webhook_sources()
    write_config(tmp_path)
    env = prefect_server.env(MOLTBOT_HOME=str(tmp_path / "home"))
    serve = moltbot_command("serve", "--only", "ticket-creation")
    gateway, url = gateway_process(tmp_path, env)

    with (
        background(serve, env=env, cwd=tmp_path, log=tmp_path / "serve.log"),
        gateway as process,
    ):
        wait_for(lambda: _exists(api, "ticket-creation/default"), timeout=90, what="deployment")
        wait_for(lambda: health(url), timeout=60, what=f"the gateway ({_log(tmp_path)})")
        event = payment_failed("evt_결제_0001", "A-20001")
        accepted = post_signed(url, event)
        duplicate = post_signed(url, event)
        completed = wait_for(
            lambda: runs_in_state(api, "ticket-creation/default", "COMPLETED"),
            timeout=120,
            interval=1,
            what="a completed ticket-creation run",
        )
        final_health = health(url)
        assert process.poll() is None, _log(tmp_path)

    assert accepted.status_code == 202 and accepted.json()["status"] == "accepted"
    assert duplicate.status_code == 200 and duplicate.json() == {
        "id": accepted.json()["id"],
        "status": "duplicate",
    }
    [run] = completed
    # A batch of one (nothing else came): its key, stored before the run was asked for, makes
    # the run's idempotency key.
    assert run["idempotency_key"].startswith("batch-")
    assert run["idempotency_key"].endswith(":ticket-creation/default")
    # The run gets the inbox id, not the payload (no customer e-mail in the Prefect UI).
    assert run["parameters"]["inbox_ids"] == [accepted.json()["id"]]
    assert "minji" not in json.dumps(run["parameters"])
    [issue] = sandbox.state.jira.issues("OPS")
    assert issue.summary == "결제 실패: 주문 A-20001 (₩45,000, toss)"
    assert "minji.kim@example.com" not in (issue.description or "")
    assert final_health["inbox"]["dispatched"] == 1


def test_webhooks_taken_while_prefect_is_down_are_dispatched_exactly_once_when_it_is_back(
    tmp_path: Path,
) -> None:
    server = PrefectServer(tmp_path / "server")
    server.start()
    try:
        with server.as_current():
            save_webhook_sources()
        write_config(tmp_path)
        env = server.env(MOLTBOT_HOME=str(tmp_path / "home"))
        deployed = subprocess.run(
            moltbot_command("deploy", "--pool", "hooks", "--only", "ticket-creation"),
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180, check=False,
        )  # fmt: skip
        assert deployed.returncode == 0, deployed.stderr
        deployment_id = read_deployment(server.api_url, "ticket-creation/default")["id"]
        gateway, url = gateway_process(tmp_path, env)
        with gateway as process:
            wait_for(lambda: health(url), timeout=60, what=f"the gateway ({_log(tmp_path)})")
            server.stop()
            answers = [
                post_signed(url, payment_failed(f"evt_{number:02d}", f"B-{number:05d}"))
                for number in range(20)
            ]
            while_down = health(url)
            server.start()
            back = wait_for(
                lambda: _settled(url, 20),
                timeout=180,
                interval=1,
                what=f"20 dispatched inbox entries ({_log(tmp_path)})",
            )
            assert process.poll() is None, _log(tmp_path)
        runs = flow_runs(server.api_url, deployment_id=deployment_id)
        # The server stores received events in batches (every few seconds): wait for them.
        events = wait_for(
            lambda: _alert_events(server.api_url, 20),
            timeout=30,
            what="the 20 alert events stored",
        )
    finally:
        server.stop()

    assert [answer.status_code for answer in answers] == [202] * 20
    assert while_down["inbox"]["pending"] == 20
    assert back["inbox"] == {"pending": 0, "dispatched": 20, "failed": 0, "ignored": 0}
    # Batches of entries, one run each: every webhook in exactly one run, none lost or doubled.
    assert 1 <= len(runs) < 20
    assert len({run["idempotency_key"] for run in runs}) == len(runs)
    assert sorted(entry for run in runs for entry in run["parameters"]["inbox_ids"]) == sorted(
        answer.json()["id"] for answer in answers
    )
    # The alert route's Prefect event, once per webhook as well.
    assert len(events) == 20


def test_a_gateway_restarted_while_prefect_is_down_accepts_and_dispatches_once_it_is_back(
    tmp_path: Path,
) -> None:
    server = PrefectServer(tmp_path / "server")
    server.start()
    home = tmp_path / "home"
    try:
        with server.as_current():
            save_webhook_sources()
        write_config(tmp_path)
        env = server.env(
            MOLTBOT_HOME=str(home), MOLTBOT_SECRET_CACHE_KEY=Fernet.generate_key().decode()
        )
        deployed = subprocess.run(
            moltbot_command("deploy", "--pool", "hooks", "--only", "ticket-creation"),
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180, check=False,
        )  # fmt: skip
        assert deployed.returncode == 0, deployed.stderr
        deployment_id = read_deployment(server.api_url, "ticket-creation/default")["id"]
        # A start with Prefect up loads the blocks and leaves their encrypted copy behind.
        first, first_url = gateway_process(tmp_path, env)
        with first:
            wait_for(lambda: health(first_url), what=f"the gateway ({_log(tmp_path)})")
        cached = (home / "webhook-secrets.fernet").read_bytes()
        server.stop()

        restarted, url = gateway_process(tmp_path, env)
        with restarted as process:
            wait_for(lambda: health(url), what=f"the gateway restarted ({_log(tmp_path)})")
            events = [
                payment_failed(f"evt_down_{number}", f"C-{number:05d}") for number in range(5)
            ]
            answers = [post_signed(url, event) for event in events]
            duplicate = post_signed(url, events[0])
            while_down = health(url)
            server.start()
            back = wait_for(
                lambda: _settled(url, 5), what=f"5 dispatched inbox entries ({_log(tmp_path)})"
            )
            assert process.poll() is None, _log(tmp_path)
        runs = flow_runs(server.api_url, deployment_id=deployment_id)
    finally:
        server.stop()

    assert SECRET.encode() not in cached and b"whsec_e2e" not in cached
    # The whole log: `_log` keeps only its end, and this line comes first.
    assert "from the local secret cache" in (tmp_path / "gateway.log").read_text(errors="replace")
    assert [answer.status_code for answer in answers] == [202] * 5
    assert duplicate.status_code == 200 and duplicate.json()["id"] == answers[0].json()["id"]
    assert while_down["inbox"]["pending"] == 5
    assert back["inbox"] == {"pending": 0, "dispatched": 5, "failed": 0, "ignored": 0}
    # Every webhook in exactly one run (batches of them): none lost, none doubled.
    assert 1 <= len(runs) <= 5
    assert sorted(entry for run in runs for entry in run["parameters"]["inbox_ids"]) == sorted(
        answer.json()["id"] for answer in answers
    )


def _alert_events(api: str, count: int) -> list[dict[str, Any]] | None:
    events = httpx.post(
        f"{api}/events/filter",
        json={"filter": {"event": {"name": ["moltbot.alert.payment.failed"]}}, "limit": 50},
        timeout=10,
    ).json()["events"]
    return events if len(events) >= count else None


def _settled(url: str, count: int) -> dict[str, Any] | None:
    current = health(url)
    if current and current["inbox"]["dispatched"] + current["inbox"]["failed"] >= count:
        return current
    return None


def _exists(api: str, full_name: str) -> bool:
    return httpx.get(f"{api}/deployments/name/{full_name}", timeout=10).status_code == 200


def _log(folder: Path) -> str:
    path = folder / "gateway.log"
    return path.read_text(errors="replace")[-2000:] if path.exists() else "(no gateway log)"

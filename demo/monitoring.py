"""The demo's monitoring legs: service-health on switchable sandbox targets, and reconcile."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from moltbot.config.settings import Settings

DEMO_SERVICES = ("shop", "api")
"""The sandbox targets the demo watches; `api` goes down and comes back on the first demo."""


def demo_services(sandbox: Any) -> dict[str, dict[str, Any]]:
    """The `services` parameter: two sandbox targets, the API checked for its body text too."""
    base = f"{sandbox.base_url}/targets"
    return {
        "shop": {"url": f"{base}/shop", "latency_ms": 2000},
        "api": {"url": f"{base}/api", "contains": "OK", "latency_ms": 2000},
    }


DEMO_KAKAOWORK_BLOCK = "demo-kakaowork"
DEMO_JANDI_BLOCK = "demo-jandi"


def save_messenger_channels(sandbox: Any) -> tuple[str, str]:
    """Save a KakaoWork bot whose app key the sandbox refuses (revoked) and a JANDI webhook on
    this sandbox; return their names, the fallback chain (KakaoWork first)."""
    from blocks import JandiIncomingWebhook, KakaoWorkBot
    from moltbot.audit import save_block

    save_block(
        KakaoWorkBot(
            app_key="revoked-demo-app-key",
            base_url=f"{sandbox.base_url}/kakaowork",
            emails=["oncall@moltbot.test"],
        ),
        DEMO_KAKAOWORK_BLOCK,
    )
    save_block(JandiIncomingWebhook(url=sandbox.jandi_webhook_url("oncall")), DEMO_JANDI_BLOCK)
    return DEMO_KAKAOWORK_BLOCK, DEMO_JANDI_BLOCK


def _demo_states_known(settings: Settings) -> bool:
    from flows.service_health.render import AUTOMATION
    from moltbot.state.ledger import Ledger
    from moltbot.state.service_health import ServiceHealthStore

    with Ledger.from_settings(settings) as ledger:
        return set(DEMO_SERVICES) <= set(ServiceHealthStore(ledger, AUTOMATION).read())


def run_service_health_demo(
    console: Console, settings: Settings, sandbox: Any, channels: list[str]
) -> Any:
    """Watch two sandbox targets; on the first demo `api` fails three checks, then recovers.

    The first check of a service sends nothing (there is no change yet); three failed checks in
    a row make `api` DOWN (one alert), and the next good check a recovery saying how long it
    was down. Later demos find the states in the ledger and check once: nothing changed, so
    nothing is sent.
    """
    from demo.run import _state, _word, demo_tags, say, text
    from flows.service_health.flow import ServiceHealthResult, service_health

    targets = sandbox.state.targets
    services = demo_services(sandbox)
    # The on-call room is on KakaoWork, whose app key was revoked: each alert falls back to
    # JANDI along the same route (and goes to the outbox too).
    routes = {"down": [list(save_messenger_channels(sandbox)), "outbox"]}
    # (what `api` does before the check) per check: up, three failures, up again.
    modes = ["up"] if _demo_states_known(settings) else ["up", "down", "down", "down", "up"]
    sent: dict[str, list[str]] = {}
    state = None
    for mode in modes:
        targets.set("api", mode)
        with demo_tags("service-health"):
            state = service_health(
                services=services, channels_by_severity=routes, return_state=True
            )
        result = ServiceHealthResult.model_validate(state.result())
        for delivery in result.deliveries:
            took = f"{delivery.channel} {_word(delivery.status)}"
            if delivery.via and delivery.via != delivery.channel:
                took = text("fell_back", first=delivery.channel, via=delivery.via)
                took += f" {_word(delivery.status)}"
            sent.setdefault(delivery.severity or "", []).append(took)
    if len(modes) == 1:
        say(console, text("health_quiet", services=len(services)))
    else:
        outcomes = (f"{_state(severity)}: {', '.join(outs)}" for severity, outs in sent.items())
        say(console, text("health_line", checks=len(modes)) + " · ".join(outcomes))
    return state


def run_reconcile_demo(console: Console) -> Any:
    """Compare what the demo's runs should have produced with the effects the ledger recorded."""
    from demo.run import demo_tags, say, text
    from flows.reconcile.flow import ReconcileResult, reconcile

    with demo_tags("reconcile"):
        state = reconcile(return_state=True)
    result = ReconcileResult.model_validate(state.result())
    expected = sum(int(rate["expected"]) for rate in result.omission_rate.values())
    say(console, text("reconcile_line", expected=expected, omissions=result.omissions_total))
    return state


DEMO_CUSTOMER = "cus_demo_0007"
DEMO_PAYMENT_AMOUNTS = (89000, 89000, 45000)
"""Three failed attempts of one customer (KRW): enough to open the repeated-customer ticket."""


def stripe_payment_failed(number: int, created: int) -> dict[str, Any]:
    """A Stripe `payment_intent.payment_failed` event (the shape of Stripe's Event object)."""
    return {
        "id": f"evt_demo_pi_failed_{number:04d}",
        "object": "event",
        "type": "payment_intent.payment_failed",
        "created": created,
        "data": {
            "object": {
                "id": f"pi_demo_{number:04d}",
                "object": "payment_intent",
                "amount": DEMO_PAYMENT_AMOUNTS[number - 1],
                "currency": "krw",
                "customer": DEMO_CUSTOMER,
                "receipt_email": "jiyoung.park@example.com",
                "latest_charge": f"ch_demo_{number:04d}",
                "last_payment_error": {
                    "code": "card_declined",
                    "decline_code": "insufficient_funds" if number < 3 else "do_not_honor",
                    "message": "Your card has insufficient funds.",
                },
            }
        },
    }


def run_payments_demo(console: Console, settings: Settings, channels: list[str]) -> Any:
    """Three signed Stripe failures of one customer through the gateway, then the 5-minute alert.

    Each event becomes a `payment-failures/demo` run (the inbox id its only parameter); the
    third failure within 24 hours opens one Jira ticket through ticket-creation. A scheduled
    check, run as if the 5-minute window had closed, sends the window's one alert. Later demos
    post the same event ids: the gateway answers duplicate, and the window was alerted already.
    """
    import secrets
    import time
    from datetime import UTC, datetime, timedelta

    from demo.run import _word, demo_tags, say, text
    from demo.webhook import (
        execute_flow_run,
        post_event,
        register_demo_deployment,
        running_gateway,
    )
    from flows.payment_failures.flow import PaymentFailuresResult, payment_failures
    from moltbot.sandbox.blocks import SANDBOX_JIRA_BLOCK
    from moltbot.state.ledger import Ledger

    register_demo_deployment(SANDBOX_JIRA_BLOCK, "payment-failures")
    secret = f"whsec_demo_{secrets.token_hex(8)}"
    created = int(time.time())
    events = [stripe_payment_failed(number, created) for number in (1, 2, 3)]
    ledger_url = settings.resolved_ledger_url
    with demo_tags("payment-failures"):
        with running_gateway(ledger_url, secret) as url, Ledger(ledger_url) as ledger:
            posted = [post_event(url, secret, event, ledger) for event in events]
        tickets: list[str] = []
        for _, entry in posted:
            if entry is not None:
                result = execute_flow_run(entry.flow_run_id, "payment-failures")
                tickets += [ticket.get("issue") or "" for ticket in result["tickets"]]
        # As the scheduled check would run once the window has closed.
        state = payment_failures(
            now=datetime.now(UTC) + timedelta(minutes=6),
            channels_by_severity={"alert": [channels[0], "outbox"]},
            return_state=True,
        )
    result = PaymentFailuresResult.model_validate(state.result())
    accepted = sum(entry is not None for _, entry in posted)
    sent = ", ".join(f"{d.channel} {_word(d.status)}" for d in result.deliveries)
    if not accepted and not sent:
        say(console, text("payments_duplicate", events=len(events)))
        return state
    say(
        console,
        text(
            "payments_line",
            accepted=accepted,
            tickets=", ".join(key for key in tickets if key) or text("no_issue"),
            sent=sent or text("nothing_to_send"),
        ),
    )
    return state


def sample_log_path(settings: Settings) -> Any:
    """Where the demo keeps its sample application log (the error-spike source)."""
    return settings.home / "sample" / "logs" / "app.log"


def write_sample_log(path: Any, now: Any) -> int:
    """A few minutes of an application's JSON log ending in a burst of payment errors.

    Returns:
        How many error lines it holds.
    """
    import json
    from datetime import timedelta

    lines = []
    for minute in range(10, 0, -1):
        at = (now - timedelta(minutes=minute)).isoformat()
        lines.append({"timestamp": at, "level": "INFO", "message": f"served {40 + minute} orders"})
    errors = 0
    for number in range(24):
        at = (now - timedelta(seconds=24 - number)).isoformat()
        customer = f"user{number:02d}@example.com" if number % 3 else f"010-2345-67{number:02d}"
        message = (
            f"payment declined for {customer} after {900 + number} ms"
            if number % 4
            else f"timeout calling pg-gateway order ORD-{20261203_0000 + number}"
        )
        lines.append({"timestamp": at, "level": "ERROR", "message": message})
        errors += 1
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as log:
        log.writelines(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
    return errors


def burst_end(now: Any, *, window_seconds: int = 300, burst_seconds: int = 24) -> Any:
    """When the sample log's burst of errors ends: `now`, unless the burst would then straddle
    two of error-spike's windows (epoch-aligned, 5 minutes by default), each judged alone and
    each too small to spike; then just before the running window began."""
    from datetime import timedelta

    into = int(now.timestamp()) % window_seconds
    if into > burst_seconds:
        return now
    return now - timedelta(seconds=into + 1)


def run_error_spike_demo(console: Console, settings: Settings, channels: list[str]) -> Any:
    """Count the sample log's errors; on the first demo it ends in a burst, alerted once.

    Later demos find the log in place and read only what was appended (nothing): no new
    window, no message.
    """
    from datetime import UTC, datetime

    from demo.run import _word, demo_tags, say, text
    from flows.error_spike.flow import ErrorSpikeResult, error_spike

    log = sample_log_path(settings)
    if not log.is_file():
        write_sample_log(log, burst_end(datetime.now(UTC)))
    with demo_tags("error-spike"):
        state = error_spike(
            sources={"app": {"paths": str(log)}},
            channels=[channels[0], "outbox"],
            return_state=True,
        )
    result = ErrorSpikeResult.model_validate(state.result())
    sent = ", ".join(f"{d.channel} {_word(d.status)}" for d in result.deliveries)
    say(
        console,
        text(
            "spike_line",
            lines=result.read["lines"],
            errors=result.read["error_lines"],
            spikes=len(result.transitions),
            sent=sent or text("nothing_to_send"),
        ),
    )
    return state

"""The terminal views of the monitoring automations' results, in English and Korean."""

from __future__ import annotations

import pytest
from rich.console import Console

from moltbot.resultview import result_view


def rendered(name: str, result: dict, locale: str = "en") -> str:
    console = Console(width=160, record=True, color_system=None)
    for part in result_view(name, result, currency="KRW", locale=locale):
        console.print(part)
    return console.export_text()


HEALTH = {
    "counts": {"UP": 1, "DEGRADED": 0, "DOWN": 1, "UNKNOWN": 0},
    "checks": [
        {"service": "shop", "state": "UP", "status_code": 200, "latency_ms": 1234,
         "reason": None, "failures": 0},
        {"service": "api", "state": "DOWN", "status_code": 503, "latency_ms": 12,
         "reason": "unexpected status 503", "failures": 3},
    ],
    "deliveries": [],
}  # fmt: skip
SPIKE = {
    "sources": [{"source": "app", "previous_count": 31, "current_count": 4, "baseline": 2.5,
                 "threshold": 10.0, "spiking": True}],
    "read": {"lines": 12000},
    "deliveries": [],
}  # fmt: skip
PAYMENTS = {
    "events_read": 3, "recorded": 2, "duplicates": 1, "rejected": ["x"], "alerts": [{}],
    "summaries": [], "tickets": [{}, {}], "deliveries": [],
}  # fmt: skip
RECONCILE = {
    "omissions_total": 2,
    "new_omissions": 1,
    "omission_rate": {
        "form-digest": {"expected": 4, "omissions": 1, "rate": 0.25},
        "ticket-creation": {"expected": 3, "omissions": 1, "rate": 0.3333},
    },
    "deliveries": [],
}


def test_service_health_lists_every_check() -> None:
    text = rendered("service-health", HEALTH)

    assert "service-health: 1 UP · 1 DOWN" in text
    assert "api" in text and "503" in text and "unexpected status 503" in text
    assert "1,234" in text


def test_error_spike_shows_counts_against_threshold() -> None:
    text = rendered("error-spike", SPIKE)

    assert "error-spike: 12,000 new lines read" in text
    assert "│ app    │" in text and "31" in text and "2.5" in text and "yes" in text


def test_payment_failures_counts() -> None:
    assert (
        "payment-failures: 3 events read · 2 recorded · 1 duplicates · 1 rejected · "
        "1 window alerts · 0 daily summaries · 2 tickets"
    ) in rendered("payment-failures", PAYMENTS)


@pytest.mark.parametrize(
    ("locale", "words"),
    [("en", ("reconcile: 2 omissions · 1 new", "omission rate", "25.0%", "33.3%")),
     ("ko", ("reconcile: 2 누락 · 1 새 누락", "누락률", "25.0%", "자동화"))],
)  # fmt: skip
def test_reconcile_shows_the_rate_per_automation(locale: str, words: tuple[str, ...]) -> None:
    text = rendered("reconcile", RECONCILE, locale)

    for word in words:
        assert word in text

"""The monitoring automations with their ledger on PostgreSQL, as production runs them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from flows.reconcile.flow import reconcile
from moltbot.state.ledger import Ledger
from moltbot.state.log_offsets import log_offsets_table
from moltbot.state.payments import payments_table
from tests.flows import test_error_spike_flow as spikes
from tests.flows import test_payment_failures_flow as payments
from tests.flows import test_service_health_flow as health

# The modules' own fixtures, under names that say whose they are.
health_slack = health.slack
spike_slack = spikes.channels
payments_setup = payments.setup

pytestmark = pytest.mark.slow


@pytest.fixture
def ledger_url(postgres_database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("MOLTBOT_LEDGER_URL", postgres_database_url)
    return postgres_database_url


@pytest.fixture
def gateway(ledger_url: str):
    with Ledger(ledger_url) as ledger:
        yield payments.Gateway(payments.Inbox(ledger))


def test_service_health_keeps_its_failure_streaks_on_postgresql(ledger_url, health_slack, sandbox):
    health.write_config(sandbox, "pg-api")
    sandbox.state.targets.set("pg-api", "down")
    runs = [health.run() for _ in range(3)]
    sandbox.state.targets.set("pg-api", "up")
    runs.append(health.run())

    assert [len(r["transitions"]) for r in runs] == [0, 0, 1, 1]
    down, recovered = health.posts(sandbox, health_slack)
    assert "pg-api" in down and "pg-api" in recovered
    assert health.stored() == {"pg-api": ("UP", 0)}


def test_error_spike_commits_offsets_and_counts_on_postgresql(
    ledger_url, tmp_path, spike_slack, sandbox
):
    log = tmp_path / "logs" / "checkout.log"
    now = datetime.now(UTC)
    spikes.write_log(log, spikes.quiet_history(now) + spikes.spike_lines(now))

    first, second = spikes.run(log), spikes.run(log)

    assert [t["count"] for t in first["transitions"]] == [30]
    assert second["transitions"] == [] and second["read"]["bytes_read"] == 0
    assert len(spikes.posts(sandbox, spike_slack)) == 1
    with Ledger(ledger_url) as ledger, ledger.engine.connect() as conn:
        offsets = conn.execute(select(log_offsets_table.c.offset)).scalars().all()
    assert offsets == [log.stat().st_size]


def test_payment_failures_and_reconcile_on_postgresql(ledger_url, gateway, payments_setup):
    jira = payments_setup.state.jira
    ids = [
        gateway.accept(payments.intent_failed(n, payments.seoul(f"10:0{n}:00")))[0]
        for n in range(1, 4)
    ]

    results = [payments.run(inbox_ids=[entry]) for entry in ids]
    again = payments.run(inbox_ids=[ids[-1]])
    checked = reconcile()

    assert len(jira.issues("OPS")) == 1
    assert [len(r["tickets"]) for r in results] == [0, 0, 1]
    assert (again["recorded"], again["duplicates"]) == (0, 1)
    with Ledger(ledger_url) as ledger, ledger.engine.connect() as conn:
        stored = conn.execute(select(func.count()).select_from(payments_table)).scalar()
        emails = conn.execute(
            select(func.count())
            .select_from(payments_table)
            .where(payments_table.c.customer_label.contains(payments.EMAIL))
        ).scalar()
    assert (stored, emails) == (3, 0)
    # The runs were started here, not by the dispatcher: reconcile finds the three entries still
    # pending in the inbox (and nothing else: the ticket is recorded, the events are stored).
    assert (
        sorted((o["automation"], o["reason"]) for o in checked["omissions"])
        == [("payment-failures", "inbox_pending")] * 3
    )
    assert sorted(o["item"] for o in checked["omissions"]) == sorted(ids)

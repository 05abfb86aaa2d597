"""The ledger's added columns on an older ledger (SQLite and PostgreSQL), and holder liveness."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from moltbot.effects.breaker import CircuitBreaker
from moltbot.effects.holders import current_holder, holder_is_dead, process_is_gone
from moltbot.state.ledger import EffectStatus, Ledger

# The effects table as moltbot created it before the effects layer.
OLD_EFFECTS = """
CREATE TABLE effects (
    key VARCHAR(512) PRIMARY KEY, automation VARCHAR(200) NOT NULL, flow_run_id VARCHAR(64),
    kind VARCHAR(32) NOT NULL, target VARCHAR(255) NOT NULL, status VARCHAR(16) NOT NULL,
    attempts INTEGER NOT NULL, created_at TIMESTAMP NOT NULL, updated_at TIMESTAMP NOT NULL,
    remote_id VARCHAR(512), error TEXT
)
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def old_ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres_database_url")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS effects"))
        conn.execute(text(OLD_EFFECTS))
        conn.execute(
            text(
                "INSERT INTO effects VALUES ('old:1', 'daily-report', NULL, 'message', "
                "'outbox', 'done', 1, '2026-11-01 00:00:00', '2026-11-01 00:00:00', NULL, NULL)"
            )
        )
    engine.dispose()
    return url


def test_an_older_ledger_gains_the_new_columns_and_keeps_its_rows(old_ledger_url: str) -> None:
    with Ledger(old_ledger_url) as ledger:
        old = ledger.get("old:1")
        claim = ledger.claim(
            "new:1",
            automation="test",
            kind="message",
            target="outbox",
            holder=current_holder(),
            details={"route": '["outbox"]', "policy": "at_most_once", "payload": "{}"},
        )

        assert old is not None and old.status == EffectStatus.DONE and old.holder is None
        assert claim.acquired and claim.effect.policy == "at_most_once"
        assert ledger.get("new:1").route == '["outbox"]'
        breaker = CircuitBreaker(ledger.engine, threshold=1, cooldown_seconds=60)
        assert breaker.state("anything").failures == 0


def test_holders_of_this_process_and_of_an_ended_one() -> None:
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    host = current_holder().split("/")[0]

    assert process_is_gone(current_holder()) is False
    assert process_is_gone(f"{host}/{ended.stdout.strip()}/1") is True
    assert process_is_gone("another-host/1/1") is None


def test_a_holder_on_another_host_is_dead_once_prefect_says_its_run_is_over(
    prefect_api: str, tmp_path: Path
) -> None:
    from prefect import flow

    @flow(name="effects-holder-probe")
    def crashes() -> None:
        raise RuntimeError("the process running it died")

    state = crashes(return_state=True)
    run_id = str(state.state_details.flow_run_id)

    with Ledger(f"sqlite:///{tmp_path / 'l.sqlite3'}") as ledger:
        ledger.claim("k", automation="t", kind="message", target="x", flow_run_id=run_id,
                     holder="another-host/1/1")  # fmt: skip
        ledger.claim("live", automation="t", kind="message", target="x", flow_run_id=None,
                     holder="another-host/1/1")  # fmt: skip
        assert holder_is_dead(ledger.get("k")) is True
        # Nothing says it ended: the lease decides.
        assert holder_is_dead(ledger.get("live")) is False

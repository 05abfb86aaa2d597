"""`moltbot audit`: what runs, replays and resolutions record, and `--verify` on tampering."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactCollectionFilter,
    ArtifactCollectionFilterKey,
)
from sqlalchemy import delete, update
from typer.testing import CliRunner

from moltbot.audit import artifact_key, audit_clock, cli_actor, run_actor
from moltbot.cli import app
from moltbot.state.audit import AuditTrail, audit_table
from moltbot.state.ledger import Ledger
from tests.flows.test_daily_report_flow import ORDERS_CSV

runner = CliRunner()
DAILY = "deployment:daily-report/daily"


@pytest.fixture
def orders_csv(tmp_path: Path) -> Path:
    path = tmp_path / "orders.csv"
    path.write_text(ORDERS_CSV, encoding="utf-8")
    return path


def entries(*extra: str) -> list[dict]:
    result = runner.invoke(app, ["audit", "--json", *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["entries"]


@pytest.mark.parametrize(
    ("tags", "deployment", "scheduled", "expected"),
    [
        (["daily-report", "schedule"], "daily-report/daily", True, f"{DAILY} (schedule)"),
        (["ticket-creation", "webhook"], "ticket-creation/webhook", False, "webhook"),
        (["webhook", "webhook:stripe"], "ticket-creation/webhook", False, "webhook:stripe"),
        (["daily-report", "cli"], None, False, cli_actor()),
        (["daily-report"], "daily-report/daily", False, DAILY),
    ],
)  # fmt: skip
def test_the_actor_of_a_run_says_what_started_it(tags, deployment, scheduled, expected) -> None:
    assert run_actor(tags, deployment=deployment, auto_scheduled=scheduled) == expected


def latest_table(day: date) -> tuple[list[dict], str]:
    """The rows and description of the latest version of `day`'s audit artifact."""
    with get_client(sync_client=True) as client:
        [artifact] = client.read_latest_artifacts(
            artifact_filter=ArtifactCollectionFilter(
                key=ArtifactCollectionFilterKey(any_=[artifact_key(day)])
            )
        )
    table = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
    return table, artifact.description or ""


def test_a_cli_run_is_recorded_with_its_user_and_outcome(
    prefect_api: str, orders_csv: Path, tmp_path: Path
) -> None:
    (tmp_path / "moltbot.toml").write_text('locale = "en"\n', encoding="utf-8")
    # Both runs at the same instant, on a day of this test's own in the shared Prefect server.
    at = datetime(2031, 5, 20, 12, 0, tzinfo=ZoneInfo("Asia/Seoul"))
    with audit_clock(lambda: at):
        ok = runner.invoke(app, ["run", "daily-report", "--param", f"source={orders_csv}",
                                 "--dry-run", "--json"])  # fmt: skip
        bad = runner.invoke(
            app, ["run", "daily-report", "--param", f"source={tmp_path / 'no.csv'}"]
        )

    assert (ok.exit_code, bad.exit_code) == (0, 2)
    rows = entries("--automation", "daily-report")
    assert [(row["action"], row["outcome"]) for row in rows] == [
        ("run", "completed (dry run)"),
        ("run", "failed"),
    ]
    assert {row["actor"] for row in rows} == {cli_actor()}
    assert rows[0]["parameters"]["source"] == str(orders_csv)
    assert "dry_run" not in rows[0]["parameters"]
    assert "no.csv" in rows[1]["detail"]
    changed = [row for row in entries() if row["action"] == "config changed"]
    assert len(changed) == 1 and changed[0]["target"] == "moltbot.toml"
    # The day's first run published the day's trail (the second is within the interval);
    # `moltbot audit --publish` publishes it again, whole.
    table, _ = latest_table(at.date())
    assert [(row["action"], row["outcome"]) for row in table] == [
        ("config changed", "ok"),
        ("run", "completed (dry run)"),
    ]
    with audit_clock(lambda: at):
        published = runner.invoke(app, ["audit", "--publish"])
    table, description = latest_table(at.date())
    assert published.exit_code == 0, published.output
    assert [(row["action"], row["outcome"]) for row in table] == [
        ("config changed", "ok"),
        ("run", "completed (dry run)"),
        ("run", "failed"),
    ]
    assert f"{len(table)} entries" in description


def test_verify_names_the_first_bad_row_and_exits_1() -> None:
    ledger = Ledger.from_settings()
    trail = AuditTrail(ledger)
    for number in range(4):
        trail.record("run", f"flow run r{number}", actor="user:alice", automation="daily-report")

    intact = runner.invoke(app, ["audit", "--verify"])
    with ledger.engine.begin() as conn:
        conn.execute(update(audit_table).where(audit_table.c.seq == 2).values(outcome="no"))
    altered = runner.invoke(app, ["audit", "--verify", "--json"])
    with ledger.engine.begin() as conn:
        conn.execute(delete(audit_table).where(audit_table.c.seq >= 3))
    korean = runner.invoke(app, ["--locale", "ko", "audit", "--verify"])

    assert intact.exit_code == 0 and "4 row(s) verified" in intact.stdout
    assert altered.exit_code == 1
    assert json.loads(altered.stdout)["verify"]["first_bad"] == 2
    assert "row 2 was altered" in altered.stderr
    assert korean.exit_code == 1 and "2번 행이 변경되었습니다" in korean.stderr
    assert "행위자" in korean.stdout and "실행" in korean.stdout
    ledger.close()


def test_since_takes_an_age_and_refuses_anything_else() -> None:
    assert entries("--since", "7d") == []
    bad = runner.invoke(app, ["audit", "--since", "last tuesday"])

    assert bad.exit_code == 2
    assert "--since must be a positive whole number" in bad.stderr
    assert "tuesday" not in bad.stderr

"""The local background Prefect server: started once by the first command, reused, stopped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from moltbot.localserver import LocalServer, ServerError
from tests.flows.test_daily_report_flow import ORDERS_CSV
from tests.prefect_database import copy_migrated_database


def moltbot(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`moltbot ARGS` as a new process with no Prefect API configured (a fresh user's shell)."""
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith("PREFECT_")
    }
    # Only the tests' one-certificate trust store stays (see tests/conftest.py).
    environment["PREFECT_API_SSL_CERT_FILE"] = os.environ["PREFECT_API_SSL_CERT_FILE"]
    environment |= {
        "MOLTBOT_HOME": str(home),
        "PREFECT_HOME": str(home / "prefect-profile"),  # no profile of this machine's user
        "COLUMNS": "200",
    }
    return subprocess.run(
        [sys.executable, "-m", "moltbot.cli", *args],
        capture_output=True, text=True, env=environment, cwd=home, check=False,
    )  # fmt: skip


@pytest.mark.slow
def test_the_first_command_starts_the_server_later_ones_reuse_it_and_stop_ends_it(
    tmp_path: Path,
) -> None:
    home = tmp_path / "fresh"
    home.mkdir()
    orders = home / "orders.csv"
    orders.write_text(ORDERS_CSV, encoding="utf-8")
    run = ("run", "daily-report", "--param", f"source={orders}",
           "--param", "report_date=2026-11-23", "--dry-run", "--json")  # fmt: skip
    server = LocalServer(home / "prefect")
    # Prefect's schema already in place (tests/prefect_database.py): what is tested here is that
    # the first command starts the server, not Prefect's ~4 s of migrations.
    copy_migrated_database(home / "prefect" / "prefect.db")
    try:
        first = moltbot(home, *run)
        assert first.returncode == 0, first.stderr
        record = server.status().record
        assert record is not None
        second = moltbot(home, *run)
        assert second.returncode == 0, second.stderr
        # The second command found the running server: no second one was started.
        assert server.status().record == record
        assert json.loads(second.stdout)["kpis"]["revenue"] == 47000.0

        # Both runs are in the server's history, named and tagged for the Prefect UI.
        runs = httpx.post(f"{record.api_url}/flow_runs/filter", json={}).json()
        assert len(runs) == 2
        assert {tag for flow_run in runs for tag in flow_run["tags"]} >= {
            "daily-report",
            "dry-run",
            "cli",
        }
        assert all(flow_run["name"].startswith("daily-report 2026-11-23") for flow_run in runs)

        status = moltbot(home, "server", "status")
        assert status.returncode == 0
        assert f"UI:       {record.ui_url}" in status.stdout
        assert str(home / "prefect" / "prefect.db") in status.stdout
        # Telemetry is off in the server moltbot starts.
        environ = Path(f"/proc/{record.pid}/environ").read_bytes().split(b"\0")
        assert b"DO_NOT_TRACK=1" in environ
        assert b"PREFECT_SERVER_ANALYTICS_ENABLED=false" in environ
        # …and its task-run recorder writes in batches (SQLite takes one writer at a time).
        assert b"PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE=200" in environ
    finally:
        stopped = moltbot(home, "server", "stop")
    assert stopped.returncode == 0
    assert f"pid {record.pid}" in stopped.stdout
    assert not server.status().running
    assert moltbot(home, "server", "status").returncode == 1
    # History stays in the database after the server stopped.
    assert (home / "prefect" / "prefect.db").stat().st_size > 0


def test_a_server_that_cannot_start_is_one_line_with_what_to_do(tmp_path: Path) -> None:
    server = LocalServer(tmp_path / "prefect", python="/bin/false")

    with pytest.raises(ServerError) as raised:
        server.ensure()

    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("the local Prefect server exited with code 1 while starting")
    assert str(tmp_path / "prefect" / "server.log") in message
    assert "PREFECT_API_URL" in message
    assert not server.status().running


def test_status_of_a_home_without_a_server(tmp_path: Path) -> None:
    status = LocalServer(tmp_path / "prefect").status()

    assert not status.running and status.record is None
    assert LocalServer(tmp_path / "prefect").stop() is None


def test_the_local_servers_retention_turns_the_flow_run_vacuum_on(monkeypatch) -> None:
    """Prefect itself reads the variables the local server is started with."""
    from datetime import timedelta

    from prefect.settings import Settings

    from moltbot.localserver import RETENTION_DEFAULTS

    for name, value in RETENTION_DEFAULTS.items():
        monkeypatch.setenv(name, value)
    vacuum = Settings().server.services.db_vacuum

    assert vacuum.enabled == {"events", "flow_runs"}
    assert vacuum.retention_period == timedelta(days=90)


def test_the_local_servers_task_run_recorder_writes_in_batches(monkeypatch) -> None:
    """Prefect itself reads the variables: a misspelt one would be ignored without a word."""
    from prefect.settings import Settings

    from moltbot.localserver import SQLITE_WRITE_DEFAULTS

    for name, value in SQLITE_WRITE_DEFAULTS.items():
        monkeypatch.setenv(name, value)
    recorder = Settings().server.services.task_run_recorder

    assert (recorder.batch_size, recorder.read_batch_size) == (200, 200)
    assert recorder.flush_interval == 1.0

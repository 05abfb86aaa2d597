"""`moltbot demo` twice as a real process: first it delivers everywhere, then nothing; its data."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import httpx
import pytest

from tests.e2e.servers import wait_for

pytestmark = pytest.mark.slow
ROOT = Path(__file__).parents[2]


def run_demo(prefect_api: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "moltbot.cli", "demo"],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=180,
        check=False,
    )


def prose_lines(output: str) -> list[str]:
    """The demo's lines outside its tables (and their titles)."""
    table_chars = set("┏┃┡│└━╇┳┩┴┗┛┓┌┐┘├┤┼─")
    lines = [line for line in output.splitlines() if line.strip()]
    return [line for line in lines if not set(line) & table_chars and not line.startswith(" " * 4)]


@pytest.fixture
def session_blocks_restored(sandbox_server: object) -> Iterator[None]:
    """After the test, the `sandbox-*` blocks point at the session sandbox again.

    The demo saves those names pointing at its own sandbox, gone when it ends; the tests this
    worker runs next load them.
    """
    from moltbot.sandbox.blocks import save_sandbox_blocks

    yield
    save_sandbox_blocks(sandbox_server)


def test_demo_delivers_once_then_reports_everything_done(
    prefect_api: str, moltbot_home: Path, tmp_path: Path, session_blocks_restored: None
) -> None:
    shutil.copy(ROOT / "moltbot.toml", tmp_path / "moltbot.toml")  # the ticket mappings
    # The session's server holds other tests' events too: only the demo's are counted below.
    started = datetime.now(UTC)
    first = run_demo(prefect_api, tmp_path)
    inbox_page = (moltbot_home / "inbox" / "index.html").read_text(encoding="utf-8")
    second = run_demo(prefect_api, tmp_path)

    assert first.returncode == 0, first.stderr
    assert "daily-report: demo-slack sent, demo-email sent, outbox sent" in first.stdout
    assert second.returncode == 0, second.stderr
    assert "daily-report: demo-slack skipped, demo-email skipped, outbox skipped" in second.stdout
    ui = prefect_api.removesuffix("/api")
    assert f"The daily-report run in the Prefect UI: {ui}/runs/flow-run/" in second.stdout
    # One screen apart from the tables; Prefect's INFO lines went to the log file.
    assert len(prose_lines(first.stdout)) <= 20, prose_lines(first.stdout)
    assert "Finished in state" not in first.stdout + first.stderr
    assert "Finished in state Completed" in (moltbot_home / "logs" / "moltbot.log").read_text()
    for output in (first.stdout + first.stderr, second.stdout + second.stderr):
        assert "Traceback" not in output
        assert "ERROR" not in output
        # The error-spike leg's own words ("error-spike", "24 errors") are not errors.
        words = re.sub(r"error-spike|\d+ errors", "", output.lower().replace("no error", ""))
        assert "error" not in words
    # The outbox command reads the state the demo left: every effect done, none to replay.
    listed = subprocess.run(
        [sys.executable, "-m", "moltbot.cli", "outbox", "list", "--json"],
        capture_output=True, text=True, cwd=tmp_path, check=True,
    )  # fmt: skip
    entries = json.loads(listed.stdout)
    assert entries and {entry["status"] for entry in entries} == {"done"}
    automations = {e["automation"] for e in entries}
    assert {
        "daily-report",
        "inventory-alert",
        "form-digest",
        "ticket-creation",
        "payment-failures",
        "error-spike",
        "service-health",
    } <= automations
    wide = {**os.environ, "COLUMNS": "200"}
    table = subprocess.run(
        [sys.executable, "-m", "moltbot.cli", "--locale", "ko", "outbox", "list"],
        capture_output=True, text=True, cwd=tmp_path, check=True, env=wide,
    )  # fmt: skip
    assert "자동화" in table.stdout and "daily-report" in table.stdout
    outbox = moltbot_home / "outbox"
    assert len(list(outbox.glob("daily-report-*.html"))) == 1
    assert len(list(outbox.glob("daily-report-*-revenue.png"))) == 1

    # inventory-alert: new low/out items, then a day's changes with recoveries, then nothing.
    assert "inventory-alert, first run: 16 ok · 3 low · 2 out · 3 at risk" in first.stdout
    assert "inventory-alert, a day later: 17 ok · 2 low · 2 out · 1 at risk" in first.stdout
    for change in (
        "MB-003 │ Organic Green Tea 50g │ low -> out",
        "MB-004 │ Phone Case",
        "out -> ok",
    ):
        assert change in first.stdout
    assert "recovered: demo-slack sent, outbox sent" in first.stdout
    assert "inventory-alert, run: 17 ok · 2 low · 2 out · 1 at risk" in second.stdout
    assert "no change since the last run: nothing to send" in second.stdout
    # One out, one low and one recovery file per run that had them: 3 + 2, none the second time.
    assert len(list(outbox.glob("inventory-alert-*.md"))) == 5
    assert len(list(outbox.glob("inventory-alert-*.csv"))) == 5

    # form-digest: the sample responses, then 6 more digested alone, then nothing new.
    assert "form-digest: 22 responses (sheet rows 2–25), 2 need attention" in first.stdout
    assert "form-digest, 6 more answers: 6 responses (sheet rows 26–31)" in first.stdout
    assert "form-digest: no new responses since the last digest: nothing to send" in (second.stdout)
    assert len(list(outbox.glob("form-digest-*.md"))) == 2
    # The Notion pages are linked in the inbox's static copy (the sandbox stops with the demo).
    pages = re.findall(r"-> Notion page (\S+)", first.stdout)
    assert len(pages) == 2 and all((tmp_path / page).is_file() for page in pages)

    # A signed webhook reached a ticket-creation run, which created one Jira issue; the same
    # event again is a duplicate at the gateway.
    assert "webhook: signed payment.failed -> gateway 202 -> ticket-creation run -> Jira OPS-1" in (
        first.stdout
    )
    assert "already received (gateway: 200 duplicate)" in second.stdout

    # Monitoring: three Stripe failures of one customer open one ticket and one window alert;
    # the sample log's burst of errors alerts once; a service down for three checks alerts
    # once and recovers; reconcile finds every expected effect. The second demo adds nothing.
    assert (
        "payment-failures: 3 signed Stripe failures of one customer accepted -> Jira OPS-2 · "
        "5-minute alert: demo-slack sent, outbox sent"
    ) in first.stdout
    assert "the 3 signed Stripe failures were already received" in second.stdout
    assert "error-spike: sample log, 34 new lines, 24 errors -> 1 change(s): demo-slack sent" in (
        first.stdout
    )
    assert "error-spike: sample log, 0 new lines, 0 errors -> 0 change(s): nothing to send" in (
        second.stdout
    )
    # The on-call KakaoWork bot's key is revoked: both alerts fall back to JANDI on their route.
    assert (
        "api switched off for 3 checks -> down: demo-kakaowork refused -> demo-jandi sent, "
        "outbox sent · recovered: demo-kakaowork refused -> demo-jandi sent, outbox sent"
    ) in first.stdout
    assert "service-health: 2 services checked, no change since the last check" in second.stdout
    for output in (first.stdout, second.stdout):
        assert re.search(
            r"reconcile: \d+ items that should have produced an effect, 0 omissions", output
        )

    # The static copy of the sandbox's inbox shows what arrived where.
    assert "OPS-1" in inbox_page and "결제 실패" in inbox_page
    assert "moltbot digests" in inbox_page or "form-digest" in inbox_page.lower()
    assert "demo-slack" in inbox_page or "Slack" in inbox_page
    assert "Messengers and SMS (2)" in inbox_page and "JANDI" in inbox_page

    # The demo's runs send no heartbeats (nothing watches them for crashes). Their state events
    # reached the server, so a heartbeat would have too.
    completed = wait_for(
        lambda: count_events(prefect_api, "prefect.flow-run.Completed", started),
        interval=0.2,
        what="the demo's Completed events stored (the server writes events in batches)",
    )
    assert completed > 0
    assert count_events(prefect_api, "prefect.flow-run.heartbeat", started) == 0


def count_events(prefect_api: str, prefix: str, since: datetime) -> int:
    """How many events named `prefix`… the Prefect server holds that occurred `since`."""
    answer = httpx.post(
        f"{prefect_api}/events/filter",
        json={
            "filter": {
                "event": {"prefix": [prefix]},
                "occurred": {"since": since.isoformat(), "until": datetime.now(UTC).isoformat()},
            },
            "limit": 1,
        },
        timeout=30,
    )
    answer.raise_for_status()
    return int(answer.json()["total"])


@pytest.mark.parametrize(
    ("snapshot", "expected"),
    [
        (0, {"out": ["MB-004", "MB-013"], "low": ["MB-003", "MB-006", "MB-008"]}),
        (1, {"out": ["MB-003", "MB-013"], "low": ["MB-002", "MB-008"]}),
    ],
)
def test_sample_stock_covers_the_sample_products_in_planned_states(snapshot, expected) -> None:
    from demo.sample_inventory import generate_inventory
    from demo.sample_orders import PRODUCTS
    from flows.inventory_alert.states import compute_states, normalize_inventory

    stock = generate_inventory(snapshot)
    items = normalize_inventory(stock, source_label="sample").items
    states = compute_states(items, today=date(2026, 11, 24))

    assert stock["name"].tolist() == [product.name for product in PRODUCTS]
    assert stock["sku"].is_unique
    assert {
        state: sorted(states.loc[states["state"] == state, "sku"]) for state in ("out", "low")
    } == expected


def test_sample_stock_reorder_points_follow_the_sample_sales() -> None:
    from demo.sample_inventory import expected_daily_units
    from demo.sample_orders import generate_orders
    from flows.inventory_alert.states import average_daily_units
    from flows.shared.orders import normalize_orders

    end = date(2026, 11, 23)
    orders = normalize_orders(
        generate_orders(end_date=end), source_label="sample", timezone="Asia/Seoul"
    )
    sold = average_daily_units(orders, end_date=end)

    # The estimate the stock list is built on is within 25% of what the orders really sell.
    for name, estimate in expected_daily_units().items():
        assert sold[name] == pytest.approx(estimate, rel=0.25), name


def test_write_sample_inventory_round_trips_korean_names(tmp_path: Path) -> None:
    from demo.sample_inventory import generate_inventory, write_sample_inventory
    from tasks.sources import read_table

    path = write_sample_inventory(tmp_path / "stock" / "inventory.csv", 1)

    read = read_table(str(path))
    assert read["name"].tolist() == generate_inventory(1)["name"].tolist()
    assert "텀블러 500ml" in read["name"].tolist()


@pytest.mark.parametrize("second", [0, 1, 12, 24, 25, 26, 150, 299])
def test_the_sample_logs_burst_falls_in_one_error_spike_window(second: int) -> None:
    from datetime import timedelta

    from demo.monitoring import burst_end

    window_start = datetime(2026, 12, 4, 11, 55, tzinfo=UTC)  # a 5-minute boundary
    end = burst_end(window_start + timedelta(seconds=second, microseconds=500_000))
    # write_sample_log puts the 24 errors 24 s … 1 s before `end`.
    first_error, last_error = end - timedelta(seconds=24), end - timedelta(seconds=1)
    windows = {int(at.timestamp()) // 300 for at in (first_error, last_error)}
    assert len(windows) == 1
    assert end <= window_start + timedelta(seconds=second, microseconds=500_000)

"""A scheduled deployment nobody runs alerts ops once; one whose runs complete does not."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest

from deployments.alerts import MISSED_RUN_PREFIX
from moltbot.sandbox import Sandbox
from moltbot.sandbox.blocks import save_sandbox_blocks
from moltbot.sandbox.slack import SANDBOX_OPS_WEBHOOK_PATH
from tests.e2e.servers import (
    HANG_GUARD_SECONDS,
    PrefectServer,
    background,
    delete,
    moltbot_command,
    read_deployment,
    wait_for,
)

pytestmark = pytest.mark.slow

POOL = "e2e-missed-runs"
DEPLOYED = ("daily-report/default", "inventory-alert/default", "form-digest/default")
# Deployed to a pool no worker serves, every 3 s; their windows (interval + grace, at least
# Prefect's 10 s):
# - daily-report: 10 s, nothing completes: ops must hear of it exactly once;
# - inventory-alert: 3 + 18 = 21 s, and the test completes one of its runs every few seconds
#   (a window of 15 s lapsed once in a loaded full run: the test's client sleeps 2 s on each
#   503 of the busy SQLite server, and the server's trigger evaluation lags);
# - form-digest: 3 + 27 = 30 s, nothing completes. Its alert is the test's clock: by then
#   inventory-alert's window (as old, shorter) would have lapsed, and daily-report's 10 s window
#   has had time to fire twice, so a repeated alert would be there.
# ticket-creation is served on a yearly cron that does not fire during the test.
CONFIG = """
[deployments.daily-report]
interval_seconds = 3
grace_minutes = 0.1
parameters = {{ source = "{missing}" }}

[deployments.inventory-alert]
interval_seconds = 3
grace_minutes = 0.3
parameters = {{ source = "{missing}" }}

[deployments.form-digest]
interval_seconds = 3
grace_minutes = 0.45
parameters = {{ sheets_block = "e2e-none", spreadsheet_id = "none", worksheet = "none" }}

[deployments.ticket-creation]
cron = "0 0 1 1 *"
grace_minutes = 5
"""


@pytest.fixture
def leave_no_trace(prefect_server: PrefectServer, sandbox: Sandbox) -> Iterator[None]:
    """Sandbox blocks on the e2e server; afterwards the automations, deployments and pool the
    test made are deleted, so no alert of theirs reaches a later test's ops channel."""
    api = prefect_server.api_url
    with prefect_server.as_current():
        save_sandbox_blocks(sandbox)
    # Missed-run watches another e2e test's serve left on this server would be "updated", not
    # created, and could alert: this test starts without any.
    for automation in _automations(api):
        if automation["name"].startswith(MISSED_RUN_PREFIX):
            delete(f"{api}/automations/{automation['id']}")
    automations_before = {a["id"] for a in _automations(api)}
    try:
        yield
    finally:
        for automation in _automations(api):
            if automation["id"] not in automations_before:
                delete(f"{api}/automations/{automation['id']}")
        for name in (*DEPLOYED, "ticket-creation/default"):
            url = f"{api}/deployments/name/{name}"
            found = wait_for(
                lambda url=url: _answered(httpx.get(url, timeout=10)),
                interval=0.2,
                what=f"GET {url} answered",
            )
            if found.status_code == 200:
                delete(f"{api}/deployments/{found.json()['id']}")
        delete(f"{api}/work_pools/{POOL}")


def test_a_deployment_nobody_runs_alerts_ops_once_and_one_whose_runs_complete_does_not(
    prefect_server: PrefectServer, sandbox: Sandbox, leave_no_trace: None, tmp_path: Path
) -> None:
    api = prefect_server.api_url
    (tmp_path / "moltbot.toml").write_text(
        CONFIG.format(missing=tmp_path / "never-read.csv"), encoding="utf-8"
    )
    env = prefect_server.env(MOLTBOT_HOME=str(tmp_path / "home"))
    only = [arg for name in DEPLOYED for arg in ("--only", name.split("/")[0])]
    deploy = moltbot_command("deploy", "--pool", POOL, *only, "--ops-block", "sandbox-ops")

    deployed = subprocess.run(
        deploy, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=HANG_GUARD_SECONDS
    )
    assert deployed.returncode == 0, deployed.stderr
    inventory = read_deployment(api, "inventory-alert/default")["id"]
    completed: list[str] = []

    def complete_a_run_then_look() -> list[str]:
        # A run of inventory-alert completes, as a worker would report it. (Runs the scheduler
        # made are no use here: Prefect holds their state events back for 15 minutes when they
        # start within 5 minutes of being scheduled, see docs/production.md.)
        completed.append(_complete_a_run(prefect_server, inventory))
        return _ops_posts_naming(sandbox, "form-digest/default")

    wait_for(complete_a_run_then_look, interval=1, what="form-digest's missed-run alert")
    ops = [post.text or "" for post in sandbox.state.slack.messages_for(SANDBOX_OPS_WEBHOOK_PATH)]

    # daily-report's window lapsed twice over, yet ops heard about it exactly once.
    [daily] = [text for text in ops if "daily-report/default" in text]
    assert daily.startswith("*moltbot: daily-report/default missed its scheduled run*")
    assert "within its window of 10 s" in daily
    assert "Alert: moltbot missed-run: daily-report/default" in daily
    # inventory-alert completed a run every few seconds: never reported missed.
    assert len(completed) >= 3
    assert not [text for text in ops if "inventory-alert" in text]
    assert len(ops) == 2, ops
    assert "missed-run alerts: 3 created, 0 updated, 0 stale removed" in deployed.stdout
    assert "daily-report/default: ops are told once when no run completes" in deployed.stdout


def test_serve_sets_up_the_missed_run_alert_and_pauses_it_with_the_schedules(
    prefect_server: PrefectServer, sandbox: Sandbox, leave_no_trace: None, tmp_path: Path
) -> None:
    api = prefect_server.api_url
    (tmp_path / "moltbot.toml").write_text(
        CONFIG.format(missing=tmp_path / "never-read.csv"), encoding="utf-8"
    )
    env = prefect_server.env(MOLTBOT_HOME=str(tmp_path / "home"))
    serve = moltbot_command("serve", "--only", "ticket-creation", "--ops-block", "sandbox-ops")
    name = f"{MISSED_RUN_PREFIX}ticket-creation/default"

    serve_log = tmp_path / "serve.log"

    def serving_with_its_alert() -> dict[str, Any] | None:
        # Ctrl-C only once serve is serving: an interrupt during its set-up is not a stop of
        # the schedules, and nothing would be paused.
        said = serve_log.read_text(encoding="utf-8", errors="replace")
        return _automation_named(api, name) if "serving 1 deployment(s)" in said else None

    with background(serve, env=env, cwd=tmp_path, log=serve_log):
        serving = wait_for(serving_with_its_alert, what="serve serving, with its missed-run alert")
    log = serve_log.read_text(encoding="utf-8", errors="replace")

    deployment = read_deployment(api, "ticket-creation/default")
    assert serving["enabled"]
    assert serving["trigger"]["within"] == 366 * 86_400 + 5 * 60  # 2027 -> 2028 is a leap year
    assert serving["trigger"]["match_related"]["prefect.resource.id"] == (
        f"prefect.deployment.{deployment['id']}"
    )
    # Ctrl-C paused the schedule, and with it the alert: stopping on purpose is no missed run.
    assert "missed-run alerts: paused with the schedules (1)" in log
    assert _automation_named(api, name)["enabled"] is False
    assert sandbox.state.slack.messages_for(SANDBOX_OPS_WEBHOOK_PATH) == []


def _complete_a_run(server: PrefectServer, deployment_id: str) -> str:
    """Create a run of the deployment and take it through Running to Completed; its id.

    Prefect's own client, which retries the 503 a busy SQLite server answers now and then.
    """
    from prefect.client.orchestration import get_client
    from prefect.states import Completed, Running

    with server.as_current(), get_client(sync_client=True) as client:
        run = client.create_flow_run_from_deployment(UUID(deployment_id))
        for state in (Running(), Completed()):
            result = client.set_flow_run_state(run.id, state, force=True)
            assert result.status.value == "ACCEPT", result
    return str(run.id)


def _answered(response: httpx.Response) -> httpx.Response | None:
    """The response, or None for a busy server's 503 (asked again)."""
    return None if response.status_code == 503 else response


def _automations(api: str) -> list[dict[str, Any]]:
    response = httpx.post(f"{api}/automations/filter", json={}, timeout=10)
    response.raise_for_status()
    return response.json()


def _automation_named(api: str, name: str) -> dict[str, Any] | None:
    return next((a for a in _automations(api) if a["name"] == name), None)


def _ops_posts_naming(sandbox: Sandbox, text: str) -> list[str]:
    posts = sandbox.state.slack.messages_for(SANDBOX_OPS_WEBHOOK_PATH)
    return [post.text or "" for post in posts if text in (post.text or "")]

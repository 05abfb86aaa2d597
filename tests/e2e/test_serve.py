"""`moltbot serve` against a real Prefect server: scheduled runs complete, failures alert ops."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from prefect.deployments import run_deployment

from demo.sample_inventory import write_sample_inventory
from deployments.alerts import FAILURE_ALERT_NAME
from deployments.specs import code_version
from moltbot.sandbox import Sandbox
from moltbot.sandbox.blocks import save_sandbox_blocks
from moltbot.sandbox.slack import SANDBOX_OPS_WEBHOOK_PATH
from tests.e2e.servers import (
    PrefectServer,
    background,
    delete,
    moltbot_command,
    read_deployment,
    runs_in_state,
    wait_for,
)

pytestmark = pytest.mark.slow


def test_serve_runs_deployments_on_schedule_and_a_failing_run_alerts_the_ops_channel(
    prefect_server: PrefectServer, sandbox: Sandbox, tmp_path: Path
) -> None:
    api = prefect_server.api_url
    with prefect_server.as_current():
        save_sandbox_blocks(sandbox)
    # This serve is to create the failure alert: one that another test on the shared server
    # left would only be updated.
    _delete_automations_named(api, FAILURE_ALERT_NAME)
    inventory = write_sample_inventory(tmp_path / "재고.csv")
    (tmp_path / "moltbot.toml").write_text(
        "[deployments.inventory-alert]\n"
        "interval_seconds = 3\n"
        f'parameters = {{ source = "{inventory}" }}\n'
        "\n"
        # No interval here: its run is created through the API, as a webhook or a person would.
        "[deployments.daily-report]\n"
        f'parameters = {{ source = "{tmp_path / "no-such-orders.csv"}" }}\n',
        encoding="utf-8",
    )
    command = moltbot_command(
        "serve", "--only", "inventory-alert", "--only", "daily-report", "--ops-block", "sandbox-ops"
    )
    env = prefect_server.env(MOLTBOT_HOME=str(tmp_path / "home"))

    with background(command, env=env, cwd=tmp_path, log=tmp_path / "serve.log") as serving:
        completed = wait_for(
            lambda: runs_in_state(api, "inventory-alert/default", "COMPLETED"),
            timeout=120,
            what="a completed inventory-alert run",
        )
        wait_for(lambda: _exists(api, "daily-report/default"), timeout=60, what="the deployment")
        with prefect_server.as_current():
            run_deployment("daily-report/default", timeout=0, as_subflow=False)
        failed = wait_for(
            lambda: runs_in_state(api, "daily-report/default", "FAILED"),
            timeout=60,
            what="a failed daily-report run",
        )
        alerts = wait_for(
            lambda: [
                post for post in sandbox.state.slack.posts if post.path == SANDBOX_OPS_WEBHOOK_PATH
            ],
            timeout=60,
            what="a failure alert in the sandbox's ops channel",
        )
        assert serving.poll() is None, (tmp_path / "serve.log").read_text()

    deployment = read_deployment(api, "inventory-alert/default")
    assert deployment["tags"] == ["moltbot"]
    assert deployment["version"] == code_version()
    assert deployment["global_concurrency_limit"]["limit"] == 1
    assert deployment["concurrency_options"]["collision_strategy"] == "CANCEL_NEW"
    assert deployment["schedules"][0]["schedule"]["interval"] == 3.0
    daily = read_deployment(api, "daily-report/default")
    assert daily["schedules"][0]["schedule"] == {
        "cron": "0 9 * * *",
        "timezone": "Asia/Seoul",
        "day_or": True,
    }
    assert "moltbot" in completed[0]["tags"]
    # A run the scheduler created says so, and its name says what it is; one created through
    # the API is not tagged `schedule`.
    assert {"schedule", "inventory-alert"} <= set(completed[0]["tags"])
    assert completed[0]["name"].startswith("inventory-alert 20")
    assert "schedule" not in failed[0]["tags"] and "daily-report" in failed[0]["tags"]
    assert "no-such-orders.csv" in failed[0]["state"]["message"]

    text = alerts[0].payload["text"]
    assert text.startswith(f"*moltbot: daily-report run {failed[0]['name']} Failed*")
    assert "Deployment: daily-report/default" in text
    assert "no-such-orders.csv" in text
    # Only failures alert, and only on the ops channel: no business webhook got anything.
    assert all(post.path == SANDBOX_OPS_WEBHOOK_PATH for post in sandbox.state.slack.posts)
    assert not any("inventory-alert" in post.payload["text"] for post in alerts)
    serve_log = (tmp_path / "serve.log").read_text()
    assert "failure alerts: created automation" in serve_log
    assert "serving 2 deployment(s) in this process; next runs:" in serve_log
    assert "Ctrl-C stops serving and pauses the schedules" in serve_log


def _exists(api: str, full_name: str) -> bool:
    return httpx.get(f"{api}/deployments/name/{full_name}", timeout=10).status_code == 200


def _delete_automations_named(api: str, name: str) -> None:
    response = httpx.post(f"{api}/automations/filter", json={}, timeout=10)
    response.raise_for_status()
    for automation in response.json():
        if automation["name"] == name:
            delete(f"{api}/automations/{automation['id']}")

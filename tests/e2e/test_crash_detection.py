"""A run whose process is SIGKILLed is marked Crashed by the detector, and ops get one alert."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from deployments.alerts import (
    CRASH_DETECTOR_NAME,
    FAILURE_ALERT_NAME,
    ensure_crash_detector,
    ensure_failure_alerts,
)
from deployments.serving import HEARTBEAT_SECONDS, HEARTBEAT_SETTING
from deployments.specs import MOLTBOT_TAG
from moltbot.sandbox import Sandbox
from moltbot.sandbox.blocks import save_sandbox_blocks
from moltbot.sandbox.slack import SANDBOX_OPS_WEBHOOK_PATH, SlackPost
from tests.e2e.servers import PrefectServer, background, wait_for

pytestmark = pytest.mark.slow

# Short, so the test is (Prefect's minimum for a proactive trigger is 10 s). Real windows are
# three heartbeats long; this one is shorter than one heartbeat (30 s at least), which is fine
# here only because each run either ends or dies before its second heartbeat.
WINDOW_SECONDS = 15
REPOSITORY = Path(__file__).resolve().parents[2]


@pytest.fixture
def detector(prefect_server: PrefectServer, sandbox: Sandbox) -> Iterator[str]:
    """Failure alerts to the sandbox's ops channel and a 15 s detector; the detector's id.

    Afterwards it deletes the automations it created (test_serve expects its `moltbot serve` to
    create the failure alert on this shared server) and gives a detector that was already there
    its default window back.
    """
    with prefect_server.as_current():
        save_sandbox_blocks(sandbox)
        alerts = ensure_failure_alerts("sandbox-ops")
        setup = ensure_crash_detector(within_seconds=WINDOW_SECONDS)
    try:
        yield str(setup.automation_id)
    finally:
        with prefect_server.as_current():
            if alerts.created:
                _delete(FAILURE_ALERT_NAME)
            if setup.created:
                _delete(CRASH_DETECTOR_NAME)
            else:
                ensure_crash_detector()


def test_a_killed_run_is_marked_crashed_and_alerts_ops_once_but_a_finished_run_is_not(
    prefect_server: PrefectServer, sandbox: Sandbox, detector: str, tmp_path: Path
) -> None:
    api = prefect_server.api_url
    env = prefect_server.env(
        **{HEARTBEAT_SETTING: str(HEARTBEAT_SECONDS)},
        # The probe flow lives in the tests package, importable from the repository root.
        PYTHONPATH=str(REPOSITORY),
    )

    # Two runs at once (each process takes seconds to import Prefect): one that ends normally,
    # whose first heartbeat opens a window that its Completed closes, and one whose process
    # dies once the server has its first heartbeat, which nobody reports.
    finished_file, killed_file = tmp_path / "finished.id", tmp_path / "killed.id"
    with (
        background(_probe(1, finished_file), env=env, cwd=tmp_path,
                   log=tmp_path / "finished.log") as finishing,
        background(_probe(600, killed_file), env=env, cwd=tmp_path,
                   log=tmp_path / "killed.log") as dying,
    ):  # fmt: skip
        wait_for(killed_file.exists, timeout=120, what="the run to kill to start")
        killed_id = killed_file.read_text(encoding="utf-8")
        wait_for(lambda: _heartbeats(api, killed_id), timeout=60, what="its first heartbeat")
        os.killpg(dying.pid, signal.SIGKILL)
        dying.wait(timeout=10)
        assert finishing.wait(timeout=120) == 0, (tmp_path / "finished.log").read_text()
    finished_id = finished_file.read_text(encoding="utf-8")
    assert _run(api, killed_id)["state"]["type"] == "RUNNING"

    crashed = wait_for(
        lambda: (run := _run(api, killed_id))["state"]["type"] == "CRASHED" and run,
        timeout=WINDOW_SECONDS + 60,
        what="the detector to mark the killed run Crashed",
    )
    wait_for(
        lambda: _detector_actions(api, detector, killed_id, "executed"),
        timeout=30,
        what="the detector's action on the killed run to be recorded",
    )
    alerts = wait_for(
        lambda: _ops_posts_naming(sandbox, crashed["name"]),
        timeout=60,
        what="the crash alert in the sandbox's ops channel",
    )

    assert crashed["state"]["name"] == "Crashed"
    assert crashed["state"]["message"].startswith(
        f"no heartbeat for {WINDOW_SECONDS} s: the process running it died"
    )
    [alert] = alerts
    assert alert.text is not None
    assert alert.text.startswith(f"*moltbot: e2e-heartbeat run {crashed['name']} Crashed*")
    assert f"Reason: no heartbeat for {WINDOW_SECONDS} s" in alert.text

    # The finished run sent a heartbeat too, and its window is over: the detector never acted
    # on it, so it is Completed and nobody was alerted about it.
    [heartbeat] = wait_for(
        lambda: _heartbeats(api, finished_id), timeout=30, what="the finished run's heartbeat"
    )
    # Its window, one evaluation (1 s) and one write of the server's event store (5 s): had
    # the detector acted on it, that would be recorded by then. The runs started together, so
    # this is at most a few seconds more.
    settled = datetime.fromisoformat(heartbeat["occurred"]) + timedelta(seconds=WINDOW_SECONDS + 6)
    wait_for(lambda: datetime.now(UTC) > settled, timeout=30, what="its window to be over")
    assert _run(api, finished_id)["state"]["type"] == "COMPLETED"
    assert _detector_actions(api, detector, finished_id, "") == []
    # Exactly one alert on the ops channel, about the killed run.
    ops = sandbox.state.slack.messages_for(SANDBOX_OPS_WEBHOOK_PATH)
    assert [post.text for post in ops] == [alert.text]


def _probe(seconds: float, id_file: Path) -> list[str]:
    return [
        sys.executable, "-m", "tests.e2e.heartbeat_probe", str(seconds), str(id_file), MOLTBOT_TAG,
    ]  # fmt: skip


def _run(api: str, run_id: str) -> dict[str, Any]:
    response = httpx.get(f"{api}/flow_runs/{run_id}", timeout=10)
    response.raise_for_status()
    return response.json()


def _events(api: str, event_filter: dict[str, Any]) -> list[dict[str, Any]]:
    """Events the server has stored (its persister writes them every few seconds)."""
    response = httpx.post(
        f"{api}/events/filter", json={"filter": event_filter, "limit": 50}, timeout=10
    )
    response.raise_for_status()
    return response.json()["events"]


def _heartbeats(api: str, run_id: str) -> list[dict[str, Any]]:
    return _events(
        api,
        {
            "event": {"name": ["prefect.flow-run.heartbeat"]},
            "resource": {"id": [f"prefect.flow-run.{run_id}"]},
        },
    )


def _detector_actions(api: str, detector: str, run_id: str, outcome: str) -> list[dict[str, Any]]:
    """The detector's `prefect.automation.action.<outcome>` events (any outcome for "") on a run."""
    return _events(
        api,
        {
            "event": {"prefix": [f"prefect.automation.action.{outcome}"]},
            "resource": {"id": [f"prefect.automation.{detector}"]},
            "related": {"resources_in_roles": [[f"prefect.flow-run.{run_id}", "target"]]},
        },
    )


def _ops_posts_naming(sandbox: Sandbox, run_name: str) -> list[SlackPost]:
    return [
        post
        for post in sandbox.state.slack.messages_for(SANDBOX_OPS_WEBHOOK_PATH)
        if run_name in (post.text or "")
    ]


def _delete(name: str) -> None:
    from prefect.automations import Automation

    Automation.read(name=name).delete()

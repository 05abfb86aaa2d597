"""A run whose process is SIGKILLed is marked Crashed by the detector, and ops get one alert."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from deployments.serving import HEARTBEAT_SECONDS, HEARTBEAT_SETTING
from deployments.specs import MOLTBOT_TAG
from moltbot.sandbox import Sandbox
from moltbot.sandbox.slack import SANDBOX_OPS_WEBHOOK_PATH
from tests.e2e.crash import (
    WINDOW_SECONDS,
    detector_actions,
    flow_run,
    heartbeats,
    ops_posts_naming,
)
from tests.e2e.servers import PrefectServer, background, wait_for

pytestmark = pytest.mark.slow

REPOSITORY = Path(__file__).resolve().parents[2]


def test_a_killed_run_is_marked_crashed_and_alerts_ops_once_but_a_finished_run_is_not(
    prefect_server: PrefectServer, sandbox: Sandbox, detector: str, tmp_path: Path
) -> None:
    api = prefect_server.api_url
    env = prefect_server.env(
        **{HEARTBEAT_SETTING: str(HEARTBEAT_SECONDS)},
        # The probe flow lives in the tests package, importable from the repository root.
        PYTHONPATH=str(REPOSITORY),
    )

    # First a run that ends normally: its first heartbeat opens a window that its Completed
    # closes. Then a run whose process dies once the server has its first heartbeat, which
    # nobody reports. The finished run's window ends first, so by the time the detector has
    # acted on the killed run it has evaluated the finished one too: no waiting out a clock.
    finished_file, killed_file = tmp_path / "finished.id", tmp_path / "killed.id"
    with background(_probe("end", finished_file), env=env, cwd=tmp_path,
                    log=tmp_path / "finished.log") as finishing:  # fmt: skip
        assert finishing.wait() == 0, (tmp_path / "finished.log").read_text()
    finished_id = finished_file.read_text(encoding="utf-8")
    wait_for(lambda: heartbeats(api, finished_id), what="the finished run's heartbeat")
    with background(_probe("block", killed_file), env=env, cwd=tmp_path,
                    log=tmp_path / "killed.log") as dying:  # fmt: skip
        wait_for(killed_file.exists, what="the run to kill to start")
        killed_id = killed_file.read_text(encoding="utf-8")
        wait_for(lambda: heartbeats(api, killed_id), what="its first heartbeat")
        os.killpg(dying.pid, signal.SIGKILL)
        dying.wait()
    assert flow_run(api, killed_id)["state"]["type"] == "RUNNING"

    crashed = wait_for(
        lambda: (run := flow_run(api, killed_id))["state"]["type"] == "CRASHED" and run,
        what="the detector to mark the killed run Crashed",
    )
    wait_for(
        lambda: detector_actions(api, detector, killed_id, "executed"),
        what="the detector's action on the killed run to be recorded",
    )
    alerts = wait_for(
        lambda: ops_posts_naming(sandbox, crashed["name"]),
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

    # The finished run sent a heartbeat too, and its window closed before the killed run's:
    # the detector never acted on it, so it is Completed and nobody was alerted about it.
    assert flow_run(api, finished_id)["state"]["type"] == "COMPLETED"
    assert detector_actions(api, detector, finished_id, "") == []
    # Exactly one alert on the ops channel, about the killed run.
    ops = sandbox.state.slack.messages_for(SANDBOX_OPS_WEBHOOK_PATH)
    assert [post.text for post in ops] == [alert.text]


def _probe(mode: str, id_file: Path) -> list[str]:
    return [
        sys.executable, "-m", "tests.e2e.heartbeat_probe", mode, str(id_file), MOLTBOT_TAG,
    ]  # fmt: skip

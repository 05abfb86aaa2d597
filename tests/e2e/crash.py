"""What the crash-detection e2e tests share: reads of the server's runs and events, and of the
sandbox's ops channel; the detector fixture itself is in conftest."""

from __future__ import annotations

from typing import Any

import httpx

from moltbot.sandbox import Sandbox
from moltbot.sandbox.slack import SANDBOX_OPS_WEBHOOK_PATH, SlackPost

# Short, so the tests are: Prefect's minimum for a proactive trigger. Real windows are three
# heartbeats long; this one is shorter than one heartbeat (30 s at least), which is fine here
# only because each run either ends or dies before its second heartbeat.
WINDOW_SECONDS = 10


def flow_run(api: str, run_id: str) -> dict[str, Any]:
    """The flow run as the server has it."""
    response = httpx.get(f"{api}/flow_runs/{run_id}", timeout=10)
    response.raise_for_status()
    return response.json()


def events(api: str, event_filter: dict[str, Any]) -> list[dict[str, Any]]:
    """Events the server has stored (its persister writes them every few seconds)."""
    response = httpx.post(
        f"{api}/events/filter", json={"filter": event_filter, "limit": 50}, timeout=10
    )
    response.raise_for_status()
    return response.json()["events"]


def heartbeats(api: str, run_id: str) -> list[dict[str, Any]]:
    """The run's stored heartbeat events."""
    return events(
        api,
        {
            "event": {"name": ["prefect.flow-run.heartbeat"]},
            "resource": {"id": [f"prefect.flow-run.{run_id}"]},
        },
    )


def detector_actions(
    api: str, detector: str, run_id: str, outcome: str = ""
) -> list[dict[str, Any]]:
    """The detector's `prefect.automation.action.<outcome>` events (any outcome for "") on a run."""
    return events(
        api,
        {
            "event": {"prefix": [f"prefect.automation.action.{outcome}"]},
            "resource": {"id": [f"prefect.automation.{detector}"]},
            "related": {"resources_in_roles": [[f"prefect.flow-run.{run_id}", "target"]]},
        },
    )


def ops_posts_naming(sandbox: Sandbox, run_name: str) -> list[SlackPost]:
    """The posts to the sandbox's ops channel that name the run."""
    return [
        post
        for post in sandbox.state.slack.messages_for(SANDBOX_OPS_WEBHOOK_PATH)
        if run_name in (post.text or "")
    ]


def delete_automation(name: str) -> None:
    """Delete the Prefect automation called `name`."""
    from prefect.automations import Automation

    Automation.read(name=name).delete()

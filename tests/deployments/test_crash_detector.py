"""Tests of the crashed-run detector's automation and the heartbeat it relies on (no server)."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

import pytest
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.automations import Posture
from prefect.settings import Settings
from prefect.settings.models.flows import FlowsSettings

from deployments.alerts import (
    CRASH_DETECTOR_NAME,
    FAILURE_EVENTS,
    crash_detector_automation,
    failure_alert_automation,
)
from deployments.serving import HEARTBEAT_SETTING, heartbeat_seconds, with_heartbeat

HEARTBEAT = "prefect.flow-run.heartbeat"
OPS_BLOCK_ID = UUID("00000000-0000-0000-0000-000000000001")


def test_the_detector_is_prefects_documented_proactive_heartbeat_trigger() -> None:
    automation = crash_detector_automation()
    trigger = automation.trigger

    assert automation.name == CRASH_DETECTOR_NAME
    assert trigger.posture == Posture.Proactive
    assert trigger.after == {HEARTBEAT}
    assert trigger.expect == {
        HEARTBEAT,
        "prefect.flow-run.Completed",
        "prefect.flow-run.Failed",
        "prefect.flow-run.Cancelled",
        "prefect.flow-run.Crashed",
        "prefect.flow-run.TimedOut",
    }
    assert trigger.for_each == {"prefect.resource.id"}
    assert trigger.threshold == 1
    assert trigger.within == timedelta(seconds=90)


def test_the_detector_marks_the_silent_run_crashed_and_says_why() -> None:
    [action] = crash_detector_automation().actions

    assert isinstance(action, ChangeFlowRunState)
    assert action.state == StateType.CRASHED
    # The failure alert watches the state named Crashed: Prefect names the state by its type.
    assert action.name is None
    assert not action.force
    assert action.message is not None
    assert action.message.startswith("no heartbeat for 90 s: the process running it died")


def test_the_window_is_configurable_and_the_message_follows_it() -> None:
    automation = crash_detector_automation(within_seconds=15)

    assert automation.trigger.within == timedelta(seconds=15)
    assert automation.actions[0].message.startswith("no heartbeat for 15 s:")


def test_the_detector_watches_exactly_the_runs_the_failure_alert_watches() -> None:
    detector = crash_detector_automation().trigger
    alert = failure_alert_automation(OPS_BLOCK_ID).trigger

    assert detector.match == alert.match
    assert detector.match_related == alert.match_related
    # Every end the failure alert reports also ends the wait for a heartbeat, so a run that
    # failed or timed out is not "detected" once more a window later.
    assert detector.expect >= FAILURE_EVENTS


@pytest.mark.parametrize(
    ("flows", "expected"),
    [
        # Nothing set: moltbot's 30 s, not Prefect's default of 180 s.
        (FlowsSettings.model_construct(), 30),
        (FlowsSettings.model_construct(heartbeat_frequency=60), 60),
    ],
)
def test_the_heartbeat_is_the_users_setting_else_thirty_seconds(
    flows: FlowsSettings, expected: int
) -> None:
    assert heartbeat_seconds(Settings.model_construct(flows=flows)) == expected


def test_a_heartbeat_frequency_from_the_environment_counts_as_the_users(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(HEARTBEAT_SETTING, "45")

    assert heartbeat_seconds(Settings()) == 45


def test_deployed_runs_get_the_heartbeat_in_their_env_beside_the_other_variables() -> None:
    variables = {"working_dir": "/srv/moltbot", "env": {"MOLTBOT_HOME": "/srv/state"}}

    assert with_heartbeat(variables, 30) == {
        "working_dir": "/srv/moltbot",
        "env": {"MOLTBOT_HOME": "/srv/state", HEARTBEAT_SETTING: "30"},
    }
    assert with_heartbeat({}, 45) == {"env": {HEARTBEAT_SETTING: "45"}}
    assert variables["env"] == {"MOLTBOT_HOME": "/srv/state"}

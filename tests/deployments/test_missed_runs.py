"""Tests of the missed-run alerts: the automation built per scheduled deployment, its window,
`grace_minutes`, and their setup on a real Prefect API (no worker, nothing fires here)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

import jinja2
import pytest
from prefect.events.actions import SendNotification
from prefect.events.schemas.automations import EventTrigger, Posture

from deployments.alerts import (
    ARMED_EVENT,
    COMPLETED_EVENT,
    MISSED_RUN_PREFIX,
    MissedRunWatch,
    duration_words,
    ensure_missed_run_alerts,
    missed_run_alert_names,
    missed_run_automation,
)
from deployments.serving import missed_run_watches, setup_missed_run_alerts
from deployments.specs import DeploymentSpec, build_specs, parse_deployment_settings
from moltbot.errors import InputError

VERSION = "abc123"
DEPLOYMENT_ID = UUID("00000000-0000-0000-0000-0000000000d1")
OPS_BLOCK_ID = UUID("00000000-0000-0000-0000-000000000001")
# A Tuesday in Seoul, so the weekday cron below has its weekend ahead.
TUESDAY = datetime(2026, 3, 3, 12, 0, tzinfo=ZoneInfo("Asia/Seoul"))


def _watch(gap: timedelta = timedelta(days=1), grace: timedelta = timedelta(minutes=10)):
    return MissedRunWatch(
        deployment_id=DEPLOYMENT_ID,
        deployment="daily-report/default",
        cron="0 9 * * *",
        timezone="Asia/Seoul",
        longest_gap=gap,
        grace=grace,
    )


def _spec(**entry: object) -> DeploymentSpec:
    table = {"daily-report": {"parameters": {"source": "orders.csv"}, **entry}}
    [spec] = build_specs(table, only=["daily-report"], version=VERSION)
    return spec


# The automation built


def test_a_proactive_trigger_expects_a_completed_run_of_the_deployment_within_gap_plus_grace():
    automation = missed_run_automation(_watch(), OPS_BLOCK_ID)
    trigger = automation.trigger

    assert automation.name == "moltbot missed-run: daily-report/default"
    assert isinstance(trigger, EventTrigger)
    assert trigger.posture == Posture.Proactive
    assert trigger.expect == {COMPLETED_EVENT}
    # Each completed run (or the watch's start) opens the next window: the trigger fires once
    # when a window ends empty, then waits for the next completed run instead of repeating.
    assert trigger.after == {COMPLETED_EVENT, ARMED_EVENT}
    assert trigger.threshold == 1
    # One window per deployment, opened only by its events: none reopens after firing.
    assert trigger.for_each == {"related:deployment:prefect.resource.id"}
    assert trigger.within == timedelta(days=1, minutes=10)
    assert trigger.match.model_dump() == {
        "prefect.resource.id": ["prefect.flow-run.*", f"moltbot.missed-run.{DEPLOYMENT_ID}"]
    }
    assert trigger.match_related.model_dump() == {
        "prefect.resource.id": f"prefect.deployment.{DEPLOYMENT_ID}",
        "prefect.resource.role": "deployment",
    }


def test_the_action_notifies_the_ops_block_naming_the_automation_deployment_window_and_grace():
    [action] = missed_run_automation(_watch(), OPS_BLOCK_ID).actions

    assert isinstance(action, SendNotification)
    assert action.block_document_id == OPS_BLOCK_ID
    assert action.subject == "moltbot: daily-report/default missed its scheduled run"
    assert action.body.splitlines() == [
        "No run of daily-report/default has completed within its window of 1 d 10 min: the "
        "longest gap of its schedule (cron '0 9 * * *' (Asia/Seoul)) is 1 d, plus 10 min of "
        "grace.",
        "Is `moltbot serve` or a worker of its pool running? Failed runs are reported separately.",
        "This alert comes once per missed window; the next completed run starts the watch again.",
        "Alert: moltbot missed-run: daily-report/default",
    ]


def test_the_message_is_korean_under_the_korean_locale() -> None:
    watch = MissedRunWatch(
        deployment_id=DEPLOYMENT_ID,
        deployment="inventory-alert/default",
        cron=None,
        timezone="Asia/Seoul",
        longest_gap=timedelta(minutes=30),
        grace=timedelta(minutes=10),
    )
    [action] = missed_run_automation(watch, OPS_BLOCK_ID, locale="ko").actions

    assert action.subject == "moltbot: inventory-alert/default 예약 실행 누락"
    first_line = action.body.splitlines()[0]
    assert first_line == (
        "inventory-alert/default의 실행이 허용 시간 40분 안에 완료되지 않았습니다: "
        "일정(30분마다)의 최대 실행 간격 30분에 유예 시간 10분를 더한 시간입니다."
    )
    assert "Alert:" not in action.body and "grace" not in action.body


def test_a_window_shorter_than_prefects_minimum_for_proactive_triggers_is_raised_to_it():
    watch = _watch(gap=timedelta(seconds=3), grace=timedelta(seconds=2))

    assert watch.within == timedelta(seconds=10)
    assert missed_run_automation(watch, OPS_BLOCK_ID).trigger.within == timedelta(seconds=10)


def test_text_that_looks_like_jinja_reaches_ops_as_written() -> None:
    # The Prefect server renders subject and body as Jinja once more.
    watch = MissedRunWatch(
        deployment_id=DEPLOYMENT_ID,
        deployment="odd/{{ name }}",
        cron=None,
        timezone="Asia/Seoul",
        longest_gap=timedelta(minutes=5),
        grace=timedelta(0),
    )
    [action] = missed_run_automation(watch, OPS_BLOCK_ID).actions

    rendered = jinja2.Environment().from_string(action.subject).render()
    assert rendered == "moltbot: odd/{{ name }} missed its scheduled run"


@pytest.mark.parametrize(
    ("delta", "locale", "words"),
    [
        (timedelta(days=3, minutes=10), "en", "3 d 10 min"),
        (timedelta(hours=25), "en", "1 d 1 h"),
        (timedelta(seconds=15), "en", "15 s"),
        (timedelta(0), "en", "0 s"),
        (timedelta(days=1, hours=2, minutes=10), "ko", "1일 2시간 10분"),
    ],
)
def test_durations_in_words(delta: timedelta, locale: str, words: str) -> None:
    assert duration_words(delta, locale) == words


# The window: the schedule's longest gap plus grace


@pytest.mark.parametrize(
    ("entry", "gap"),
    [
        ({"interval_seconds": 90}, timedelta(seconds=90)),
        ({"cron": "0 9 * * *"}, timedelta(days=1)),
        ({"cron": "*/15 * * * *"}, timedelta(minutes=15)),
        # Friday 09:00 to Monday 09:00.
        ({"cron": "0 9 * * 1-5"}, timedelta(days=3)),
        # Every 5 minutes in office hours: the longest gap is the weekend.
        ({"cron": "*/5 9-17 * * 1-5"}, timedelta(days=2, hours=15, minutes=5)),
        ({"cron": "0 9 1 * *"}, timedelta(days=31)),
        # In Berlin the clocks go back on 2026-10-25: that day has 25 hours.
        ({"cron": "0 9 * * *", "timezone": "Europe/Berlin"}, timedelta(hours=25)),
    ],
)
def test_the_gap_is_the_longest_between_two_scheduled_runs(
    entry: dict[str, object], gap: timedelta
) -> None:
    assert _spec(**entry).longest_gap(TUESDAY) == gap


def test_only_deployments_that_run_on_a_schedule_are_watched_each_with_its_grace() -> None:
    table = {
        "daily-report": {"parameters": {"source": "s.csv"}, "grace_minutes": 45},
        "inventory-alert": {"interval_seconds": 60, "parameters": {"source": "x.csv"}},
        "form-digest": {"paused": True},
    }
    names = ["daily-report", "inventory-alert", "form-digest", "ticket-creation"]
    specs = build_specs(table, only=names, version=VERSION)
    ids = {spec.full_name: uuid4() for spec in specs}

    watches = missed_run_watches(specs, ids, after=TUESDAY)

    # ticket-creation has no schedule, form-digest is paused.
    assert [(w.deployment, w.longest_gap, w.grace, w.within) for w in watches] == [
        ("daily-report/default", timedelta(days=1), timedelta(minutes=45),
         timedelta(days=1, minutes=45)),
        ("inventory-alert/default", timedelta(minutes=1), timedelta(minutes=10),
         timedelta(minutes=11)),
    ]  # fmt: skip
    assert [w.deployment_id for w in watches] == [
        ids["daily-report/default"],
        ids["inventory-alert/default"],
    ]
    assert watches[0].schedule_words("en") == "cron '0 9 * * *' (Asia/Seoul)"
    assert watches[1].schedule_words("en") == "every 1 min"


# grace_minutes in moltbot.toml


def test_grace_is_ten_minutes_unless_the_deployment_sets_its_own() -> None:
    assert _spec().grace_minutes == 10
    assert _spec(grace_minutes=90).grace_minutes == 90
    assert _spec(grace_minutes=0.5).grace_minutes == 0.5
    assert _spec(grace_minutes=0).grace_minutes == 0
    assert _spec(grace_minutes=5).as_dict()["grace_minutes"] == 5


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (-1, "grace_minutes: Input should be greater than or equal to 0"),
        (
            "soon",
            "grace_minutes: Input should be a valid number, unable to parse string as a number",
        ),
        (float("inf"), "grace_minutes: Input should be a finite number"),
        (float("nan"), "grace_minutes: Input should be a finite number"),
    ],
)
def test_a_bad_grace_is_one_line_naming_the_deployment_and_the_key(
    value: object, problem: str
) -> None:
    with pytest.raises(InputError) as raised:
        parse_deployment_settings({"daily-report": {"grace_minutes": value}})

    message = str(raised.value)
    assert message == f"[deployments.daily-report]: {problem}"
    assert "\n" not in message


# On a real Prefect API


@pytest.fixture
def api(prefect_api: str, sandbox_blocks: list[str]) -> Iterator[str]:
    """The session's Prefect API; the missed-run automations a test made are deleted after."""
    before = set(missed_run_alert_names())
    yield prefect_api
    from prefect.automations import Automation

    for name in set(missed_run_alert_names()) - before:
        Automation.read(name=name).delete()


def _deploy(spec: DeploymentSpec) -> UUID:
    return spec.to_runner_deployment().apply()


@pytest.mark.slow
def test_setup_creates_then_updates_and_deletes_only_stale_missed_run_automations(
    api: str,
) -> None:
    from prefect.automations import Automation
    from prefect.events.actions import DoNothing

    table = {
        "daily-report": {"parameters": {"source": "s.csv"}},
        "inventory-alert": {"interval_seconds": 120, "parameters": {"source": "x.csv"}},
    }
    specs = build_specs(table, only=["daily-report", "inventory-alert"], version=VERSION)
    ids = {spec.full_name: _deploy(spec) for spec in specs}
    # Expecting an event nobody sends: an empty `expect` would fire on its own action's events.
    foreign = Automation(
        name="someone else's automation",
        trigger=EventTrigger(expect={"test.never-sent"}),
        actions=[DoNothing()],
    ).create()
    lines: list[str] = []

    try:
        watches = setup_missed_run_alerts(specs, ids, "sandbox-ops", lines.append)
        first = ensure_missed_run_alerts(watches, "sandbox-ops")
        saved = Automation.read(name=f"{MISSED_RUN_PREFIX}inventory-alert/default")

        # inventory-alert stops running on a schedule: its alert goes, daily-report's stays.
        [paused] = build_specs(
            {"inventory-alert": {"paused": True, "parameters": {"source": "x.csv"}}},
            only=["inventory-alert"],
            version=VERSION,
        )
        _deploy(paused)
        daily_only = [watch for watch in watches if watch.deployment == "daily-report/default"]
        after = ensure_missed_run_alerts(daily_only, "sandbox-ops")
        kept = Automation.read(id=foreign.id).name
    finally:
        foreign.delete()

    assert lines == [
        "missed-run alerts: 2 created, 0 updated, 0 stale removed -> block sandbox-ops",
        "  daily-report/default: ops are told once when no run completes within 1 d 10 min "
        "(1 d + 10 min grace)",
        "  inventory-alert/default: ops are told once when no run completes within 12 min "
        "(2 min + 10 min grace)",
    ]
    assert (first.created, first.updated, first.deleted) == (
        (),
        ("moltbot missed-run: daily-report/default", "moltbot missed-run: inventory-alert/default"),
        (),
    )
    assert saved.trigger.within == timedelta(minutes=12)
    assert saved.trigger.match_related.model_dump()["prefect.resource.id"] == (
        f"prefect.deployment.{ids['inventory-alert/default']}"
    )
    assert (after.created, after.deleted) == ((), ("moltbot missed-run: inventory-alert/default",))
    names = missed_run_alert_names()
    assert "moltbot missed-run: daily-report/default" in names
    assert "moltbot missed-run: inventory-alert/default" not in names
    # Automations without the prefix are never touched.
    assert kept == "someone else's automation"


@pytest.mark.slow
def test_without_an_ops_block_missed_run_alerts_are_off_in_one_line(
    api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOLTBOT_LOCALE", "ko")
    specs = [_spec(interval_seconds=60)]
    lines: list[str] = []
    before = missed_run_alert_names()

    assert setup_missed_run_alerts(specs, {}, None, lines.append) == []
    assert lines == ["누락 실행 알림: 꺼짐 (ops 블록 없음)"]
    assert missed_run_alert_names() == before


@pytest.mark.slow
def test_an_ops_block_that_does_not_exist_is_one_line(api: str) -> None:
    with pytest.raises(InputError, match="no notification block 'no-such-ops'"):
        ensure_missed_run_alerts([_watch()], "no-such-ops")

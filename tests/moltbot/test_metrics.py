"""The metrics' pure part: figures from hand-made rows, percentiles, fallbacks, parsing, config."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from flows.reconcile.checks import Rate
from flows.reconcile.render import run_summary
from moltbot.errors import InputError
from moltbot.metrics import (
    ALREADY_DONE_LOG,
    EffectRow,
    MetricsInput,
    RunRow,
    compute,
    display_cells,
    format_seconds,
    hours_saved_config,
    omission_counts,
    percentile,
    took_fallback,
)

T0 = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)
NAME = "daily-report"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def week() -> MetricsInput:
    """Six runs of daily-report (one still running), five effects, skips, audit entries."""
    runs = [
        RunRow(NAME, "r1", "COMPLETED", T0, 10.0),
        RunRow(NAME, "r2", "COMPLETED", T0, 20.0),
        RunRow(NAME, "r3", "FAILED", T0, 30.0, run_count=3),
        RunRow(NAME, "r4", "COMPLETED", T0, 40.0),
        RunRow(NAME, "r5", "COMPLETED", T0, 100.0),
        RunRow(NAME, "r6", "RUNNING", T0, None),
    ]
    effects = [
        EffectRow(NAME, "r1", "done", 1, at(5)),
        EffectRow(NAME, "r1", "done", 2, at(3), fallback=True),
        EffectRow(NAME, "r3", "dead", 4, at(50)),
        EffectRow(NAME, "r4", "in_doubt", 1, at(60)),
        EffectRow(NAME, "r2", "done", 1, at(9)),
    ]
    return MetricsInput(
        since=T0,
        until=at(7 * 86400),
        runs=runs,
        effects=effects,
        already_done=["r4", "r4", "a-run-of-another-period"],
        audit=[
            (NAME, "acknowledge"),
            (NAME, "escalate"),
            (NAME, "escalate"),
            ("on-call", "escalate"),
        ],
        omissions={NAME: (10, 1)},
        hours_saved={NAME: 0.5},
    )


def test_the_figures_of_one_automation_are_the_hand_computed_ones() -> None:
    [daily, on_call] = compute(week(), [NAME, "inventory-alert", "on-call"]).automations

    assert daily.automation == NAME
    assert (daily.runs, daily.finished, daily.succeeded) == (6, 5, 4)
    assert daily.success_rate == 0.8
    # Durations 10, 20, 30, 40, 100: p50 the middle one; p95 at rank 3.8 -> 40 + 0.8 * 60.
    assert (daily.p50_seconds, daily.p95_seconds) == (30.0, 88.0)
    assert (daily.run_retries, daily.effect_retries) == (2, 1 + 3)
    assert daily.effects == {
        "done": 3,
        "already_done": 2,
        "dead": 1,
        "in_doubt": 1,
        "failed": 0,
        "pending": 0,
        "queued": 0,
    }
    assert (daily.omissions_expected, daily.omissions, daily.omission_rate) == (10, 1, 0.1)
    # r1 first delivered 3 s after its trigger, r2 9 s after: the median is 6 s.
    assert daily.trigger_to_delivery_seconds == 6.0
    assert (daily.fallbacks, daily.acknowledgements, daily.escalations) == (1, 1, 2)
    assert daily.hours_saved == 4 * 0.5
    # on-call only has an audit entry; inventory-alert did nothing and is left out.
    assert (on_call.automation, on_call.runs, on_call.escalations) == ("on-call", 0, 1)
    assert on_call.success_rate is None and on_call.hours_saved is None


def test_the_totals_add_up_over_automations() -> None:
    report = compute(week(), [NAME, "on-call"])

    assert report.totals() == {
        "runs": 6,
        "success_rate": 0.8,
        "done": 3,
        "dead": 1,
        "in_doubt": 1,
        "hours_saved": 2.0,
    }
    assert report.as_dict()["automations"][0]["p95_seconds"] == 88.0


def test_nothing_recorded_is_an_empty_report() -> None:
    report = compute(MetricsInput(since=T0, until=at(60)), [NAME])

    assert report.automations == []
    assert report.totals()["success_rate"] is None


@pytest.mark.parametrize(
    ("values", "pct", "expected"),
    [
        ([], 50, None),
        ([7.0], 95, 7.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.5),
        ([1.0, 2.0, 3.0, 4.0], 95, 3.85),
        ([4.0, 1.0, 3.0, 2.0], 95, 3.85),
    ],
)
def test_percentiles_interpolate_between_ranks(values, pct, expected) -> None:
    assert percentile(values, pct) == expected


@pytest.mark.parametrize(
    ("route", "via", "expected"),
    [
        ('["team-slack", "ops-email"]', "team-slack", False),
        ('["team-slack", "ops-email"]', "ops-email", True),
        (None, "ops-email", False),
        ('["outbox"]', None, False),
    ],
)
def test_a_fallback_is_a_delivery_by_a_later_link(route, via, expected) -> None:
    assert took_fallback(route, via) is expected


@pytest.mark.parametrize("locale", ["en", "ko"])
def test_omission_counts_are_read_from_reconciles_own_summary(locale: str) -> None:
    summary = run_summary(
        locale,
        new=[],
        rates={"form-digest": Rate(1234, 5), "daily-report": Rate(3, 0)},
        total=5,
        since_hours=48,
        deliveries=[],
        dry_run=False,
    )

    assert omission_counts(summary) == {"form-digest": (1234, 5), "daily-report": (3, 0)}


@pytest.mark.parametrize(
    ("seconds", "locale", "text"),
    [
        (None, "en", "–"),
        (42.0, "en", "42 s"),
        (1.25, "ko", "1.2 초"),
        (150.0, "en", "2.5 min"),
        (5400.0, "ko", "1.5 시간"),
    ],
)
def test_durations_are_shown_in_the_largest_fitting_unit(seconds, locale, text) -> None:
    assert format_seconds(seconds, locale) == text


def test_cells_follow_the_columns() -> None:
    from moltbot.i18n import text_in

    [daily] = compute(week(), [NAME]).automations
    cells = dict(zip(text_in("metrics_columns", "en"), display_cells(daily), strict=True))

    assert cells["success"] == "80.0%"
    assert cells["p95"] == "1.5 min"
    assert cells["omissions"] == "10.0%"
    assert cells["retries"] == "6"
    assert cells["hours saved"] == "2.0"


def test_hours_saved_come_from_moltbot_toml() -> None:
    assert hours_saved_config([NAME]) == {}  # no moltbot.toml: none configured
    config = Path.cwd() / "moltbot.toml"
    config.write_text("[metrics.hours_saved]\ndaily-report = 0.5\nform-digest = 2\n")

    assert hours_saved_config([NAME, "form-digest"]) == {NAME: 0.5, "form-digest": 2.0}


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ("nightly-report = 1", "unknown automation 'nightly-report'"),
        ('daily-report = "half an hour"', "must be a number of 0 or more"),
        ("daily-report = -1", "must be a number of 0 or more"),
    ],
)
def test_bad_hours_saved_are_refused_with_the_line(table: str, problem: str) -> None:
    (Path.cwd() / "moltbot.toml").write_text(f"[metrics.hours_saved]\n{table}\n")

    with pytest.raises(InputError, match=problem) as refused:
        hours_saved_config([NAME])
    assert "line 2" in str(refused.value)


@pytest.mark.parametrize(
    ("line", "counted"),
    [
        ("message daily-report 2026-12-03: already_done via team-slack", True),
        ("message daily-report 2026-12-03: already_done", True),
        ("jira_issue row 12: already_done via jira (after jira-old failed)", True),
        ("message daily-report 2026-12-03: done via team-slack", False),
        ("message already_done: failed", False),
    ],
)
def test_skips_are_the_effects_layers_already_done_lines(line: str, counted: bool) -> None:
    assert bool(ALREADY_DONE_LOG.search(line)) is counted

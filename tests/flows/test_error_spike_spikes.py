"""Error-spike decisions on small hand-checked histories: baselines, thresholds, transitions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from flows.error_spike.spikes import (
    DAY_SECONDS,
    SpikeRule,
    StoredState,
    baseline_of,
    baseline_samples,
    check_window,
    plan_transition,
    top_signatures,
)
from moltbot.errors import InputError

STEP = 300
RULE = SpikeRule(window_seconds=STEP, factor=3, min_count=10, baseline_days=7, timezone="UTC")
# 2026-03-02 09:05 UTC: the window judged in most tests.
W = int(datetime(2026, 3, 2, 9, 5, tzinfo=UTC).timestamp())
WEEK_AGO = W - 7 * DAY_SECONDS
MIDNIGHT = int(datetime(2026, 3, 2, tzinfo=UTC).timestamp())


def at(window: int, seconds: int = 30) -> datetime:
    return datetime.fromtimestamp(window + seconds, UTC)


def daily(*values: int) -> dict[int, int]:
    """The same window on the previous days: values[0] yesterday, values[1] the day before…"""
    return {W - (day + 1) * DAY_SECONDS: value for day, value in enumerate(values)}


def test_the_baseline_is_the_larger_of_the_daily_and_todays_medians():
    counts = daily(2, 4, 6, 8, 10, 12, 14)  # median 8
    counts |= {MIDNIGHT + i * STEP: 1 for i in range(0, 108, 2)}  # today: half 1s, half 0s

    daily_samples, today = baseline_samples(W, observed_since=WEEK_AGO, rule=RULE)

    assert len(daily_samples) == 7 and len(today) == 109  # 00:00 … 09:00
    assert baseline_of(counts, W, observed_since=WEEK_AGO, rule=RULE) == 8.0
    check = check_window(counts | {W: 24}, W, observed_since=WEEK_AGO, rule=RULE)
    assert (check.threshold, check.spiking) == (24.0, True)  # max(10, 3 x 8)
    assert not check_window(counts | {W: 23}, W, observed_since=WEEK_AGO, rule=RULE).spiking


def test_a_busy_day_raises_the_baseline_through_todays_windows():
    counts = daily(1, 1, 1, 1, 1, 1, 1) | {MIDNIGHT + i * STEP: 20 for i in range(109)}

    check = check_window(counts | {W: 59}, W, observed_since=WEEK_AGO, rule=RULE)

    assert check.baseline == 20.0 and check.threshold == 60.0 and not check.spiking


def test_without_history_the_threshold_is_min_count():
    check = check_window({W: 10}, W, observed_since=None, rule=RULE)

    assert check.baseline is None
    assert (check.threshold, check.spiking) == (10.0, True)
    assert not check_window({W: 9}, W, observed_since=None, rule=RULE).spiking


def test_windows_before_watching_began_are_left_out_and_watched_empty_ones_are_zero():
    # Watched for two days: the 5 older days are unknown; today's windows since 00:00 are 0.
    observed = W - 2 * DAY_SECONDS
    counts = daily(30, 50, 999, 999)

    daily_samples, today = baseline_samples(W, observed_since=observed, rule=RULE)

    assert daily_samples == [W - DAY_SECONDS, W - 2 * DAY_SECONDS]
    assert today == list(range(MIDNIGHT, W, STEP))
    assert baseline_of(counts, W, observed_since=observed, rule=RULE) == 40.0  # median(30, 50)
    # Watched since 08:50 today: two of today's windows, no previous day.
    since = W - 2 * STEP - 60
    assert baseline_samples(W, observed_since=since, rule=RULE) == (
        [],
        [W - 3 * STEP, W - 2 * STEP, W - STEP],
    )
    assert baseline_of({W - STEP: 6}, W, observed_since=since, rule=RULE) == 0.0


def test_today_starts_at_local_midnight():
    seoul = SpikeRule(
        window_seconds=STEP, factor=3, min_count=10, baseline_days=0, timezone="Asia/Seoul"
    )

    _, today = baseline_samples(W, observed_since=WEEK_AGO, rule=seoul)

    # 09:05 UTC is 18:05 in Seoul, whose day began at 15:00 UTC the day before.
    assert today[0] == MIDNIGHT - 9 * 3600
    assert len(today) == 18 * 12 + 1


def test_a_spike_starts_once_stays_quiet_and_clears_with_its_duration():
    quiet = daily(2, 2, 2, 2, 2, 2, 2)  # baseline 2 -> threshold max(10, 6) = 10
    spike = quiet | {W: 12, W + STEP: 30, W + 2 * STEP: 11}

    _, started = plan_transition("api", spike, None, now=at(W), observed_since=WEEK_AGO, rule=RULE)
    assert started is not None and started.severity == "spike"
    assert started.spike_start == W and started.check.partial  # the running window already spikes
    assert started.key == "error-spike:api:spike:2026-03-02T09:05Z"
    assert started.state_row()["state"] == "spiking"

    stored = StoredState("spiking", started.spike_start)
    for later in (W + STEP, W + 2 * STEP, W + 3 * STEP):
        _, nothing = plan_transition(
            "api", spike, stored, now=at(later), observed_since=WEEK_AGO, rule=RULE
        )
        assert nothing is None  # still spiking (W + 3 * STEP: the last complete window does)

    evaluation, cleared = plan_transition(
        "api", spike, stored, now=at(W + 4 * STEP), observed_since=WEEK_AGO, rule=RULE
    )
    assert not evaluation.spiking
    assert cleared is not None and cleared.severity == "cleared"
    assert cleared.key == "error-spike:api:cleared:2026-03-02T09:05Z"
    assert cleared.spike_end == W + 3 * STEP and cleared.lasted_seconds == 15 * 60
    assert cleared.errors_during == 12 + 30 + 11
    assert cleared.state_row() == {
        "item_key": "api",
        "state": "normal",
        "since": datetime.fromtimestamp(W + 3 * STEP, UTC),
        "episode_since": None,
    }


def test_a_retry_in_a_later_window_finds_the_same_spike_start_and_key():
    # Quiet history (every window 0 or 3): the threshold is min_count, 10.
    counts = {W - STEP: 3, W: 15, W + STEP: 14, W + 2 * STEP: 40}

    _, first = plan_transition("api", counts, None, now=at(W), observed_since=WEEK_AGO, rule=RULE)
    _, retry = plan_transition(
        "api", counts, None, now=at(W + 2 * STEP), observed_since=WEEK_AGO, rule=RULE
    )

    assert first is not None and retry is not None
    assert retry.check.start == W + STEP  # the last complete window triggers this time
    assert first.spike_start == retry.spike_start == W
    assert first.key == retry.key


def test_a_window_below_threshold_with_no_stored_spike_changes_nothing():
    evaluation, transition = plan_transition(
        "api",
        daily(5, 5, 5, 5, 5, 5, 5) | {W: 14},
        None,
        now=at(W),
        observed_since=WEEK_AGO,
        rule=RULE,
    )

    assert transition is None
    assert (evaluation.current.count, evaluation.current.threshold) == (14, 15.0)


def test_top_signatures_are_the_most_frequent_with_share_and_the_rest_counted():
    rows = [("b <n>", 5, "b 1"), ("a <n>", 5, "a 2"), ("c", 10, "c"), ("d", 1, "d")]

    top, more = top_signatures(rows, total=21, top_n=2)

    assert [(t.signature, t.errors, round(t.share, 3), t.sample) for t in top] == [
        ("c", 10, 0.476, "c"),
        ("a <n>", 5, 0.238, "a 2"),
    ]
    assert more == 2
    assert top_signatures(rows, total=21, top_n=0) == ([], 4)


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"window_seconds": 0}, "window_minutes"),
        ({"window_seconds": 7 * 60}, "window_minutes"),
        ({"factor": 0}, "factor"),
        ({"min_count": 0}, "min_count"),
        ({"baseline_days": -1}, "baseline_days"),
    ],
)
def test_bad_rules_are_refused_naming_the_parameter(changes, named):
    values = {"window_seconds": STEP, "factor": 3, "min_count": 10, "baseline_days": 7}
    with pytest.raises(InputError, match=f"^{named} "):
        SpikeRule(**(values | changes), timezone="UTC")


def test_the_current_partial_window_counts_only_once_it_reaches_the_threshold():
    evaluation, _ = plan_transition(
        "api", {W: 9}, None, now=at(W, 200), observed_since=None, rule=RULE
    )
    assert not evaluation.spiking and evaluation.trigger is None
    assert evaluation.previous.start == W - STEP and evaluation.current.start == W


def test_the_spike_start_walks_back_at_most_a_day():
    counts = {W - i * STEP: 50 for i in range(400)}

    _, transition = plan_transition("api", counts, None, now=at(W), observed_since=None, rule=RULE)

    assert transition is not None
    assert transition.check.start == W - STEP  # the last complete window triggers
    assert timedelta(seconds=transition.check.start - transition.spike_start) == timedelta(days=1)

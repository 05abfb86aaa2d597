"""Error-spike decisions: baselines, thresholds, spike and clear transitions, top signatures."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from moltbot.errors import InputError

DAY_SECONDS = 86_400
SPIKING = "spiking"
NORMAL = "normal"
SEVERITIES: tuple[str, ...] = ("spike", "cleared")


@dataclass(frozen=True)
class SpikeRule:
    """When a window's error count is a spike.

    A window spikes when its count is at least `max(min_count, factor x baseline)`. The
    baseline is the larger of two medians: of the same window on each of the previous
    `baseline_days` days, and of the previous windows of the same local day. Windows before
    the source was first watched are left out of both (they are unknown, not zero); a watched
    window with no stored count had no errors. With neither median (a source watched for less
    than a window), the threshold is `min_count`.

    Attributes:
        window_seconds: the window length; it divides a day, so windows line up day to day.
        factor: how many times the baseline a spike is.
        min_count: the fewest errors that are ever a spike (a quiet service's 0 -> 2 is not).
        baseline_days: how many previous days' same window count.
        timezone: where "today" begins (local midnight).
    """

    window_seconds: int
    factor: float
    min_count: int
    baseline_days: int
    timezone: str

    def __post_init__(self) -> None:
        if self.window_seconds <= 0 or DAY_SECONDS % self.window_seconds:
            raise InputError("window_minutes must be more than 0 and divide a day (e.g. 5, 15, 60)")
        if not self.factor > 0:
            raise InputError("factor must be more than 0")
        if self.min_count < 1:
            raise InputError("min_count must be 1 or more")
        if not 0 <= self.baseline_days <= 90:
            raise InputError("baseline_days must be between 0 and 90")


@dataclass(frozen=True)
class WindowCheck:
    """One window judged against its baseline.

    Attributes:
        start: the window's start (epoch seconds, UTC).
        count: its error lines (so far, for the current window).
        baseline: the baseline (None: no history yet).
        threshold: `max(min_count, factor x baseline)`.
        spiking: count >= threshold.
        partial: the window is still running.
    """

    start: int
    count: int
    baseline: float | None
    threshold: float
    spiking: bool
    partial: bool


def _local_midnight(epoch: int, timezone: str) -> int:
    local = datetime.fromtimestamp(epoch, UTC).astimezone(ZoneInfo(timezone))
    return int(local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp())


def baseline_samples(
    start: int, *, observed_since: int | None, rule: SpikeRule
) -> tuple[list[int], list[int]]:
    """The window starts the baseline of the window at `start` is made of: the same window on
    each previous day (newest first), and the previous windows of the same local day."""
    step = rule.window_seconds
    first = start if observed_since is None else observed_since - observed_since % step
    daily = [start - day * DAY_SECONDS for day in range(1, rule.baseline_days + 1)]
    midnight = _local_midnight(start, rule.timezone)
    today = list(range(max(midnight, first), start, step))
    return [s for s in daily if s >= first], today


def baseline_of(
    counts: Mapping[int, int], start: int, *, observed_since: int | None, rule: SpikeRule
) -> float | None:
    """The baseline of the window at `start` (see `SpikeRule`); None without any sample."""
    daily, today = baseline_samples(start, observed_since=observed_since, rule=rule)
    medians = [
        float(statistics.median(counts.get(sample, 0) for sample in samples))
        for samples in (daily, today)
        if samples
    ]
    return max(medians) if medians else None


def check_window(
    counts: Mapping[int, int],
    start: int,
    *,
    observed_since: int | None,
    rule: SpikeRule,
    partial: bool = False,
) -> WindowCheck:
    """Judge the window at `start`."""
    baseline = baseline_of(counts, start, observed_since=observed_since, rule=rule)
    threshold = max(float(rule.min_count), rule.factor * (baseline or 0.0))
    count = counts.get(start, 0)
    return WindowCheck(start, count, baseline, threshold, count >= threshold, partial)


@dataclass(frozen=True)
class Evaluation:
    """A source's recent windows, judged.

    Attributes:
        previous: the last complete window.
        current: the running window (its count can only grow, so reaching the threshold
            early already is a spike).
        spiking: either window spikes.
        trigger: the earlier spiking one of the two (None when neither spikes).
    """

    previous: WindowCheck
    current: WindowCheck

    @property
    def spiking(self) -> bool:
        """True when either window spikes."""
        return self.previous.spiking or self.current.spiking

    @property
    def trigger(self) -> WindowCheck | None:
        """The earlier spiking window of the two."""
        return next((c for c in (self.previous, self.current) if c.spiking), None)


def evaluate(
    counts: Mapping[int, int], *, now: datetime, observed_since: int | None, rule: SpikeRule
) -> Evaluation:
    """Judge the last complete window and the running one at `now`."""
    epoch = int(now.timestamp())
    current = epoch - epoch % rule.window_seconds
    return Evaluation(
        previous=check_window(
            counts, current - rule.window_seconds, observed_since=observed_since, rule=rule
        ),
        current=check_window(
            counts, current, observed_since=observed_since, rule=rule, partial=True
        ),
    )


def spike_start(
    counts: Mapping[int, int], trigger: int, *, observed_since: int | None, rule: SpikeRule
) -> int:
    """The first window of the unbroken run of spiking windows that ends at `trigger`.

    It depends only on the stored counts, so a run retried after a failed delivery finds the
    same start (and the same idempotency key) even in a later window. Looks back one day.
    """
    start = trigger
    for _ in range(DAY_SECONDS // rule.window_seconds):
        earlier = start - rule.window_seconds
        if (
            observed_since is not None
            and earlier < observed_since - observed_since % rule.window_seconds
        ):
            break
        if not check_window(counts, earlier, observed_since=observed_since, rule=rule).spiking:
            break
        start = earlier
    return start


def spike_end(
    counts: Mapping[int, int],
    *,
    since: int,
    before: int,
    observed_since: int | None,
    rule: SpikeRule,
) -> int:
    """The end of a spike that began at `since` and no longer spikes at `before`: the start of
    the window after its last spiking one (or `since` + one window when none spiked)."""
    end = before
    while end - rule.window_seconds > since:
        earlier = end - rule.window_seconds
        if check_window(counts, earlier, observed_since=observed_since, rule=rule).spiking:
            break
        end = earlier
    return max(end, since + rule.window_seconds)


# --------------------------------------------------------------------------- transitions


@dataclass(frozen=True)
class Transition:
    """A source that started or stopped spiking: one message, then one state row.

    Attributes:
        source: the source's name.
        severity: `spike` or `cleared`.
        spike_start: when the spike began (epoch seconds): part of the idempotency key.
        check: the window that decided (the trigger of a spike, the last complete window of
            a clear).
        spike_end: when a cleared spike ended (epoch seconds; None for a spike).
        errors_during: error lines from the spike's start to its end (cleared only).
    """

    source: str
    severity: str
    spike_start: int
    check: WindowCheck
    spike_end: int | None = None
    errors_during: int | None = None

    @property
    def lasted_seconds(self) -> int | None:
        """How long a cleared spike lasted."""
        return None if self.spike_end is None else self.spike_end - self.spike_start

    @property
    def key(self) -> str:
        """The logical idempotency key: automation, source, severity and the spike's start."""
        moment = datetime.fromtimestamp(self.spike_start, UTC).strftime("%Y-%m-%dT%H:%MZ")
        return f"error-spike:{self.source}:{self.severity}:{moment}"

    def state_row(self) -> dict[str, object]:
        """The stored state after this transition is delivered (item-state columns)."""
        start = datetime.fromtimestamp(self.spike_start, UTC)
        if self.severity == "spike":
            return {
                "item_key": self.source,
                "state": SPIKING,
                "since": start,
                "episode_since": start,
            }
        assert self.spike_end is not None
        end = datetime.fromtimestamp(self.spike_end, UTC)
        return {"item_key": self.source, "state": NORMAL, "since": end, "episode_since": None}


@dataclass(frozen=True)
class StoredState:
    """A source's stored state: `spiking` since a window start, or `normal`."""

    state: str
    since: int


def plan_transition(
    source: str,
    counts: Mapping[int, int],
    stored: StoredState | None,
    *,
    now: datetime,
    observed_since: int | None,
    rule: SpikeRule,
) -> tuple[Evaluation, Transition | None]:
    """Judge a source and compare with its stored state: a spike starting, one ending, or
    nothing (still spiking, still normal)."""
    evaluation = evaluate(counts, now=now, observed_since=observed_since, rule=rule)
    was_spiking = stored is not None and stored.state == SPIKING
    trigger = evaluation.trigger
    if trigger is not None and not was_spiking:
        start = spike_start(counts, trigger.start, observed_since=observed_since, rule=rule)
        return evaluation, Transition(source, "spike", start, trigger)
    if trigger is None and was_spiking:
        assert stored is not None
        end = spike_end(
            counts,
            since=stored.since,
            before=evaluation.previous.start,
            observed_since=observed_since,
            rule=rule,
        )
        during = sum(n for start, n in counts.items() if stored.since <= start < end)
        return evaluation, Transition(
            source, "cleared", stored.since, evaluation.previous, end, during
        )
    return evaluation, None


# --------------------------------------------------------------------------- signatures


@dataclass(frozen=True)
class TopSignature:
    """One of the most frequent signatures, with its count, share and a masked sample."""

    signature: str
    errors: int
    share: float
    sample: str


def top_signatures(
    signatures: Sequence[tuple[str, int, str]], total: int, top_n: int
) -> tuple[list[TopSignature], int]:
    """The `top_n` most frequent (signature, errors, sample) rows, most frequent first (ties
    by signature), and how many further signatures there were."""
    ordered = sorted(signatures, key=lambda row: (-row[1], row[0]))
    top = [
        TopSignature(signature, errors, errors / total if total else 0.0, sample)
        for signature, errors, sample in ordered[: max(top_n, 0)]
    ]
    return top, max(len(ordered) - len(top), 0)

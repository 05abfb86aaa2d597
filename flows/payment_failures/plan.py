"""Payment-failure decisions: 5-minute alert batches, repeated customers, daily rates (pure)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from moltbot.state.payments import PaymentRecord

AUTOMATION = "payment-failures"
TICKET_EVENT_TYPE = "payment.repeated"
"""The type of the event handed to ticket-creation for a repeated customer."""

# A failure recorded this close to its window's end goes to the next window instead: the
# scheduled run that alerts a window at its end then never races a late write into it.
SETTLE = timedelta(seconds=30)
# Windows older than this are not alerted any more (after an outage): the day's summary has them.
ALERT_LOOKBACK = timedelta(hours=24)
# Days a summary is still sent for after an outage (the oldest first).
SUMMARY_LOOKBACK_DAYS = 7
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# --------------------------------------------------------------------------- keys


def alert_key(window_start: datetime) -> str:
    """The idempotency key of the batch alert of the window starting at `window_start`."""
    return f"{AUTOMATION}:alert:{window_start.astimezone(UTC):%Y-%m-%dT%H:%MZ}"


def summary_key(day: date) -> str:
    """The idempotency key of the daily summary of `day` (a local date)."""
    return f"{AUTOMATION}:summary:{day.isoformat()}"


def ticket_key(customer_key: str, day: date) -> str:
    """The dedup key of a repeated customer's ticket: one per customer and local day.

    It is the id of the event handed to ticket-creation, so the issue's ledger key is
    `ticket-creation:event:payment.repeated:<ticket_key>:jira:<project>`.
    """
    return f"{AUTOMATION}:{customer_key}:{day.isoformat()}"


# --------------------------------------------------------------------------- attempts


def distinct_attempts(records: Iterable[PaymentRecord]) -> list[PaymentRecord]:
    """One record per (provider, attempt, outcome), the earliest: Stripe announces a failed
    card payment twice (`payment_intent.payment_failed` and `charge.failed`), and it counts
    once; a redelivered event is one row already."""
    chosen: dict[tuple[str, str, str], PaymentRecord] = {}
    for record in sorted(records, key=lambda r: (r.occurred_at, r.source, r.event_id)):
        chosen.setdefault((record.provider, record.attempt, record.outcome), record)
    return list(chosen.values())


def failures(records: Iterable[PaymentRecord]) -> list[PaymentRecord]:
    """The distinct failed attempts, oldest first."""
    return [r for r in distinct_attempts(records) if r.outcome == "failed"]


# --------------------------------------------------------------------------- alert batches


def window_start(moment: datetime, window: timedelta) -> datetime:
    """The start of the clock-aligned window holding `moment` (5 minutes: :00, :05, …)."""
    size = int(window.total_seconds())
    seconds = int((moment.astimezone(UTC) - _EPOCH).total_seconds())
    return _EPOCH + timedelta(seconds=seconds - seconds % size)


def alert_window(record: PaymentRecord, window: timedelta) -> datetime:
    """The window whose alert lists `record`: the one it happened in, unless it was recorded
    too late for that window's alert (then the window it was recorded in, `SETTLE` later)."""
    start = window_start(record.occurred_at, window)
    recorded = record.recorded_at or record.occurred_at
    if recorded + SETTLE < start + window:
        return start
    return window_start(recorded + SETTLE, window)


@dataclass(frozen=True)
class AlertBatch:
    """The failures of one closed window, for one alert.

    Attributes:
        start: the window's start (UTC).
        end: its end.
        failures: its distinct failed attempts, oldest first.
        amounts: currency -> summed amount in the minor unit (failures without an amount left
            out).
        reasons: (reason, failures) by count, then name.
        providers: (provider, failures) by count, then name.
        customers: distinct customers known among them.
        late: failures that happened before the window (reached moltbot after theirs closed).
    """

    start: datetime
    end: datetime
    failures: tuple[PaymentRecord, ...]
    amounts: dict[str, int]
    reasons: tuple[tuple[str, int], ...]
    providers: tuple[tuple[str, int], ...]
    customers: int
    late: int

    @property
    def key(self) -> str:
        """Its alert's idempotency key."""
        return alert_key(self.start)

    @property
    def count(self) -> int:
        """How many failures it lists."""
        return len(self.failures)


def plan_alert_batches(
    records: Iterable[PaymentRecord], *, window: timedelta, since: datetime, now: datetime
) -> list[AlertBatch]:
    """One batch per closed window (`since` <= start, end <= `now`) that has failures.

    Args:
        records: payment events (any outcome; repeated attempts count once).
        window: the window length (dividing a day: 5 minutes, 15 minutes, an hour).
        since: the first window start to consider (the last alerted window's end).
        now: the moment of the run.

    Returns:
        The batches, oldest first.
    """
    grouped: dict[datetime, list[PaymentRecord]] = {}
    for record in failures(records):
        start = alert_window(record, window)
        if start >= since and start + window <= now:
            grouped.setdefault(start, []).append(record)
    return [_batch(start, window, items) for start, items in sorted(grouped.items())]


def _batch(start: datetime, window: timedelta, items: list[PaymentRecord]) -> AlertBatch:
    return AlertBatch(
        start=start,
        end=start + window,
        failures=tuple(items),
        amounts=amounts_by_currency(items),
        reasons=_ranked(Counter(r.reason or "unknown" for r in items)),
        providers=_ranked(Counter(r.provider for r in items)),
        customers=len({r.customer_key for r in items if r.customer_key}),
        late=sum(1 for r in items if r.occurred_at < start),
    )


def closed_until(now: datetime, window: timedelta) -> datetime:
    """The end of the last closed window at `now`."""
    return window_start(now, window)


def amounts_by_currency(records: Iterable[PaymentRecord]) -> dict[str, int]:
    """Currency -> summed minor-unit amount, currencies in alphabetical order."""
    totals: Counter[str] = Counter()
    for record in records:
        if record.amount_minor is not None and record.currency:
            totals[record.currency] += record.amount_minor
    return dict(sorted(totals.items()))


def _ranked(counts: Counter[str]) -> tuple[tuple[str, int], ...]:
    return tuple(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


# --------------------------------------------------------------------------- repeated customers


@dataclass(frozen=True)
class RepeatedCustomer:
    """A customer whose failures reached the threshold within the span, on one local day.

    Attributes:
        customer_key: the customer's hash.
        customer_label: the masked label to show.
        day: the local day of the failure that reached the threshold (first on that day).
        crossed_at: that failure's time (UTC).
        failures: the failures within the span ending at `crossed_at`, oldest first.
    """

    customer_key: str
    customer_label: str | None
    day: date
    crossed_at: datetime
    failures: tuple[PaymentRecord, ...]

    @property
    def key(self) -> str:
        """Its ticket's dedup key."""
        return ticket_key(self.customer_key, self.day)


def repeated_customers(
    records: Iterable[PaymentRecord], *, threshold: int, span: timedelta, timezone: str
) -> list[RepeatedCustomer]:
    """Which (customer, local day) should have a ticket: a failure that makes `threshold` or
    more failures of one customer within `span` opens one, the first such failure of the day.

    The reconcile automation compares this list with the tickets recorded.

    Returns:
        One entry per (customer, day), ordered by the time it was reached.
    """
    zone = ZoneInfo(timezone)
    by_customer: dict[str, list[PaymentRecord]] = {}
    for record in failures(records):
        if record.customer_key:
            by_customer.setdefault(record.customer_key, []).append(record)
    found: dict[tuple[str, date], RepeatedCustomer] = {}
    for key, items in by_customer.items():
        first = 0
        for last, record in enumerate(items):
            while record.occurred_at - items[first].occurred_at >= span:
                first += 1
            if last - first + 1 < threshold:
                continue
            day = record.occurred_at.astimezone(zone).date()
            if (key, day) in found:
                continue
            inside = tuple(items[first : last + 1])
            label = next((r.customer_label for r in reversed(inside) if r.customer_label), None)
            found[(key, day)] = RepeatedCustomer(key, label, day, record.occurred_at, inside)
    return sorted(found.values(), key=lambda r: (r.crossed_at, r.customer_key))


# --------------------------------------------------------------------------- daily summary


@dataclass(frozen=True)
class Breakdown:
    """Failures of one reason or provider, and their rate.

    Attributes:
        name: the reason or provider.
        failures: its failed attempts.
        attempts: the attempts it is a rate of (all the day's for a reason, the provider's for
            a provider); None when no success was recorded (then `rate` is a share of failures).
        rate: failures / attempts, or failures / all failures without successes (0..1).
    """

    name: str
    failures: int
    attempts: int | None
    rate: float


@dataclass(frozen=True)
class DaySummary:
    """One local day's payment failures.

    Attributes:
        day: the local date.
        failures: distinct failed attempts.
        successes: distinct successful attempts.
        rates_known: whether any success was recorded (else shares of failures are given).
        rate: failures / attempts (None without successes).
        amounts: currency -> failed amount in the minor unit.
        customers: distinct customers who failed.
        by_reason: per reason, most failures first.
        by_provider: per provider, most failures first.
    """

    day: date
    failures: int
    successes: int
    rates_known: bool
    rate: float | None
    amounts: dict[str, int]
    customers: int
    by_reason: tuple[Breakdown, ...]
    by_provider: tuple[Breakdown, ...]

    @property
    def attempts(self) -> int:
        """Failed and successful attempts."""
        return self.failures + self.successes

    @property
    def key(self) -> str:
        """Its message's idempotency key."""
        return summary_key(self.day)


def day_bounds(day: date, timezone: str) -> tuple[datetime, datetime]:
    """The UTC start and end of local `day`."""
    zone = ZoneInfo(timezone)
    start = datetime.combine(day, time(), tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), time(), tzinfo=zone)
    return start.astimezone(UTC), end.astimezone(UTC)


def summarize_day(records: Iterable[PaymentRecord], *, day: date, timezone: str) -> DaySummary:
    """The failures of local `day` and their rates by reason and by provider.

    A reason's rate is its failures over all the day's attempts; a provider's is its failures
    over its own attempts. Without any success recorded that day, attempts are unknown and
    each rate is a share of the failures instead.
    """
    start, end = day_bounds(day, timezone)
    attempts = [r for r in distinct_attempts(records) if start <= r.occurred_at < end]
    failed = [r for r in attempts if r.outcome == "failed"]
    succeeded = [r for r in attempts if r.outcome == "succeeded"]
    known = bool(succeeded)
    total = len(attempts) if known else len(failed)
    reasons = Counter(r.reason or "unknown" for r in failed)
    provider_failures = Counter(r.provider for r in failed)
    provider_attempts = Counter(r.provider for r in attempts)
    by_reason = tuple(
        Breakdown(name, count, len(attempts) if known else None, _ratio(count, total))
        for name, count in _ranked(reasons)
    )
    by_provider = tuple(
        Breakdown(
            name,
            count,
            provider_attempts[name] if known else None,
            _ratio(count, provider_attempts[name] if known else len(failed)),
        )
        for name, count in _ranked(provider_failures)
    )
    return DaySummary(
        day=day,
        failures=len(failed),
        successes=len(succeeded),
        rates_known=known,
        rate=_ratio(len(failed), len(attempts)) if known else None,
        amounts=amounts_by_currency(failed),
        customers=len({r.customer_key for r in failed if r.customer_key}),
        by_reason=by_reason,
        by_provider=by_provider,
    )


def _ratio(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def summary_days_due(now: datetime, timezone: str, last_sent: date | None) -> list[date]:
    """The local days whose summary is due at `now`: every ended day after `last_sent` (at most
    `SUMMARY_LOOKBACK_DAYS`, oldest first); the first time, yesterday only."""
    yesterday = now.astimezone(ZoneInfo(timezone)).date() - timedelta(days=1)
    if last_sent is None:
        return [yesterday]
    first = max(
        last_sent + timedelta(days=1), yesterday - timedelta(days=SUMMARY_LOOKBACK_DAYS - 1)
    )
    return [first + timedelta(days=n) for n in range((yesterday - first).days + 1)]


def alert_since(now: datetime, last_end: datetime | None) -> datetime:
    """The first window start to alert: after the last alerted window, within the lookback."""
    floor = now - ALERT_LOOKBACK
    return floor if last_end is None else max(last_end, floor)


def customers_in(records: Sequence[PaymentRecord]) -> list[str]:
    """The distinct customer keys of failures among `records`, in order."""
    return list(
        dict.fromkeys(r.customer_key for r in records if r.customer_key and r.outcome == "failed")
    )

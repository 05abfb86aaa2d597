"""payment-failures decisions with small hand-checked inputs: windows, repeats, daily rates."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from flows.payment_failures.plan import (
    alert_key,
    alert_window,
    distinct_attempts,
    plan_alert_batches,
    repeated_customers,
    summarize_day,
    summary_days_due,
    ticket_key,
    window_start,
)
from moltbot.state.payments import PaymentRecord

SEOUL = "Asia/Seoul"
FIVE = timedelta(minutes=5)
DAY = timedelta(hours=24)


def at(text: str) -> datetime:
    """A UTC moment from `HH:MM:SS` on 2026-11-24, or a full ISO text."""
    if len(text) <= 8:
        text = f"2026-11-24T{text}+00:00"
    return datetime.fromisoformat(text).astimezone(UTC)


def failure(
    event_id: str,
    when: str,
    *,
    customer: str | None = "c1",
    amount: int | None = 1000,
    currency: str = "KRW",
    reason: str = "card_declined",
    provider: str = "stripe",
    attempt: str | None = None,
    recorded: str | None = None,
    outcome: str = "failed",
) -> PaymentRecord:
    return PaymentRecord(
        source="stripe",
        event_id=event_id,
        provider=provider,
        attempt=attempt or f"att-{event_id}",
        outcome=outcome,  # type: ignore[arg-type]
        customer_key=customer,
        customer_label=None if customer is None else f"***@example.com #{customer}",
        amount_minor=amount,
        currency=currency,
        reason=None if outcome == "succeeded" else reason,
        occurred_at=at(when),
        recorded_at=at(recorded or when),
    )


def success(event_id: str, when: str, **kwargs) -> PaymentRecord:
    return failure(event_id, when, outcome="succeeded", **kwargs)


@pytest.mark.parametrize(
    ("moment", "start"),
    [
        ("10:00:00", "10:00:00"),
        ("10:04:59", "10:00:00"),
        ("10:05:00", "10:05:00"),
        ("23:59:59", "23:55:00"),
    ],
)
def test_windows_are_aligned_to_the_clock(moment: str, start: str) -> None:
    assert window_start(at(moment), FIVE) == at(start)


@pytest.mark.parametrize(
    ("happened", "recorded", "window"),
    [
        ("10:01:00", "10:01:00", "10:00:00"),  # on time
        ("10:01:00", "10:04:29", "10:00:00"),  # 31 s before the end: still its own window
        ("10:01:00", "10:04:31", "10:05:00"),  # within 30 s of the end: the next one
        ("10:01:00", "10:17:00", "10:15:00"),  # arrived late: the window it arrived in
    ],
)
def test_a_failure_recorded_too_late_for_its_window_goes_to_a_later_one(
    happened: str, recorded: str, window: str
) -> None:
    assert alert_window(failure("e", happened, recorded=recorded), FIVE) == at(window)


def test_one_batch_per_closed_window_with_amounts_reasons_and_providers() -> None:
    records = [
        failure("e1", "10:00:10", customer="a", amount=45000, currency="KRW"),
        failure("e2", "10:03:00", customer="b", amount=1999, currency="USD", reason="expired_card"),
        failure("e3", "10:04:00", customer="a", amount=5000, provider="toss"),
        success("s1", "10:02:00"),
        failure("e4", "10:07:00", reason="insufficient_funds"),  # window 10:05, still open
    ]

    [batch] = plan_alert_batches(records, window=FIVE, since=at("09:00:00"), now=at("10:06:00"))

    assert (batch.start, batch.end, batch.count) == (at("10:00:00"), at("10:05:00"), 3)
    assert batch.amounts == {"KRW": 50000, "USD": 1999}
    assert batch.reasons == (("card_declined", 2), ("expired_card", 1))
    assert batch.providers == (("stripe", 2), ("toss", 1))
    assert batch.customers == 2
    assert batch.key == alert_key(at("10:00:00")) == "payment-failures:alert:2026-11-24T10:00Z"


def test_windows_before_since_are_not_alerted_again() -> None:
    records = [failure("e1", "10:01:00"), failure("e2", "10:06:00")]

    batches = plan_alert_batches(records, window=FIVE, since=at("10:05:00"), now=at("10:20:00"))

    assert [b.start for b in batches] == [at("10:05:00")]


def test_a_failure_announced_by_intent_and_charge_counts_once() -> None:
    intent = failure("evt_pi", "10:01:00", attempt="ch_1")
    charge = failure("evt_ch", "10:01:01", attempt="ch_1", reason="card_declined")

    assert distinct_attempts([charge, intent]) == [intent]
    [batch] = plan_alert_batches([intent, charge], window=FIVE, since=at("10:00:00"),
                                 now=at("10:05:00"))  # fmt: skip
    assert batch.count == 1


@pytest.mark.parametrize(
    ("times", "expected"),
    [
        # Two failures: under the threshold.
        (["01:00:00", "02:00:00"], []),
        # Three within 24 h: a ticket on the day of the third (Seoul: 24 Nov).
        (["01:00:00", "02:00:00", "03:00:00"], [("2026-11-24", "03:00:00")]),
        # A fourth the same day: still one ticket.
        (["01:00:00", "02:00:00", "03:00:00", "04:00:00"], [("2026-11-24", "03:00:00")]),
        # Three spread over more than 24 h: none.
        (["2026-11-23T01:00:00+00:00", "2026-11-23T12:00:00+00:00", "02:00:00"], []),
    ],
)
def test_three_failures_of_one_customer_within_24_hours_make_one_ticket(
    times: list[str], expected: list[tuple[str, str]]
) -> None:
    records = [failure(f"e{n}", when) for n, when in enumerate(times)]

    found = repeated_customers(records, threshold=3, span=DAY, timezone=SEOUL)

    assert [(r.day.isoformat(), r.crossed_at) for r in found] == [
        (day, at(when)) for day, when in expected
    ]
    assert [r.key for r in found] == [
        ticket_key("c1", date.fromisoformat(day)) for day, _ in expected
    ]


def test_a_new_local_day_with_three_failures_in_the_last_24_hours_is_a_new_ticket() -> None:
    # Seoul days: 14:00 UTC is 23:00 on the 24th; 15:30 UTC is 00:30 on the 25th.
    times = ["13:00:00", "13:30:00", "14:00:00", "15:30:00"]
    records = [failure(f"e{n}", when) for n, when in enumerate(times)]

    found = repeated_customers(records, threshold=3, span=DAY, timezone=SEOUL)

    assert [(r.day, len(r.failures)) for r in found] == [
        (date(2026, 11, 24), 3),
        (date(2026, 11, 25), 4),
    ]


def test_failures_of_different_customers_and_unknown_customers_do_not_add_up() -> None:
    records = [
        failure("e1", "01:00:00", customer="a"),
        failure("e2", "02:00:00", customer="b"),
        failure("e3", "03:00:00", customer=None),
        failure("e4", "04:00:00", customer="a"),
        success("s1", "05:00:00", customer="a"),
    ]

    assert repeated_customers(records, threshold=3, span=DAY, timezone=SEOUL) == []


def test_the_daily_summary_gives_rates_by_reason_and_by_provider() -> None:
    # Seoul 24 Nov = 2026-11-23T15:00Z .. 2026-11-24T15:00Z.
    records = [
        failure("f1", "01:00:00", reason="card_declined", provider="stripe", amount=1000),
        failure("f2", "02:00:00", reason="card_declined", provider="toss", amount=2000),
        failure("f3", "03:00:00", reason="expired_card", provider="stripe", amount=500,
                currency="USD"),
        success("s1", "04:00:00", provider="stripe"),
        success("s2", "05:00:00", provider="stripe"),
        success("s3", "06:00:00", provider="toss"),
        success("s4", "07:00:00", provider="toss"),
        success("s5", "08:00:00", provider="toss"),
        failure("late", "16:00:00"),  # 25 Nov in Seoul
    ]  # fmt: skip

    summary = summarize_day(records, day=date(2026, 11, 24), timezone=SEOUL)

    assert (summary.failures, summary.successes, summary.attempts) == (3, 5, 8)
    assert summary.rates_known and summary.rate == pytest.approx(3 / 8)
    assert summary.amounts == {"KRW": 3000, "USD": 500}
    assert [(b.name, b.failures, b.attempts, b.rate) for b in summary.by_reason] == [
        ("card_declined", 2, 8, pytest.approx(2 / 8)),
        ("expired_card", 1, 8, pytest.approx(1 / 8)),
    ]
    # stripe: 2 failures of 4 attempts; toss: 1 of 4.
    assert [(b.name, b.failures, b.attempts, b.rate) for b in summary.by_provider] == [
        ("stripe", 2, 4, pytest.approx(0.5)),
        ("toss", 1, 4, pytest.approx(0.25)),
    ]


def test_without_successes_the_summary_gives_shares_of_failures() -> None:
    records = [
        failure("f1", "01:00:00", reason="card_declined"),
        failure("f2", "02:00:00", reason="card_declined"),
        failure("f3", "03:00:00", reason="expired_card", provider="toss"),
        failure("f4", "04:00:00", reason="expired_card"),
    ]

    summary = summarize_day(records, day=date(2026, 11, 24), timezone=SEOUL)

    assert not summary.rates_known and summary.rate is None
    assert [(b.name, b.attempts, b.rate) for b in summary.by_reason] == [
        ("card_declined", None, 0.5),
        ("expired_card", None, 0.5),
    ]
    assert [(b.name, b.rate) for b in summary.by_provider] == [("stripe", 0.75), ("toss", 0.25)]


@pytest.mark.parametrize(
    ("now", "last", "expected"),
    [
        # 2026-11-25 00:05 in Seoul: the 24th has ended.
        ("2026-11-24T15:05:00+00:00", None, ["2026-11-24"]),
        ("2026-11-24T15:05:00+00:00", "2026-11-24", []),
        ("2026-11-24T15:05:00+00:00", "2026-11-22", ["2026-11-23", "2026-11-24"]),
        # Ten days without a run: the last seven only.
        ("2026-11-24T15:05:00+00:00", "2026-11-14", [f"2026-11-{d}" for d in range(18, 25)]),
    ],
)
def test_summaries_are_due_for_each_ended_day_once(
    now: str, last: str | None, expected: list[str]
) -> None:
    days = summary_days_due(at(now), SEOUL, None if last is None else date.fromisoformat(last))

    assert [day.isoformat() for day in days] == expected

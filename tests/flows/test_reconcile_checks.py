"""Reconcile's checks on hand-built inputs: each source's omissions, reasons and counts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from flows.reconcile.checks import (
    AlertedItem,
    EffectRecord,
    ExpectedTicket,
    Inputs,
    Omission,
    RoutedEntry,
    RunRecord,
    StreamMark,
    _gaps,
    alert_key,
    check_form_rows,
    check_inbox,
    check_payment_tickets,
    check_recorded_effects,
    check_stock_alerts,
    new_omissions,
    reconcile,
)

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
SINCE = NOW - timedelta(hours=48)
GRACE = timedelta(minutes=60)
STREAM = "sheet1/Form Responses 1"


def effect(key: str, status: str = "done", *, at: datetime = NOW - timedelta(hours=1),
           automation: str | None = None, run: str | None = None) -> EffectRecord:  # fmt: skip
    return EffectRecord(
        key=key,
        automation=automation or key.split(":", 1)[0],
        status=status,
        created_at=at,
        updated_at=at,
        flow_run_id=run,
        route=None,
    )


def found(omissions: list[Omission]) -> list[tuple[str, str, str]]:
    return [(o.automation, o.item, o.reason) for o in omissions]


# --------------------------------------------------------------------------- form-digest


def window(first: int, last: int, dest: str = "outbox", **kwargs) -> EffectRecord:
    return effect(f"form-digest:{STREAM}:{first}-{last}:abcdef012345:{dest}", **kwargs)


def mark(row: int | None, pending: int | None = None, at: datetime = NOW) -> StreamMark:
    return StreamMark(stream=STREAM, position_row=row, pending_row=pending, updated_at=at)


def test_rows_covered_by_done_digests_are_no_omission() -> None:
    result = check_form_rows(
        [mark(30)], [window(2, 25), window(2, 25, "notion"), window(26, 30)],
        now=NOW, since=SINCE, grace=GRACE,
    )  # fmt: skip
    assert result.omissions == [] and result.expected["form-digest"] == 2


def test_a_deleted_digest_leaves_its_rows_uncovered() -> None:
    result = check_form_rows([mark(30)], [window(26, 30)], now=NOW, since=SINCE, grace=GRACE)
    [omission] = result.omissions
    assert (omission.item, omission.reason) == ("2–25", "missing_digest")
    assert omission.key == f"form-digest:{STREAM}:2-25:"
    assert omission.item_text("ko") == "시트 2–25행"
    assert result.expected["form-digest"] == 2


def test_rows_before_the_period_count_from_the_last_old_window() -> None:
    old = NOW - timedelta(days=5)
    result = check_form_rows(
        [mark(40)], [window(2, 25, at=old), window(31, 40)], now=NOW, since=SINCE, grace=GRACE
    )
    assert found(result.omissions) == [("form-digest", "26–30", "missing_digest")]
    assert result.expected["form-digest"] == 2  # the recent window and the gap


def test_dead_channel_and_held_window_are_omissions() -> None:
    result = check_form_rows(
        [mark(25, pending=30, at=NOW - timedelta(hours=3))],
        [window(2, 25), window(2, 25, "slack-ops", status="dead")],
        now=NOW, since=SINCE, grace=GRACE,
    )  # fmt: skip
    assert found(result.omissions) == [
        ("form-digest", "2–25", "dead"),
        ("form-digest", "26–30", "window_held"),
    ]
    assert result.omissions[0].key.endswith(":slack-ops")


def test_a_freshly_held_window_is_in_flight() -> None:
    result = check_form_rows([mark(25, pending=30)], [window(2, 25)], now=NOW, since=SINCE,
                             grace=GRACE)  # fmt: skip
    assert result.omissions == []


@pytest.mark.parametrize(
    ("covered", "expected"),
    [
        ([], [(2, 9)]),
        ([(2, 5), (8, 9)], [(6, 7)]),
        ([(1, 3), (3, 12)], []),
        ([(4, 4)], [(2, 3), (5, 9)]),
    ],
)
def test_gaps(covered, expected) -> None:
    assert _gaps(covered, start=2, end=9) == expected


# --------------------------------------------------------------------------- inventory-alert

T = NOW - timedelta(hours=2)


def item(sku: str, state: str, *, since: datetime = T, alerted: datetime = T) -> AlertedItem:
    return AlertedItem(sku=sku, state=state, since=since, last_alerted_at=alerted)


def test_each_alerted_item_needs_its_severity_message() -> None:
    effects = [
        effect("inventory-alert:out:d1:slack-urgent", at=T + timedelta(seconds=2)),
        effect("inventory-alert:out:d1:sms-oncall", "dead", at=T + timedelta(seconds=2)),
        effect("inventory-alert:recovered:d2:outbox", at=T + timedelta(seconds=3)),
    ]
    result = check_stock_alerts(
        [item("B2", "out"), item("A1", "low"), item("C3", "ok")], effects, now=NOW, grace=GRACE
    )
    assert found(result.omissions) == [
        ("inventory-alert", "A1", "missing_alert"),
        ("inventory-alert", "B2", "dead"),
    ]
    assert result.omissions[0].key == "inventory-alert:low:"
    assert result.omissions[1].key == "inventory-alert:out:d1:sms-oncall"
    assert result.expected["inventory-alert"] == 3
    assert len(result.accounted) == 3


def test_reminders_match_reminder_messages_and_far_messages_do_not_count() -> None:
    reminded = item("B2", "out", since=T - timedelta(days=2))
    effects = [effect("inventory-alert:out:d1:outbox", at=T + timedelta(seconds=1))]
    result = check_stock_alerts([reminded], effects, now=NOW, grace=GRACE)
    assert found(result.omissions) == [("inventory-alert", "B2", "missing_alert")]
    assert result.omissions[0].key == "inventory-alert:reminder:"
    late = [effect("inventory-alert:reminder:d3:outbox", at=T + timedelta(hours=3))]
    assert found(check_stock_alerts([reminded], late, now=NOW, grace=GRACE).omissions) == [
        ("inventory-alert", "B2", "missing_alert")
    ]


def test_a_rerun_after_a_crash_finds_the_first_runs_message() -> None:
    effects = [effect("inventory-alert:low:d1:outbox", at=T - timedelta(minutes=5))]
    result = check_stock_alerts([item("A1", "low")], effects, now=NOW, grace=GRACE)
    assert result.omissions == []


# --------------------------------------------------------------------------- inbox


def entry(entry_id: str, status: str, run: str | None = None,
          at: datetime = NOW - timedelta(hours=2)) -> RoutedEntry:  # fmt: skip
    return RoutedEntry(
        entry_id=entry_id,
        automation="ticket-creation",
        deployment="ticket-creation/default",
        status=status,
        received_at=at,
        updated_at=at,
        flow_run_id=run,
    )


def run(run_id: str, state: str, started: bool = True) -> RunRecord:
    return RunRecord(run_id, state.upper(), state.title(), started)


def test_inbox_entries_each_reason() -> None:
    entries = [
        entry("e-ok", "dispatched", "r-ok"),
        entry("e-pending", "pending"),
        entry("e-fresh", "pending", at=NOW - timedelta(minutes=5)),
        entry("e-failed", "failed"),
        entry("e-gone", "dispatched", "r-gone"),
        entry("e-late", "dispatched", "r-late"),
        entry("e-crashed", "dispatched", "r-crashed"),
        entry("e-empty", "dispatched", "r-empty"),
        entry("e-dead", "dispatched", "r-dead"),
        entry("e-running", "dispatched", "r-running"),
    ]
    runs = {
        r.id: r
        for r in [
            run("r-ok", "completed"),
            run("r-late", "scheduled", started=False),
            run("r-crashed", "crashed"),
            run("r-empty", "completed"),
            run("r-dead", "completed"),
            run("r-running", "running"),
        ]
    }
    effects = [
        effect("ticket-creation:x:jira:OPS", run="r-ok"),
        effect("ticket-creation:y:jira:OPS", "dead", run="r-dead"),
    ]
    result = check_inbox(entries, runs, effects, now=NOW, grace=GRACE)
    by_item = {o.item: o for o in result.omissions}
    assert sorted(found(result.omissions)) == sorted(
        [
            ("ticket-creation", "e-pending", "inbox_pending"),
            ("ticket-creation", "e-failed", "inbox_failed"),
            ("ticket-creation", "e-gone", "run_missing"),
            ("ticket-creation", "e-late", "run_not_started"),
            ("ticket-creation", "e-crashed", "run_ended"),
            ("ticket-creation", "e-empty", "no_effects"),
            ("ticket-creation", "e-dead", "dead"),
        ]
    )
    assert result.expected["ticket-creation"] == 10
    assert by_item["e-pending"].key == "e-pending:ticket-creation/default"
    assert by_item["e-crashed"].detail == "Crashed"
    assert by_item["e-dead"].key == "ticket-creation:y:jira:OPS"


def test_a_run_scheduled_moments_ago_is_in_flight() -> None:
    fresh = entry("e", "dispatched", "r", at=NOW - timedelta(minutes=1))
    late = check_inbox([fresh], {"r": run("r", "scheduled", False)}, [], now=NOW, grace=GRACE)
    assert late.omissions == []


def test_a_run_that_stored_its_event_needs_no_ledger_row() -> None:
    # payment-failures keeps each event as its record; its ticket or alert comes later, from
    # other events or the scheduled check, so an empty completed run is not an omission.
    stored, lost = entry("e-stored", "dispatched", "r1"), entry("e-lost", "dispatched", "r2")
    runs = {"r1": run("r1", "completed"), "r2": run("r2", "completed")}

    result = check_inbox(
        [stored, lost], runs, [], now=NOW, grace=GRACE, stored_entries=frozenset({"e-stored"})
    )

    assert found(result.omissions) == [("ticket-creation", "e-lost", "no_effects")]
    assert result.expected["ticket-creation"] == 2


# --------------------------------------------------------------------------- payments and rest

TICKET = "ticket-creation:event:payment.repeated:payment-failures:c0ffee:2026-11-24:jira:"


def test_payment_tickets_need_their_issue_row() -> None:
    tickets = [
        ExpectedTicket("c0ffee", "2026-11-24", TICKET, 3),
        ExpectedTicket("beef", "2026-11-24", TICKET.replace("c0ffee", "beef"), 4),
    ]
    effects = [effect(TICKET + "OPS:seen:abc"), effect(TICKET.replace("c0ffee", "beef") + "OPS")]
    result = check_payment_tickets(tickets, effects, now=NOW, grace=GRACE)
    assert found(result.omissions) == [
        ("payment-failures", "c0ffee · 2026-11-24", "missing_ticket")
    ]
    assert result.omissions[0].item_text("en") == "customer #c0ffee · 2026-11-24"


def test_other_effects_count_per_logical_item_and_reconcile_ignores_its_own() -> None:
    effects = [
        effect("daily-report:2026-11-23:slack-ops"),
        effect("daily-report:2026-11-23:outbox", "failed"),
        effect("daily-report:2026-11-22:outbox", "pending", at=NOW - timedelta(hours=2)),
        effect("daily-report:2026-11-21:outbox", "pending", at=NOW - timedelta(minutes=2)),
        effect("reconcile:omissions:abc:outbox", "dead"),
    ]
    result = check_recorded_effects(effects, accounted=set(), now=NOW, grace=GRACE)
    assert found(result.omissions) == [
        ("daily-report", "daily-report:2026-11-22", "stale_pending"),
        ("daily-report", "daily-report:2026-11-23", "failed"),
    ]
    assert dict(result.expected) == {"daily-report": 3}


def test_a_message_held_past_its_quiet_hours_is_an_omission() -> None:
    from dataclasses import replace

    held = effect("service-health:degraded:a1:slack-ops", "queued", at=NOW - timedelta(hours=9))
    effects = [
        replace(held, due_at=NOW - timedelta(hours=2)),  # quiet hours ended 2 h ago
        replace(
            held, key="service-health:degraded:b2:slack-ops", due_at=NOW - timedelta(minutes=5)
        ),
        replace(held, key="service-health:degraded:c3:slack-ops", due_at=NOW + timedelta(hours=1)),
    ]
    result = check_recorded_effects(effects, accounted=set(), now=NOW, grace=GRACE)
    assert found(result.omissions) == [
        ("service-health", "service-health:degraded:a1", "held_past_quiet_hours")
    ]
    assert "on-call" in result.omissions[0].reason_text("en")


def test_reconcile_rates_filter_and_new_omissions() -> None:
    inputs = Inputs(
        effects=[
            effect("daily-report:2026-11-23:outbox", "dead"),
            effect("inventory-alert:low:d1:outbox", at=T + timedelta(seconds=1)),
        ],
        alerted=[item("A1", "low"), item("B2", "out")],
    )
    everything = reconcile(inputs, now=NOW, since=SINCE, grace=GRACE)
    assert {name: rate.as_dict() for name, rate in everything.rates.items()} == {
        "daily-report": {"expected": 1, "omissions": 1, "rate": 1.0},
        "inventory-alert": {"expected": 2, "omissions": 1, "rate": 0.5},
    }
    only = reconcile(inputs, now=NOW, since=SINCE, grace=GRACE, automations=["inventory-alert"])
    assert found(only.omissions) == [("inventory-alert", "B2", "missing_alert")]
    assert list(only.rates) == ["inventory-alert"]
    # Ids are stable: the same findings again are not new, and the alert key is the same.
    again = reconcile(inputs, now=NOW + timedelta(hours=1), since=SINCE, grace=GRACE)
    assert [o.id for o in again.omissions] == [o.id for o in everything.omissions]
    assert new_omissions(again.omissions, {o.id for o in everything.omissions}) == []
    assert alert_key(everything.omissions) == alert_key(list(reversed(again.omissions)))

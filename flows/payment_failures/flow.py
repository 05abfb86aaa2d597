"""The payment-failures flow: record payments, alert per window, ticket repeats, rate each day."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger
from prefect.utilities.annotations import quote

from flows.payment_failures import ENTRY
from flows.payment_failures.events import PaymentEventError, payment_record
from flows.payment_failures.plan import (
    AUTOMATION,
    SETTLE,
    TICKET_EVENT_TYPE,
    AlertBatch,
    DaySummary,
    RepeatedCustomer,
    alert_since,
    closed_until,
    customers_in,
    day_bounds,
    plan_alert_batches,
    repeated_customers,
    summarize_day,
    summary_days_due,
)
from flows.payment_failures.render import (
    amounts_text,
    build_alert_message,
    build_summary_message,
    format_rate,
    run_summary,
)
from flows.payment_failures.tickets import DEFAULT_MAPPING, ticket_event, ticket_ledger_key
from flows.shared.runs import AUTOMATION_FLOW
from flows.ticket_creation.mapping import TicketMapping, choose_mapping, load_mappings
from moltbot.config.project import ProjectConfig
from moltbot.config.settings import checked_timezone, get_settings
from moltbot.effects import Route
from moltbot.effects.report import RunReport, finish_run
from moltbot.errors import DeliveryFailed, InputError
from moltbot.masking import mask_text
from moltbot.runlabels import artifact_description, flow_run_namer, label_current_run, local_minute
from moltbot.state.inbox import InboxEntry
from moltbot.state.payments import PaymentRecord
from moltbot.state.watermarks import WatermarkMoved
from tasks.artifacts import TableColumn, publish_markdown, publish_table, readable_rows
from tasks.effects import channel_destinations, deliver, read_effects, routes_for, unsettled
from tasks.payments import (
    customer_pseudonym_secret,
    read_inbox_entries,
    read_payments,
    record_payments,
    reject_inbox_entries,
)
from tasks.watermarks import advance_watermark, read_watermark

SEVERITIES = ("alert", "summary")
ALERT_STREAM = "alerts"
SUMMARY_STREAM = "summaries"
ARTIFACT_KEYS = {
    "summary": "payment-failures",
    "batches": "payment-failures-batches",
    "day": "payment-failures-day",
}
BATCH_COLUMNS = (
    TableColumn("window", "Window", "구간"),
    TableColumn("failures", "Failures", "실패", kind="number"),
    TableColumn("amounts", "Amount", "금액"),
    TableColumn("reasons", "Reasons", "사유"),
    TableColumn("providers", "Providers", "결제사"),
    TableColumn("customers", "Customers", "고객 수", kind="number"),
    TableColumn("late", "Arrived late", "늦게 도착", kind="number"),
)
DAY_COLUMNS = (
    TableColumn("day", "Day", "날짜"),
    TableColumn(
        "by",
        "By",
        "구분",
        values={"reason": ("reason", "사유"), "provider": ("provider", "결제사")},
    ),
    TableColumn("name", "Name", "이름"),
    TableColumn("failures", "Failures", "실패", kind="number"),
    TableColumn("attempts", "Attempts", "시도", kind="number"),
    TableColumn("rate", "Rate", "비율"),
)


class PaymentFailuresResult(RunReport):
    """A payment-failures run: the webhook events read and recorded, the alerts, the daily
    summaries and the repeated customers' tickets."""

    events_read: int
    recorded: int
    duplicates: int
    rejected: list[str]
    alerts: list[dict[str, Any]]
    summaries: list[dict[str, Any]]
    tickets: list[dict[str, Any]]


def run_label(parameters: Mapping[str, Any], timezone: str, now: datetime) -> str:
    """`2026-12-03 21:05 (2 webhook events)` or `2026-12-03 21:05 (scheduled check)`."""
    given = parameters.get("inbox_ids")
    checked = local_minute(now, timezone)
    if isinstance(given, list):
        return f"{checked} ({len(given)} webhook event{'' if len(given) == 1 else 's'})"
    return f"{checked} (scheduled check)"


# --------------------------------------------------------------------------- parameters


def resolve_routes(channels_by_severity: dict[str, Any] | None) -> dict[str, list[Route]]:
    """Routes of `alert` and `summary` messages: the mapping's, else `[routes]`, else the outbox.

    Raises:
        InputError: an unknown severity or a malformed route.
    """
    given = channels_by_severity or {}
    if not isinstance(given, dict):
        raise InputError("channels_by_severity must map alert and summary to channel lists")
    unknown = sorted(set(given) - set(SEVERITIES))
    if unknown:
        raise InputError(
            f"channels_by_severity: unknown severity {', '.join(map(repr, unknown))} "
            f"(use {', '.join(SEVERITIES)})"
        )
    return {
        severity: routes_for(
            ENTRY, severity, given.get(severity), name=f"channels_by_severity[{severity!r}]"
        )
        for severity in SEVERITIES
    }


def _check_numbers(
    window_minutes: int, threshold: int, hours: float
) -> tuple[timedelta, timedelta]:
    if window_minutes < 1 or 1440 % window_minutes:
        raise InputError(
            f"window_minutes must divide a day (1, 5, 10, 15, 30, 60…), got {window_minutes}"
        )
    if threshold < 1:
        raise InputError(f"repeat_threshold must be 1 or more, got {threshold}")
    if not hours > 0:
        raise InputError(f"repeat_hours must be more than 0, got {hours}")
    return timedelta(minutes=window_minutes), timedelta(hours=hours)


def _moment(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise InputError("now must carry a UTC offset (e.g. 2026-11-24T09:00:00+09:00)")
    return now.astimezone(UTC)


def _ticket_mapping(name: str, locale: str) -> TicketMapping:
    mapping = choose_mapping(load_mappings(ProjectConfig.load(), locale=locale), name, "events")
    if mapping.event_types and TICKET_EVENT_TYPE not in mapping.event_types:
        raise InputError(f"mapping {name!r} does not take event type {TICKET_EVENT_TYPE!r}")
    return mapping


# --------------------------------------------------------------------------- tasks


@task(name="normalise-payments", cache_policy=NO_CACHE)
def normalise_entries(
    entries: list[InboxEntry], *, default_currency: str
) -> tuple[list[PaymentRecord], dict[str, str]]:
    """Each entry's payment record, and for each unreadable entry one line saying why.

    Returns:
        The records, and inbox id -> the problem (naming the entry and the field, never a value).
    """
    records: list[PaymentRecord] = []
    errors: dict[str, str] = {}
    secret = customer_pseudonym_secret(datetime.now(UTC))
    for entry in entries:
        try:
            records.append(
                payment_record(
                    entry.event,
                    source=entry.source,
                    inbox_id=entry.id,
                    default_currency=default_currency,
                    pseudonym_secret=secret,
                )
            )
        except PaymentEventError as exc:
            errors[entry.id] = mask_text(f"inbox entry {entry.id} ({entry.type[:60]}): {exc}")
    return records, errors


# --------------------------------------------------------------------------- the flow


@flow(
    name=AUTOMATION,
    flow_run_name=flow_run_namer(AUTOMATION, run_label),
    log_prints=False,
    **AUTOMATION_FLOW,
)
def payment_failures(
    inbox_ids: list[str] | None = None,
    jira_block: str | None = None,
    mapping: str = DEFAULT_MAPPING,
    window_minutes: int = 5,
    repeat_threshold: int = 3,
    repeat_hours: float = 24,
    channels_by_severity: dict[str, list[str | list[str]]] | None = None,
    timezone: str | None = None,
    now: datetime | None = None,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Record payment events; alert once per window with failures, open one ticket per customer
    failing repeatedly per day (through ticket-creation), and send each day's failure rates once.

    A webhook run (`inbox_ids`) records its events and opens the tickets they make due; a
    scheduled run (no `inbox_ids`) alerts the closed windows, sends the ended days' summaries
    and opens any ticket a failed run left due.

    Order of effects, and why a crash can neither lose nor duplicate one:

    1. Load and validate everything: parameters, routes, channel blocks, the ticket mapping.
       Bad parameters stop the run here, before anything is read or written.
    2. Webhook run: read the inbox entries and normalise each event. An unreadable one is named
       in one line and its entry marked `failed`; nothing of it is recorded, the others go on.
       The readable ones are recorded in `payment_events` keyed by (source, event id), so a
       redelivered event, or the same run again, records nothing new.
    3. Tickets: from the recorded events, the (customer, day) pairs whose failures reached the
       threshold within the span. Those whose Jira issue the ledger records as done are
       skipped; the others go to ticket-creation as one event each, whose id is the dedup key
       `payment-failures:<customer key>:<day>` and whose time is the failure that reached the
       threshold. ticket-creation claims the issue's ledger key, creates it once (a label search
       settles an ambiguous create) and records it: handing the same event over again (a retry,
       a fourth failure, a crash after recording) finds it done.
    4. Scheduled run: every closed window since the alerts' watermark with failures gets one
       alert keyed `payment-failures:alert:<window start>` (the delivery layer adds the channel);
       then the watermark moves to the end of the last closed window, or to the first window
       whose alert did not go out. A crash before the watermark moves re-plans the same windows,
       whose keys are done (nothing re-sent). A failure recorded within `SETTLE` of its window's
       end, or after it, belongs to the next window, so a window never changes once closed.
    5. Scheduled run: each ended day after the summaries' watermark (yesterday the first time)
       gets one summary keyed `payment-failures:summary:<day>`, then its watermark moves; the
       same crash argument holds.
    6. Artifacts: the run summary, the alerted windows, the day's rates.

    Args:
        inbox_ids: webhook inbox entries to record (what the gateway passes); none: a
            scheduled run.
        jira_block: the Jira credentials block for repeated customers' tickets (a dry run may
            go without; a run that has a ticket due without one fails naming it).
        mapping: the `[ticket_creation.mappings.<name>]` drafting the tickets.
        window_minutes: the alert window, aligned to the clock (must divide a day).
        repeat_threshold: failures of one customer within `repeat_hours` that open a ticket.
        repeat_hours: the span of `repeat_threshold`.
        channels_by_severity: channels for `alert` and `summary` messages (a channel name or a
            list tried in order, per route); default `[routes.payment-failures]`, else outbox.
        timezone: IANA timezone of days and times shown; default `MOLTBOT_TIMEZONE`.
        now: the moment the run acts as of (default: the current time); which windows are
            closed and which days have ended depend on it.
        dry_run: read, plan and preview, but record, send and open nothing.

    Returns:
        The `PaymentFailuresResult` as JSON.
    """
    label_current_run(AUTOMATION, dry_run=dry_run)
    logger = get_run_logger()
    settings = get_settings()
    locale = settings.locale
    timezone = checked_timezone(timezone or settings.timezone)
    window, span = _check_numbers(window_minutes, repeat_threshold, repeat_hours)
    moment = _moment(now)
    routes = resolve_routes(channels_by_severity)
    links = [link for severity in SEVERITIES for route in routes[severity] for link in route.links]
    destinations = channel_destinations(links) if links else {}
    ticket_mapping = _ticket_mapping(mapping, locale)

    rejected: list[str] = []
    stored: list[PaymentRecord] = []
    read = 0
    if inbox_ids is not None:
        entries = read_inbox_entries(inbox_ids)
        read = len(entries)
        # Quoted: Prefect would otherwise walk every entry (and every record below) looking for
        # futures to resolve, which costs more than the work itself on a batch of 1,000.
        records, errors = normalise_entries(quote(entries), default_currency=settings.currency)
        rejected = list(errors.values())
        for line in rejected:
            logger.error("%s", line)
        if dry_run:
            stored = [replace(r, recorded_at=moment) for r in records]
        else:
            if errors:
                reject_inbox_entries(errors)
            stored = record_payments(quote(records), moment)
    new = [r for r in stored if r.recorded_at == moment]
    if inbox_ids is not None:
        logger.info(
            "%d payment event(s): %d new, %d seen before, %d unreadable",
            read,
            len(new),
            len(stored) - len(new),
            len(rejected),
        )

    due = _due_tickets(
        stored if inbox_ids is not None else None,
        threshold=repeat_threshold,
        span=span,
        timezone=timezone,
        now=moment,
        project=ticket_mapping.project,
        unsaved=stored if dry_run else [],
    )
    tickets, ticket_failures = _open_tickets(
        due,
        jira_block=jira_block,
        mapping=mapping,
        span=span,
        timezone=timezone,
        locale=locale,
        dry_run=dry_run,
    )

    deliveries: list[dict[str, Any]] = []
    batches: list[AlertBatch] = []
    summaries: list[DaySummary] = []
    if inbox_ids is None:
        batches, rows = _alert_windows(
            routes["alert"], destinations, window=window, now=moment, timezone=timezone,
            locale=locale, dry_run=dry_run,
        )  # fmt: skip
        deliveries.extend(rows)
        summaries, rows = _day_summaries(
            routes["summary"], destinations, now=moment, timezone=timezone, locale=locale,
            dry_run=dry_run,
        )  # fmt: skip
        deliveries.extend(rows)

    result: dict[str, Any] = {
        "dry_run": dry_run,
        "events_read": read,
        "recorded": len(new),
        "duplicates": len(stored) - len(new),
        "rejected": rejected,
        "alerts": [_batch_result(b, locale) for b in batches],
        "summaries": [_summary_result(s) for s in summaries],
        "tickets": tickets,
        "deliveries": deliveries,
    }
    result["artifacts"] = _publish(result, batches, summaries, timezone, locale, moment, dry_run)
    return finish_run(PaymentFailuresResult(**result), other_failures=[*rejected, *ticket_failures])


# --------------------------------------------------------------------------- tickets


def _due_tickets(
    run_records: list[PaymentRecord] | None,
    *,
    threshold: int,
    span: timedelta,
    timezone: str,
    now: datetime,
    project: str,
    unsaved: list[PaymentRecord],
) -> list[RepeatedCustomer]:
    """The repeated customers whose ticket is not recorded as created yet.

    A webhook run looks at its own events' customers, around its events' times, and keeps the
    pairs one of its events belongs to; a scheduled run looks at the last span, to catch a
    ticket a failed run left unopened.
    """
    if run_records is not None:
        customers = customers_in(run_records)
        if not customers:
            return []
        times = [r.occurred_at for r in run_records if r.customer_key in customers]
        start, end = min(times) - span, max(times) + span
    else:
        customers = None
        start, end = now - 2 * span, now
    records = read_payments(start, end, customer_keys=customers)
    known = {(r.source, r.event_id) for r in records}
    records += [r for r in unsaved if (r.source, r.event_id) not in known]
    repeated = repeated_customers(records, threshold=threshold, span=span, timezone=timezone)
    if run_records is not None:
        ours = {(r.source, r.event_id) for r in run_records}
        repeated = [r for r in repeated if any((f.source, f.event_id) in ours for f in r.failures)]
    else:
        repeated = [r for r in repeated if r.crossed_at >= now - span]
    if not repeated:
        return []
    keys = {r.key: ticket_ledger_key(r.customer_key, r.day, project) for r in repeated}
    done = {
        key for key, state in read_effects(list(keys.values())).items() if state.status == "done"
    }
    return [r for r in repeated if keys[r.key] not in done]


def _open_tickets(
    due: list[RepeatedCustomer],
    *,
    jira_block: str | None,
    mapping: str,
    span: timedelta,
    timezone: str,
    locale: str,
    dry_run: bool,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Hand the due tickets to ticket-creation (one subflow run); each ticket's fate, and one
    line per ticket that was not opened."""
    if not due:
        return [], []
    logger = get_run_logger()
    rows = {
        r.key: {
            "customer": r.customer_label or f"#{r.customer_key[:6]}",
            "day": r.day.isoformat(),
            "failures": len(r.failures),
            "dedup_key": r.key,
            "status": "due",
            "issue": None,
        }
        for r in due
    }
    if jira_block is None and not dry_run:
        lines = [f"ticket {key}: no jira_block given, not opened" for key in rows]
        for row in rows.values():
            row["status"] = "failed"
        return list(rows.values()), lines
    from flows.ticket_creation.flow import ticket_creation

    events = [ticket_event(r, span=span, timezone=timezone, locale=locale) for r in due]
    logger.info("%d repeated customer(s): handing their tickets to ticket-creation", len(due))
    state = ticket_creation(
        events=events,
        jira_block=jira_block,
        mapping=mapping,
        timezone=timezone,
        dry_run=dry_run,
        return_state=True,
    )
    outcome = state.result(raise_on_failure=False)
    if isinstance(outcome, DeliveryFailed):
        outcome = outcome.result
    if not isinstance(outcome, dict):
        problem = mask_text(f"{type(outcome).__name__}: {outcome}")[:300]
        for row in rows.values():
            row["status"] = "failed"
        return list(rows.values()), [f"ticket-creation failed: {problem}"]
    prefix = f"event:{TICKET_EVENT_TYPE}:"
    for draft in outcome.get("drafts", []):
        row = rows.get(draft["dedup_key"].removeprefix(prefix))
        if row is not None:
            row["status"] = "would_create" if dry_run else draft["action"]
            row["issue"] = draft.get("issue_key")
    for kind in ("created", "commented", "failed", "in_progress"):
        for item in outcome.get(kind, []):
            row = rows.get(item["dedup_key"].removeprefix(prefix))
            if row is not None:
                row["status"] = kind
                row["issue"] = item.get("key") or row["issue"]
    lines = [
        f"ticket {key}: {row['status']}"
        for key, row in rows.items()
        if row["status"] in ("failed", "in_progress")
    ]
    return list(rows.values()), lines


# --------------------------------------------------------------------------- alerts, summaries


def _alert_windows(
    routes: Sequence[Route],
    destinations: Mapping[str, Any],
    *,
    window: timedelta,
    now: datetime,
    timezone: str,
    locale: str,
    dry_run: bool,
) -> tuple[list[AlertBatch], list[dict[str, Any]]]:
    """Alert every closed window with failures since the watermark; then move it."""
    mark = read_watermark(AUTOMATION, ALERT_STREAM)
    last_end = datetime.fromisoformat(mark.position["through"]) if mark.position else None
    since = alert_since(now, last_end)
    closed = closed_until(now, window)
    if closed <= since:
        return [], []
    records = read_payments(since, closed, recorded_since=since - SETTLE)
    batches = plan_alert_batches(records, window=window, since=since, now=now)
    deliveries: list[dict[str, Any]] = []
    through = closed
    for batch in batches:
        message = build_alert_message(batch, timezone=timezone, locale=locale)
        rows = deliver(message, routes, destinations, dry_run=dry_run)
        deliveries.extend({"severity": "alert", **row} for row in rows)
        if unsettled(rows) and batch.start < through:
            through = batch.start
    if not dry_run and through > since:
        _advance(ALERT_STREAM, {"through": through.isoformat()}, mark.position)
    return batches, deliveries


def _day_summaries(
    routes: Sequence[Route],
    destinations: Mapping[str, Any],
    *,
    now: datetime,
    timezone: str,
    locale: str,
    dry_run: bool,
) -> tuple[list[DaySummary], list[dict[str, Any]]]:
    """Send each ended day's summary once (a day without payment events has none)."""
    mark = read_watermark(AUTOMATION, SUMMARY_STREAM)
    last = date.fromisoformat(mark.position["day"]) if mark.position else None
    summaries: list[DaySummary] = []
    deliveries: list[dict[str, Any]] = []
    sent_through: date | None = None
    for day in summary_days_due(now, timezone, last):
        start, end = day_bounds(day, timezone)
        summary = summarize_day(read_payments(start, end), day=day, timezone=timezone)
        if summary.attempts:
            summaries.append(summary)
            message = build_summary_message(summary, timezone=timezone, locale=locale)
            rows = deliver(message, routes, destinations, dry_run=dry_run)
            deliveries.extend({"severity": "summary", **row} for row in rows)
            if unsettled(rows):
                break
        sent_through = day
    if not dry_run and sent_through is not None:
        _advance(SUMMARY_STREAM, {"day": sent_through.isoformat()}, mark.position)
    return summaries, deliveries


def _advance(stream: str, position: dict[str, Any], expected: dict[str, Any] | None) -> None:
    try:
        advance_watermark(AUTOMATION, stream, position, expected)
    except WatermarkMoved as moved:
        # Another run moved it meanwhile: its messages have the same keys, nothing is lost.
        get_run_logger().warning("%s", moved)


# --------------------------------------------------------------------------- result, artifacts


def _batch_result(batch: AlertBatch, locale: str) -> dict[str, Any]:
    return {
        "key": batch.key,
        "start": batch.start.isoformat(),
        "end": batch.end.isoformat(),
        "failures": batch.count,
        "amounts": batch.amounts,
        "amounts_text": amounts_text(batch.amounts, locale),
        "reasons": dict(batch.reasons),
        "providers": dict(batch.providers),
        "customers": batch.customers,
        "late": batch.late,
    }


def _summary_result(summary: DaySummary) -> dict[str, Any]:
    def rows(items: Sequence[Any]) -> list[dict[str, Any]]:
        return [
            {"name": b.name, "failures": b.failures, "attempts": b.attempts, "rate": b.rate}
            for b in items
        ]

    return {
        "key": summary.key,
        "day": summary.day.isoformat(),
        "failures": summary.failures,
        "successes": summary.successes,
        "attempts": summary.attempts,
        "rates_known": summary.rates_known,
        "rate": summary.rate,
        "amounts": summary.amounts,
        "customers": summary.customers,
        "by_reason": rows(summary.by_reason),
        "by_provider": rows(summary.by_provider),
    }


def _publish(
    result: dict[str, Any],
    batches: list[AlertBatch],
    summaries: list[DaySummary],
    timezone: str,
    locale: str,
    now: datetime,
    dry_run: bool,
) -> list[dict[str, Any]]:
    # A dry run's preview stays on its own run page, never the latest version of a keyed one.
    keys = dict.fromkeys(ARTIFACT_KEYS) if dry_run else ARTIFACT_KEYS
    settings = get_settings()
    when = local_minute(now, timezone)
    published = [
        {
            "key": keys["summary"],
            "id": publish_markdown(
                keys["summary"],
                run_summary(result, locale=locale, timezone=timezone, now=now),
                description=artifact_description(AUTOMATION, when, dry_run=dry_run),
            ),
        }
    ]
    if batches:
        zone_rows = [_batch_row(b, timezone, locale) for b in batches]
        published.append(
            {
                "key": keys["batches"],
                "id": publish_table(
                    keys["batches"],
                    quote(
                        readable_rows(
                            zone_rows, BATCH_COLUMNS, locale=locale, currency=settings.currency
                        )
                    ),
                    description=artifact_description(
                        AUTOMATION, when, f"{len(batches)} alerted window(s)", dry_run=dry_run
                    ),
                ),
            }
        )
    if summaries:
        day_rows = [row for s in summaries for row in _day_rows(s, locale)]
        published.append(
            {
                "key": keys["day"],
                "id": publish_table(
                    keys["day"],
                    quote(
                        readable_rows(
                            day_rows, DAY_COLUMNS, locale=locale, currency=settings.currency
                        )
                    ),
                    description=artifact_description(
                        AUTOMATION,
                        ", ".join(s.day.isoformat() for s in summaries),
                        "failure rates by reason and provider",
                        dry_run=dry_run,
                    ),
                ),
            }
        )
    return published


def _batch_row(batch: AlertBatch, timezone: str, locale: str) -> dict[str, Any]:
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(timezone)
    start, end = batch.start.astimezone(zone), batch.end.astimezone(zone)
    return {
        "window": f"{start:%Y-%m-%d %H:%M}–{end:%H:%M}",
        "failures": batch.count,
        "amounts": amounts_text(batch.amounts, locale),
        "reasons": ", ".join(f"{name} × {n}" for name, n in batch.reasons),
        "providers": ", ".join(f"{name} × {n}" for name, n in batch.providers),
        "customers": batch.customers,
        "late": batch.late,
    }


def _day_rows(summary: DaySummary, locale: str) -> list[dict[str, Any]]:
    rows = []
    for by, items in (("reason", summary.by_reason), ("provider", summary.by_provider)):
        for item in items:
            rows.append(
                {
                    "day": summary.day.isoformat(),
                    "by": by,
                    "name": item.name,
                    "failures": item.failures,
                    "attempts": item.attempts,
                    "rate": format_rate(item.rate, locale),
                }
            )
    return rows

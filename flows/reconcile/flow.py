"""The reconcile flow: load what should have produced effects and the effects recorded, list every
omission with its reason, alert once on new ones, publish the omission rate per automation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger
from prefect.utilities.annotations import quote

from flows.reconcile import ENTRY
from flows.reconcile.checks import (
    AUTOMATION,
    FORM_DIGEST,
    INVENTORY_ALERT,
    PAYMENT_FAILURES,
    AlertedItem,
    EffectRecord,
    ExpectedTicket,
    Inputs,
    Omission,
    Reconciliation,
    RoutedEntry,
    RunRecord,
    StreamMark,
    new_omissions,
)
from flows.reconcile.checks import (
    reconcile as reconcile_all,
)
from flows.reconcile.render import (
    OMISSION_COLUMNS,
    build_alert_message,
    omission_rows,
    run_summary,
)
from flows.shared.runs import AUTOMATION_FLOW
from moltbot.config.settings import checked_timezone, get_settings
from moltbot.effects.report import RunReport, finish_run
from moltbot.errors import InputError
from moltbot.runlabels import (
    artifact_description,
    flow_run_namer,
    label_current_run,
    local_minute,
)
from tasks.artifacts import publish_markdown, publish_table, readable_rows
from tasks.effects import channel_destinations, deliver, routes_for, unsettled
from tasks.reconcile import (
    load_effects_by_prefix,
    load_recorded,
    load_routed_entries,
    load_stored_entries,
    read_flow_runs,
    read_known_omissions,
    save_omission_states,
)

ARTIFACT_KEYS = {"summary": "reconcile", "omissions": "reconcile-omissions"}
# The run result stays readable with thousands of omissions: the first ones and the total (the
# table artifact lists every one).
RESULT_MAX_OMISSIONS = 100
# payment-failures' own defaults: a customer failing this many times within this many hours
# gets a ticket (one per customer and local day).
PAYMENT_REPEAT_THRESHOLD = 3
PAYMENT_REPEAT_HOURS = 24.0


class ReconcileResult(RunReport):
    """A reconcile run: the period, every omission (first 100 and the total), how many are new,
    and the omission rate per automation."""

    since: str
    omissions: list[dict[str, Any]]
    omissions_total: int
    new_omissions: int
    omission_rate: dict[str, dict[str, float | int]]
    states_saved: int


def check_parameters(
    *, since_hours: float, pending_grace_minutes: float, automations: list[str] | None
) -> None:
    """Refuse parameter values the checks cannot work with.

    Raises:
        InputError: a period that is not positive, a negative grace, an unknown automation.
    """
    from moltbot.registry import automation_names

    if not since_hours > 0:
        raise InputError(f"since_hours must be more than 0, got {since_hours}")
    if pending_grace_minutes < 0:
        raise InputError(f"pending_grace_minutes must be 0 or more, got {pending_grace_minutes}")
    known = automation_names()
    unknown = [name for name in automations or () if name not in known]
    if unknown:
        raise InputError(
            f"automations: unknown automation {', '.join(map(repr, unknown))} "
            f"(choose from {', '.join(known)})"
        )


# --------------------------------------------------------------------------- tasks


@task(name="expected-payment-tickets", cache_policy=NO_CACHE)
def expected_payment_tickets(
    *, since: datetime, now: datetime, grace: timedelta, timezone: str
) -> list[ExpectedTicket]:
    """The customer days whose failures reached payment-failures' threshold in the period (and
    longer ago than `grace`, so their ticket had time to be opened)."""
    from flows.payment_failures.plan import repeated_customers
    from flows.payment_failures.tickets import ticket_ledger_key
    from tasks.payments import read_payments

    span = timedelta(hours=PAYMENT_REPEAT_HOURS)
    records = read_payments(since - span, now)
    repeated = repeated_customers(
        records, threshold=PAYMENT_REPEAT_THRESHOLD, span=span, timezone=timezone
    )
    return [
        ExpectedTicket(
            customer=customer.customer_key,
            day=customer.day.isoformat(),
            # Up to the Jira project, which the ticket mapping decides.
            key=ticket_ledger_key(customer.customer_key, customer.day, ""),
            failures=len(customer.failures),
        )
        for customer in repeated
        if since <= customer.crossed_at <= now - grace
    ]


@task(name="check-omissions", cache_policy=NO_CACHE)
def check_omissions(
    inputs: Inputs,
    *,
    now: datetime,
    since: datetime,
    grace: timedelta,
    automations: list[str] | None,
) -> Reconciliation:
    """Every check over the loaded inputs (`flows.reconcile.checks.reconcile`)."""
    return reconcile_all(inputs, now=now, since=since, grace=grace, automations=automations)


def load_inputs(*, since: datetime, now: datetime, grace: timedelta, timezone: str) -> Inputs:
    """Load everything the checks compare, typed (a handful of queries and API requests)."""
    recorded = load_recorded(since, watermarked=FORM_DIGEST, alerting=INVENTORY_ALERT)
    routed = [RoutedEntry(**row) for row in load_routed_entries(since)]
    run_ids = [entry.flow_run_id for entry in routed if entry.flow_run_id]
    runs = {row["id"]: RunRecord(**row) for row in read_flow_runs(run_ids)} if run_ids else {}
    stored: frozenset[str] = frozenset()
    if payment_entries := [e.entry_id for e in routed if e.automation == PAYMENT_FAILURES]:
        stored = load_stored_entries(payment_entries)
    tickets = expected_payment_tickets(since=since, now=now, grace=grace, timezone=timezone)
    ticket_effects = load_effects_by_prefix([t.key for t in tickets]) if tickets else []
    return Inputs(
        effects=[EffectRecord(**row) for row in recorded["effects"]],
        form_effects=[EffectRecord(**row) for row in recorded["form_effects"]],
        marks=[StreamMark(**row) for row in recorded["marks"]],
        alerted=[AlertedItem(**row) for row in recorded["alerted"]],
        routed=routed,
        runs=runs,
        tickets=tickets,
        ticket_effects=[EffectRecord(**row) for row in ticket_effects],
        stored_entries=stored,
    )


# --------------------------------------------------------------------------- the flow


@flow(
    name=AUTOMATION,
    flow_run_name=flow_run_namer(AUTOMATION),
    log_prints=False,
    **AUTOMATION_FLOW,
)
def reconcile(
    since_hours: float = 48,
    automations: list[str] | None = None,
    pending_grace_minutes: float = 60,
    channels: list[str | list[str]] | None = None,
    timezone: str | None = None,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Compare what should have produced an effect with the effects recorded; alert on new
    omissions once.

    Sources: form rows up to form-digest's watermark (each covered by a digest whose effects
    are done), webhook inbox entries routed to a deployment (dispatched to a run that started
    and recorded its effects), inventory-alert item states that record an alert (its message
    recorded), payment-failures' customers at the ticket threshold (their ticket recorded), and
    every other effect recorded in the period. Dead, failed and in-doubt effects, and pending
    ones past the grace, are omissions too; done ones are not.

    Order of effects, and why a crash can neither lose nor repeat an alert:

    1. Check the parameters and load the channel blocks; bad input stops here, nothing read.
    2. Load (ledger, watermarks, item states, inbox, the inbox runs from the Prefect API,
       payment events) and check: plain functions, no side effect.
    3. Read the omissions alerted before (reconcile's own item states); the new ones are those
       not among them. None new: nothing is sent.
    4. Deliver one alert about the new ones, keyed by a digest of their ids: a re-run that
       finds the same new omissions rebuilds the same key and finds it done.
    5. Only then record the new omissions as alerted (and the known ones no longer found as
       resolved). A crash between 4 and 5 re-runs into step 4's `already_done`; saving first
       would lose the alert on such a crash. A route that failed keeps them new, so the next
       run retries the same alert.
    6. Publish the artifacts: every omission with its reason, and the rate per automation.

    Args:
        since_hours: the period looked at, in hours back from now.
        automations: only these automations' omissions and rates (default: all).
        pending_grace_minutes: how long a pending effect, a pending inbox entry, a run not
            started, a held form window or a fresh payment ticket is given before it counts.
        channels: routes of the alert: each a channel block name (or `outbox`), or a list of
            them tried in order; default `[routes.reconcile]` in moltbot.toml, else the outbox.
        timezone: IANA timezone of the times shown and of payment days; default
            `MOLTBOT_TIMEZONE`.
        dry_run: check and preview the alert, but send nothing and save no state.

    Returns:
        The `ReconcileResult` as JSON: the first 100 omissions and their total, how many are
        new, and `omission_rate` per automation (expected, omissions, rate).
    """
    label_current_run(AUTOMATION, dry_run=dry_run)
    logger = get_run_logger()
    settings = get_settings()
    timezone = checked_timezone(timezone or settings.timezone)
    locale = settings.locale
    check_parameters(
        since_hours=since_hours,
        pending_grace_minutes=pending_grace_minutes,
        automations=automations,
    )
    routes = routes_for(ENTRY, "omission", channels)
    destinations = channel_destinations(link for route in routes for link in route.links)
    now = datetime.now(UTC)
    since = now - timedelta(hours=since_hours)
    grace = timedelta(minutes=pending_grace_minutes)

    inputs = load_inputs(since=since, now=now, grace=grace, timezone=timezone)
    found = check_omissions(
        quote(inputs), now=now, since=since, grace=grace, automations=automations
    )
    known = read_known_omissions(AUTOMATION)
    new = new_omissions(found.omissions, known)
    logger.info(
        "%d omissions (%d new) in the last %s hours; %s",
        len(found.omissions),
        len(new),
        since_hours,
        ", ".join(f"{name} {rate.omissions}/{rate.expected}" for name, rate in found.rates.items())
        or "nothing expected",
    )

    deliveries: list[dict[str, Any]] = []
    if new:
        message = build_alert_message(
            new,
            found.rates,
            total=len(found.omissions),
            since_hours=since_hours,
            now=now,
            timezone=timezone,
            locale=locale,
        )
        deliveries = deliver(message, routes, destinations, dry_run=dry_run)

    saved = 0
    if not dry_run:
        opened = [] if unsettled(deliveries) else [omission.id for omission in new]
        current = {omission.id for omission in found.omissions}
        # With a filter, the other automations' omissions were not looked for: not resolved.
        resolved = sorted(known - current) if automations is None else []
        saved = save_omission_states(AUTOMATION, opened, resolved, now)

    result: dict[str, Any] = {
        "since": since.isoformat(),
        "omissions": [o.as_dict(locale) for o in found.omissions[:RESULT_MAX_OMISSIONS]],
        "omissions_total": len(found.omissions),
        "new_omissions": len(new),
        "omission_rate": {name: rate.as_dict() for name, rate in found.rates.items()},
        "deliveries": deliveries,
        "states_saved": saved,
        "dry_run": dry_run,
    }
    result["artifacts"] = _publish(
        found, new, result, since_hours, timezone, locale, now=now, dry_run=dry_run
    )
    return finish_run(ReconcileResult(**result))


def _publish(
    found: Reconciliation,
    new: list[Omission],
    result: dict[str, Any],
    since_hours: float,
    timezone: str,
    locale: str,
    *,
    now: datetime,
    dry_run: bool,
) -> list[dict[str, Any]]:
    # A dry run's preview stays on its own run page, not as the latest version of the keyed
    # artifacts people follow.
    keys = dict.fromkeys(ARTIFACT_KEYS) if dry_run else ARTIFACT_KEYS
    settings = get_settings()
    checked = local_minute(now, timezone)
    summary = run_summary(
        locale,
        new=new,
        rates=found.rates,
        total=len(found.omissions),
        since_hours=since_hours,
        deliveries=result["deliveries"],
        dry_run=dry_run,
    )
    rows = readable_rows(
        omission_rows(found.omissions, {omission.id for omission in new}, locale),
        OMISSION_COLUMNS,
        locale=locale,
        currency=settings.currency,
        timezone=timezone,
    )
    counted = f"{len(found.omissions):,} omissions, {len(new):,} new"
    return [
        {
            "key": keys["summary"],
            "id": publish_markdown(
                keys["summary"],
                summary,
                description=artifact_description(AUTOMATION, checked, counted, dry_run=dry_run),
            ),
        },
        {
            "key": keys["omissions"],
            # quote: Prefect would otherwise walk every cell looking for task results.
            "id": publish_table(
                keys["omissions"],
                quote(rows),
                description=artifact_description(
                    AUTOMATION, checked, f"every omission ({len(rows):,})", dry_run=dry_run
                ),
            ),
        },
    ]

"""The inventory-alert flow: load stock, compute states, alert on transitions by severity, save."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger
from prefect.utilities.annotations import quote

from blocks.sheets import GoogleSheetsCredentials
from flows.inventory_alert import ENTRY, shadow
from flows.inventory_alert.render import AUTOMATION, TEMPLATES, build_alert_message, item_records
from flows.inventory_alert.states import (
    SEVERITIES,
    Plan,
    average_daily_units,
    compute_states,
    fill_daily_demand,
    normalize_inventory,
    plan_alerts,
    state_counts,
)
from flows.shared.runs import AUTOMATION_FLOW
from moltbot.blockdocs import load_block
from moltbot.config.settings import checked_timezone, get_settings
from moltbot.effects import Route
from moltbot.effects.report import RunReport, finish_run
from moltbot.errors import InputError
from moltbot.messages import Message
from moltbot.runlabels import (
    artifact_description,
    flow_run_namer,
    label_current_run,
    local_minute,
)
from moltbot.state.item_state import ALERT_KEY
from moltbot.templating import render_template
from tasks.artifacts import (
    MarkdownArtifact,
    TableArtifact,
    TableColumn,
    publish_artifacts,
    readable_rows,
)
from tasks.effects import (
    deliver_by_severity,
    route_destinations,
    routes_by_severity,
    routes_for,
)
from tasks.item_state import read_item_states, save_item_states
from tasks.shadow import record_run_input
from tasks.sheets import load_worksheet
from tasks.sources import load_table, refuse_inline_password, source_label

ARTIFACT_KEYS = {"summary": "inventory-alert", "changes": "inventory-alert-changes"}
_STATES = {"ok": ("ok", "정상"), "low": ("low", "부족"), "out": ("out of stock", "품절")}
CHANGE_COLUMNS = (
    TableColumn(
        "severity",
        "Alert",
        "알림",
        values={
            "out": ("out of stock", "품절"),
            "low": ("low stock", "재고 부족"),
            "recovered": ("recovered", "재고 회복"),
            "reminder": ("still out", "품절 지속"),
        },
    ),
    TableColumn("sku", "SKU", "SKU"),
    TableColumn("name", "Item", "품목"),
    TableColumn("location", "Location", "위치"),
    TableColumn("from", "Was", "이전 상태", values=_STATES),
    TableColumn("to", "Now", "현재 상태", values=_STATES),
    TableColumn("on_hand", "On hand", "재고", kind="number"),
    TableColumn("reorder_point", "Reorder point", "재주문점", kind="number"),
    TableColumn("days_of_cover", "Days of cover", "재고 일수", kind="number", decimals=1),
    TableColumn("stockout_date", "Stock-out date", "품절 예상일", kind="date"),
    TableColumn("at_risk", "At risk", "위험", kind="flag"),
    TableColumn("lasted_hours", "Lasted (hours)", "지속 시간(시간)", kind="number", decimals=1),
)


class InventoryAlertResult(RunReport):
    """An inventory-alert run: stock counts, the changes alerted (first 100 and totals), the
    unusable rows, and how many item states were saved."""

    counts: dict[str, int]
    transitions: list[dict[str, Any]]
    transitions_total: int
    reminders: list[dict[str, Any]]
    reminders_total: int
    bad_rows: list[dict[str, Any]]
    bad_rows_total: int
    states_saved: int


# The run result and the artifact table stay readable (and the run page loadable) when a first
# run over a large catalogue turns up a hundred thousand items: they show the first ones and
# the total; the CSV attachments in e-mail and the outbox hold every item.
RESULT_MAX_ITEMS = 100
ARTIFACT_MAX_ROWS = 2000


# --------------------------------------------------------------------------- parameters


def resolve_routes(channels_by_severity: dict[str, Any] | None) -> dict[str, list[Route]]:
    """Routes per severity (`out`, `low`, `recovered`, `reminder`).

    Without a mapping, `[routes.inventory-alert]` in moltbot.toml decides, else the outbox. In
    a mapping, each severity lists routes (a channel name, or a list of names tried in order);
    a missing `out` takes the `low` routes and a missing `low` the `out` ones (one of them is
    required); `recovered` defaults to the `low` routes and `reminder` to the `out` ones. An
    empty list silences a severity.

    Raises:
        InputError: an unknown key, a value that is not a list of routes, a channel starting
            two routes, or neither `out` nor `low`.
    """
    if channels_by_severity is None:
        return {severity: routes_for(ENTRY, severity, None) for severity in SEVERITIES}
    given = routes_by_severity(ENTRY, channels_by_severity, SEVERITIES)
    if "out" not in given and "low" not in given:
        raise InputError("channels_by_severity needs channels for 'out' or 'low'")
    out = given.get("out", given.get("low", []))
    low = given.get("low", out)
    return {
        "out": out,
        "low": low,
        "recovered": given.get("recovered", low),
        "reminder": given.get("reminder", out),
    }


def _check_numbers(cooldown_hours: float, top_n: int) -> None:
    if not cooldown_hours > 0:
        raise InputError(f"cooldown_hours must be more than 0, got {cooldown_hours}")
    if top_n < 0:
        raise InputError(f"top_n must be 0 or more, got {top_n}")


# --------------------------------------------------------------------------- loading


def inventory_label(source: str | None, worksheet: str | None) -> str:
    """How messages and errors name the stock source."""
    return source_label(source) if source else f"worksheet {worksheet or '?'}"


def load_inventory(
    source: str | None,
    query: str | None,
    *,
    sheets_block: str | None,
    spreadsheet_id: str | None,
    worksheet: str | None,
) -> pd.DataFrame:
    """Read the whole stock table from its one source: a file, a database or a sheet.

    Raises:
        InputError: no source, two sources, or an unreadable one.
    """
    sheet_given = any((sheets_block, spreadsheet_id, worksheet))
    if source and sheet_given:
        raise InputError("give either source or a sheet (sheets_block, spreadsheet_id), not both")
    if sheet_given:
        if not (sheets_block and spreadsheet_id and worksheet):
            raise InputError("a sheet source needs sheets_block, spreadsheet_id and worksheet")
        credentials = load_block(GoogleSheetsCredentials, sheets_block)
        return load_worksheet(credentials, spreadsheet_id, worksheet, block_name=sheets_block)
    if not source:
        raise InputError(
            "no stock source: give source (CSV, Parquet or a database URL with query) or a sheet"
        )
    return load_table(source, query)


# --------------------------------------------------------------------------- tasks


@dataclass(frozen=True)
class Evaluation:
    """This run's view of the stock: item states, counts, bad rows, demand coverage."""

    states: pd.DataFrame
    counts: dict[str, int]
    bad_rows: pd.DataFrame
    demand_matched: int | None


@task(name="evaluate-stock", cache_policy=NO_CACHE)
def evaluate_stock(
    raw_stock: pd.DataFrame,
    raw_sales: pd.DataFrame | None,
    *,
    stock_label: str,
    sales_label: str | None,
    columns: dict[str, str] | None,
    sales_columns: dict[str, str] | None,
    timezone: str,
    now: datetime,
) -> Evaluation:
    """Validate the stock (and sales), fill demand from sales, compute every item's state."""
    inventory = normalize_inventory(raw_stock, source_label=stock_label, columns=columns)
    items = inventory.items
    today = now.astimezone(ZoneInfo(timezone)).date()
    matched = None
    if raw_sales is not None:
        from flows.shared.orders import normalize_orders

        orders = normalize_orders(
            raw_sales, source_label=sales_label or "sales", timezone=timezone, columns=sales_columns
        )
        demand = average_daily_units(orders, end_date=today - timedelta(days=1))
        items, matched = fill_daily_demand(items, demand)
    states = compute_states(items, today=today)
    return Evaluation(
        states=states,
        counts=state_counts(states),
        bad_rows=inventory.bad_rows,
        demand_matched=matched,
    )


@task(name="plan-alerts", cache_policy=NO_CACHE)
def plan_run(
    evaluation: Evaluation,
    previous: pd.DataFrame,
    *,
    now: datetime,
    cooldown_hours: float,
    timezone: str,
    locale: str,
    top_n: int,
) -> tuple[Plan, dict[str, Message]]:
    """Compare with the stored states and render one message per severity with news."""
    plan = plan_alerts(
        evaluation.states, previous, now=now, cooldown=timedelta(hours=cooldown_hours)
    )
    bad_rows = item_records(evaluation.bad_rows.head(RESULT_MAX_ITEMS), ("row", "sku", "problem"))
    messages = {
        severity: build_alert_message(
            severity,
            items,
            counts=evaluation.counts,
            bad_rows=bad_rows,
            bad_rows_total=len(evaluation.bad_rows),
            now=now,
            timezone=timezone,
            locale=locale,
            top_n=top_n,
        )
        for severity, items in plan.alerts.items()
    }
    return follow_ups(plan, messages)


# The messages that follow up an earlier alert, and whether each ends what it reported.
FOLLOW_UPS: dict[str, bool] = {"reminder": False, "recovered": True}


def follow_ups(plan: Plan, messages: dict[str, Message]) -> tuple[Plan, dict[str, Message]]:
    """Tie an item's alerts into one thread: out and low alerts are remembered in their items'
    states, and reminders and recoveries follow them.

    An out or low alert's rows to save get its message's key as `alert_key`. A reminder
    follows the out alert of its first item (most urgent first) that has one; a recovery
    follows the out or low alert of its first item that has one, and `resolves` it. A channel
    with threads posts the follow-up as a reply to that alert where it went there (a Slack
    bot also marks a resolved alert so); other channels send it as usual. Items stored before
    alert keys were kept have none, and their follow-ups stand alone.

    Returns:
        The plan with the alert keys in its writes, and the messages with their follow-ups.
    """
    tied = dict(messages)
    for severity, resolves in FOLLOW_UPS.items():
        message = messages.get(severity)
        if message is None:
            continue
        # Stored keys are only ever out or low alerts' (see `Plan.writes`), and an item still
        # out was reported by an out alert: a reminder's items carry out alerts' keys.
        keys = plan.alerts[severity][ALERT_KEY]
        original = next((key for key in keys if isinstance(key, str) and key), None)
        if original is not None:
            tied[severity] = message.model_copy(
                update={"follow_up_of": original, "resolves": resolves}
            )
    new_keys = {name: messages[name].key for name in ("out", "low") if name in messages}
    reported = plan.writes["severity"].map(new_keys).astype(object)
    kept = plan.writes[ALERT_KEY].astype(object)
    alert_keys = reported.where(reported.notna(), kept)
    writes = plan.writes.assign(**{ALERT_KEY: alert_keys.where(alert_keys.notna(), None)})
    return replace(plan, writes=writes), tied


# --------------------------------------------------------------------------- the flow


@flow(
    name=AUTOMATION,
    flow_run_name=flow_run_namer(AUTOMATION),
    log_prints=False,
    **AUTOMATION_FLOW,
)
def inventory_alert(
    source: str | None = None,
    columns: dict[str, str] | None = None,
    sales_source: str | None = None,
    channels_by_severity: dict[str, list[str]] | None = None,
    cooldown_hours: float = 24,
    top_n: int = 20,
    query: str | None = None,
    sales_query: str | None = None,
    sales_columns: dict[str, str] | None = None,
    sheets_block: str | None = None,
    spreadsheet_id: str | None = None,
    worksheet: str | None = None,
    timezone: str | None = None,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Alert on stock-state changes only: one message per severity, routed by severity.

    Order of effects, and why a crash can neither lose nor duplicate an alert:

    1. Load and validate everything (stock, sales, channel blocks). Bad input stops the run here,
       before anything is read from or written to the ledger.
    2. Read the stored states and plan: transitions (ok->low, ok/low->out, low/out->ok) and due
       reminders. The plan depends only on the data, the stored states and the reminder period.
    3. Render one message per severity. Its idempotency key is derived from the automation, the
       severity and a digest of its logical content: the sorted (sku, from, to, previous since)
       tuples of its transitions, or (sku, out since, cooldown period) of its reminders. The
       delivery layer adds the channel name, so the ledger key is automation + logical item +
       channel. A reminder or recovery follows the alert that reported its first item
       (`follow_ups`): a Slack bot posts it in that alert's thread, and a recovery marks the
       alert resolved.
    4. Deliver through the effects layer: each message once per route of its severity (the
       first channel of the route that takes it; a route whose channels all fail is dead,
       announced to ops and replayed with `moltbot outbox replay`).
    5. Only then save the states: the rows behind each severity whose deliveries all succeeded
       (sent now, or already done), plus the silent changes. A severity with a failed channel keeps
       its items' old states, so the next run finds the same transitions again, rebuilds the same
       key, skips the channels that already have it and retries the one that failed.

    A crash between 4 and 5 leaves the old states in place: the re-run recomputes the same
    transitions, hence the same keys, finds them done in the ledger (already_done, none re-sent) and
    then saves. Saving before delivering would instead lose the alert on a crash in between. The one
    case that can repeat an item is a crash followed by a re-run on *changed* data: the severity's
    set of transitions differs, so its message (with the earlier items in it) is new. That is the
    deliberate trade: at most a repeated line after a crash, never a missed stock-out.

    Args:
        source: stock as a CSV or Parquet path, or a SQLAlchemy URL (with `query`), or
            `secret:NAME`. Columns `sku, name, on_hand, reorder_point`, optionally
            `safety_stock, lead_time_days, daily_demand, location`.
        columns: mapping from the source's column names to those.
        sales_source: orders with the daily report's columns; missing `daily_demand` becomes
            the trailing 28-day average units per day of the product (matched on sku or name).
        channels_by_severity: channel names for `out`, `low`, `recovered` (default: the `low`
            channels) and `reminder` (default: the `out` channels); default all to `outbox`.
        cooldown_hours: an item still out is reminded once per this many hours.
        top_n: items listed per message; the attached CSV has all of them.
        query: SQL to run when `source` is a database URL.
        sales_query: SQL to run when `sales_source` is a database URL.
        sales_columns: mapping from the sales source's column names to the canonical ones.
        sheets_block: a Google Sheets credentials block to read the stock from instead.
        spreadsheet_id: the spreadsheet, with `sheets_block`.
        worksheet: the worksheet's (tab's) title, with `sheets_block`.
        timezone: IANA timezone of dates; default `MOLTBOT_TIMEZONE`.
        dry_run: compute and preview, but deliver nothing and save no state.

    Returns:
        The `InventoryAlertResult` as JSON; long lists are cut to their first 100 entries, the
        `_total` says how many there were.
    """
    label_current_run(AUTOMATION, dry_run=dry_run)
    logger = get_run_logger()
    settings = get_settings()
    timezone = checked_timezone(timezone or settings.timezone)
    _check_numbers(cooldown_hours, top_n)
    routes = resolve_routes(channels_by_severity)
    for given in (source, sales_source):
        if given:
            refuse_inline_password(given)
    now = datetime.now(UTC)

    links = [link for severity in SEVERITIES for route in routes[severity] for link in route.links]
    destinations = route_destinations(links) if links else {}
    raw_stock = load_inventory(
        source,
        query,
        sheets_block=sheets_block,
        spreadsheet_id=spreadsheet_id,
        worksheet=worksheet,
    )
    raw_sales = load_table(sales_source, sales_query) if sales_source else None
    evaluation = evaluate_stock(
        raw_stock,
        raw_sales,
        stock_label=inventory_label(source, worksheet),
        sales_label=source_label(sales_source) if sales_source else None,
        columns=columns,
        sales_columns=sales_columns,
        timezone=timezone,
        now=now,
    )
    if evaluation.demand_matched is not None:
        logger.info(
            "Demand from sales: %s of %s items matched a sold product",
            evaluation.demand_matched,
            len(evaluation.states),
        )

    previous = read_item_states(AUTOMATION)
    plan, messages = plan_run(
        evaluation,
        previous,
        now=now,
        cooldown_hours=cooldown_hours,
        timezone=timezone,
        locale=settings.locale,
        top_n=top_n,
    )
    counts = evaluation.counts
    logger.info(
        "Stock: %s out, %s low, %s at risk, %s ok; news: %s",
        counts["out"],
        counts["low"],
        counts["at_risk"],
        counts["ok"],
        ", ".join(f"{len(items)} {name}" for name, items in plan.alerts.items()) or "none",
    )

    if not dry_run:
        # Before delivering: the snapshot says what this run meant to send; the ledger says
        # what went (`moltbot shadow` compares a replay with both). A check with no news is
        # kept unless its input is the one kept last (`RecordedInputs.record`).
        record_run_input(
            AUTOMATION,
            shadow.KIND,
            shadow.snapshot(
                evaluation.states,
                evaluation.bad_rows,
                previous,
                now=now,
                cooldown_hours=cooldown_hours,
                timezone=timezone,
                locale=settings.locale,
                top_n=top_n,
            ),
            shadow.effects(messages),
        )
    deliveries, delivered = deliver_by_severity(messages, routes, destinations, dry_run=dry_run)

    saved = 0
    if not dry_run:
        committed = plan.writes["severity"].isna() | plan.writes["severity"].isin(delivered)
        writes = plan.writes[committed.to_numpy()]
        if not writes.empty:
            saved = save_item_states(AUTOMATION, writes, now)

    result = _result(plan, evaluation, deliveries, saved)
    result["artifacts"] = _publish(
        plan, evaluation, result, messages, timezone, now=now, dry_run=dry_run
    )
    return finish_run(InventoryAlertResult(**result, dry_run=dry_run))


def _result(
    plan: Plan, evaluation: Evaluation, deliveries: list[dict[str, Any]], saved: int
) -> dict[str, Any]:
    transitions = pd.concat(
        [plan.alerts[name] for name in ("out", "low", "recovered") if name in plan.alerts]
        or [pd.DataFrame(columns=["sku", "from", "to"])]
    )
    reminders = plan.alerts.get("reminder")
    reminder_rows = (
        reminders.head(RESULT_MAX_ITEMS).assign(
            out_since=reminders["previous_since"].map(lambda value: value.isoformat())
        )
        if reminders is not None
        else pd.DataFrame(columns=["sku", "out_since", "period"])
    )
    return {
        "counts": evaluation.counts,
        "transitions": item_records(transitions.head(RESULT_MAX_ITEMS), ("sku", "from", "to")),
        "transitions_total": len(transitions),
        "reminders": item_records(reminder_rows, ("sku", "out_since", "period")),
        "reminders_total": 0 if reminders is None else len(reminders),
        "bad_rows": item_records(
            evaluation.bad_rows.head(RESULT_MAX_ITEMS), ("row", "sku", "problem")
        ),
        "bad_rows_total": len(evaluation.bad_rows),
        "deliveries": deliveries,
        "states_saved": saved,
    }


def _publish(
    plan: Plan,
    evaluation: Evaluation,
    result: dict[str, Any],
    messages: dict[str, Message],
    timezone: str,
    *,
    now: datetime,
    dry_run: bool,
) -> list[dict[str, Any]]:
    # A dry run's preview stays on its own run page: it must not become the latest version of
    # the keyed artifacts analysts follow.
    keys = dict.fromkeys(ARTIFACT_KEYS) if dry_run else ARTIFACT_KEYS
    settings = get_settings()
    changed = [
        items.assign(severity=severity) for severity, items in plan.alerts.items() if len(items)
    ]
    rows: list[dict[str, Any]] = []
    total = sum(len(items) for items in changed)
    if changed:
        table = pd.concat(changed).head(ARTIFACT_MAX_ROWS)
        rows = item_records(
            table,
            ("severity", "sku", "name", "location", "from", "to", "on_hand", "reorder_point",
             "days_of_cover", "stockout_date", "at_risk", "lasted_hours"),
        )  # fmt: skip
    shown = f"first {len(rows):,} of {total:,}" if total > len(rows) else f"{total:,}"
    checked = local_minute(now, timezone)
    counts = evaluation.counts
    stock = f"{counts['out']:,} out, {counts['low']:,} low, {counts['at_risk']:,} at risk"
    summary = render_template(
        TEMPLATES,
        settings.locale,
        "run_summary.md.j2",
        counts=evaluation.counts,
        alerts={name: len(items) for name, items in plan.alerts.items()},
        titles={name: message.title for name, message in messages.items()},
        deliveries=result["deliveries"],
        bad_rows=result["bad_rows"],
        bad_rows_total=result["bad_rows_total"],
        states_saved=result["states_saved"],
        timezone=timezone,
        dry_run=dry_run,
    )
    published = [
        MarkdownArtifact(
            keys["summary"],
            summary,
            artifact_description(AUTOMATION, checked, stock, dry_run=dry_run),
        ),
        TableArtifact(
            keys["changes"],
            readable_rows(
                rows,
                CHANGE_COLUMNS,
                locale=settings.locale,
                currency=settings.currency,
                timezone=timezone,
            ),
            artifact_description(AUTOMATION, checked, f"changed items ({shown})", dry_run=dry_run),
        ),
    ]
    # quote: Prefect would otherwise walk every cell looking for task results to wait on.
    ids = publish_artifacts(quote(published))
    return [
        {"key": artifact.key, "id": artifact_id}
        for artifact, artifact_id in zip(published, ids, strict=True)
    ]

"""The error-spike flow: count error lines per window, alert when a spike starts and ends."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger
from prefect.utilities.annotations import quote

from flows.error_spike import ENTRY
from flows.error_spike.render import AUTOMATION, TEMPLATES, build_message, local_time
from flows.error_spike.spikes import (
    SEVERITIES,
    SPIKING,
    Evaluation,
    SpikeRule,
    StoredState,
    Transition,
    plan_transition,
    top_signatures,
)
from flows.shared.runs import AUTOMATION_FLOW
from moltbot.config.settings import checked_timezone, get_settings
from moltbot.effects import Route
from moltbot.effects.report import RunReport, finish_run
from moltbot.errors import InputError
from moltbot.logscan import ScanStats
from moltbot.messages import Message
from moltbot.runlabels import artifact_description, flow_run_namer, label_current_run, local_minute
from moltbot.state.log_offsets import SignatureCount
from moltbot.templating import render_template
from tasks.artifacts import TableColumn, publish_markdown, publish_table, readable_rows
from tasks.effects import channel_destinations, deliver, routes_for, unsettled
from tasks.item_state import read_item_states, save_item_states
from tasks.logs import (
    ErrorHistory,
    SourceCount,
    count_log_errors,
    parse_sources,
    read_error_history,
)

ARTIFACT_KEYS = {
    "summary": "error-spike",
    "windows": "error-spike-windows",
    "signatures": "error-spike-signatures",
}
_STATES = {"spiking": ("spiking", "급증 중"), "normal": ("normal", "정상")}
WINDOW_COLUMNS = (
    TableColumn("source", "Source", "소스"),
    TableColumn("window", "Window", "구간"),
    TableColumn("count", "Errors", "오류 수", kind="number"),
    TableColumn("baseline", "Baseline", "기준값", kind="number", decimals=1),
    TableColumn("threshold", "Spike at", "급증 기준", kind="number", decimals=1),
    TableColumn("state", "State", "상태", values=_STATES),
)
SIGNATURE_COLUMNS = (
    TableColumn("source", "Source", "소스"),
    TableColumn("signature", "Signature", "오류 유형"),
    TableColumn("errors", "Errors", "건수", kind="number"),
    TableColumn("sample", "Sample (masked)", "예시 (가림 처리)"),
)


class ErrorSpikeResult(RunReport):
    """An error-spike run: each source's recent windows, the spikes started or ended, what
    was read, and how many states were saved."""

    sources: list[dict[str, Any]]
    transitions: list[dict[str, Any]]
    read: dict[str, int]
    unmatched: list[dict[str, Any]]
    states_saved: int


# --------------------------------------------------------------------------- tasks


@dataclass(frozen=True)
class SourcePlan:
    """One source judged: its windows, its change (if any), its message and top signatures."""

    source: str
    evaluation: Evaluation
    transition: Transition | None
    message: Message | None
    signatures: list[dict[str, Any]]


def _stored_states(previous: pd.DataFrame) -> dict[str, StoredState]:
    return {
        row.item_key: StoredState(row.state, int(row.since.timestamp()))
        for row in previous.itertuples(index=False)
    }


@task(name="judge-windows", cache_policy=NO_CACHE)
def judge_source(
    name: str,
    history: ErrorHistory,
    signatures: list[SignatureCount],
    previous: pd.DataFrame,
    *,
    rule: SpikeRule,
    now: datetime,
    top_n: int,
    locale: str,
) -> SourcePlan:
    """Judge a source's last and current windows against their baselines, compare with its
    stored state, and render a message when a spike starts or ends."""
    step = rule.window_seconds
    evaluation, transition = plan_transition(
        name,
        history.counts,
        _stored_states(previous).get(name),
        now=now,
        observed_since=history.observed_since,
        rule=rule,
    )
    rows = [(s.signature, s.errors, s.sample) for s in signatures]
    top, more = top_signatures(rows, sum(s.errors for s in signatures), top_n)
    message = None
    if transition is not None:
        message = build_message(
            transition,
            signatures=top if transition.severity == "spike" else [],
            more_signatures=more if transition.severity == "spike" else 0,
            window_seconds=step,
            timezone=rule.timezone,
            locale=locale,
        )
    return SourcePlan(name, evaluation, transition, message, [asdict(item) for item in top])


# --------------------------------------------------------------------------- the flow


@flow(
    name=AUTOMATION,
    flow_run_name=flow_run_namer(AUTOMATION),
    log_prints=False,
    **AUTOMATION_FLOW,
)
def error_spike(
    sources: dict[str, dict[str, Any]] | None = None,
    window_minutes: int = 5,
    factor: float = 3,
    min_count: int = 10,
    baseline_days: int = 7,
    top_n: int = 5,
    channels: list[str] | None = None,
    timezone: str | None = None,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Alert once when a source's errors spike, stay quiet while they do, and say when it ends.

    Order of effects, and why a crash can neither lose nor duplicate a count or an alert:

    1. Check the parameters and load the channels. Bad input stops the run here, before any
       file is read or anything is written.
    2. Count each source's new error lines per window: files from their stored offsets (per
       device and inode, so rotation and truncation are followed), a table by a `GROUP BY`
       in the database. The new offsets and the counts they produced are committed in one
       transaction: a crash before it leaves both as they were (the lines are counted by the
       next run, once), a crash after it leaves both stored. Counts are observations, so they
       are stored whatever happens to the alerts.
    3. Judge each source's last complete window and its running one against their baselines
       (`flows.error_spike.spikes.SpikeRule`) and compare with its stored state: a spike
       starts (state normal, a window spiking), ends (state spiking, no window spiking), or
       nothing changed (no message: still spiking is quiet).
    4. Deliver each change through the effects layer. Its idempotency key is the automation,
       the source, `spike` or `cleared` and the spike's first window, which is derived from
       the stored counts alone (the unbroken run of spiking windows), so a retry in a later
       window rebuilds the same key; the delivery layer adds the channel.
    5. Only then save the source's state (spiking since its first window, or normal again),
       for the changes whose deliveries all succeeded. A crash between 4 and 5 leaves the old
       state: the next run finds the same change, the same key, and the ledger says done.

    Args:
        sources: the log sources by name, log files or a table. Files: `paths` (a glob
            or a list of globs), `format` (`json` or `regex`), `levels` (default ERROR,
            CRITICAL, FATAL), `level_field`/`timestamp_field`/`message_field` (JSON),
            `pattern` (regex with named groups `level`, `timestamp`, `message`),
            `timestamp_format`, `timezone`.
            A table: `url` (`secret:NAME` for one with a password), `table`,
            `timestamp_column`, `level_column`, `message_column`, `levels`.
        window_minutes: the counting window; it divides a day (1, 5, 15, 60…).
        factor: a window is a spike at `factor` times its baseline or more.
        min_count: and at this many errors or more.
        baseline_days: how many previous days' same window make the baseline.
        top_n: error signatures listed per spike.
        channels: channel names for both spikes and clears (default: `[routes.error-spike]`
            in moltbot.toml, else the outbox).
        timezone: IANA timezone of the times shown and of "today"; default `MOLTBOT_TIMEZONE`.
        dry_run: count and judge, preview the messages, but send nothing and store no
            offsets, counts or state.

    Returns:
        The `ErrorSpikeResult` as JSON.
    """
    label_current_run(AUTOMATION, dry_run=dry_run)
    logger = get_run_logger()
    settings = get_settings()
    timezone = checked_timezone(timezone or settings.timezone)
    if sources is None:
        raise InputError("sources is required: name each log source with its paths or url")
    rule = SpikeRule(
        window_seconds=window_minutes * 60,
        factor=factor,
        min_count=min_count,
        baseline_days=baseline_days,
        timezone=timezone,
    )
    if top_n < 0:
        raise InputError("top_n must be 0 or more")
    log_sources = parse_sources(sources, timezone=timezone)
    routes: dict[str, list[Route]] = {
        severity: routes_for(ENTRY, severity, channels) for severity in SEVERITIES
    }
    links = [link for severity in SEVERITIES for route in routes[severity] for link in route.links]
    destinations = channel_destinations(links) if links else {}
    now = datetime.now(UTC)

    counts = [
        count_log_errors(
            AUTOMATION,
            quote(source),
            window_minutes=window_minutes,
            now=now,
            keep_days=baseline_days + 1,
            commit=not dry_run,
        )
        for source in log_sources
    ]
    for count in counts:
        if count.matched_nothing:
            logger.warning(
                "Source %s: %s path pattern(s) matched no file",
                count.name,
                len(count.matched_nothing),
            )

    previous = read_item_states(AUTOMATION)
    step = rule.window_seconds
    current = int(now.timestamp()) // step * step
    plans = []
    for count in counts:
        history, signatures = read_error_history(
            AUTOMATION,
            quote(count),
            window_minutes=window_minutes,
            since=now - timedelta(days=baseline_days + 1, seconds=step),
            signature_windows=[current - step, current],
        )
        plans.append(
            judge_source(
                count.name,
                quote(history),
                quote(signatures),
                previous,
                rule=rule,
                now=now,
                top_n=top_n,
                locale=settings.locale,
            )
        )

    deliveries: list[dict[str, Any]] = []
    writes: list[dict[str, Any]] = []
    for plan in plans:
        if plan.transition is None or plan.message is None:
            continue
        severity = plan.transition.severity
        rows = [
            {"severity": severity, "source": plan.source, **row}
            for row in deliver(plan.message, routes[severity], destinations, dry_run=dry_run)
        ]
        deliveries.extend(rows)
        if not unsettled(rows):
            writes.append({**plan.transition.state_row(), "last_alerted_at": now})

    saved = 0
    if writes and not dry_run:
        saved = save_item_states(AUTOMATION, pd.DataFrame(writes), now)

    result = _result(plans, counts, deliveries, saved)
    result["artifacts"] = _publish(plans, result, deliveries, rule, now=now, dry_run=dry_run)
    return finish_run(ErrorSpikeResult(**result, dry_run=dry_run))


def _result(
    plans: list[SourcePlan],
    counts: list[SourceCount],
    deliveries: list[dict[str, Any]],
    saved: int,
) -> dict[str, Any]:
    stats = ScanStats()
    for count in counts:
        stats.add(count.stats)
    sources = []
    for plan in plans:
        evaluation = plan.evaluation
        sources.append(
            {
                "source": plan.source,
                "previous_count": evaluation.previous.count,
                "current_count": evaluation.current.count,
                "baseline": evaluation.previous.baseline,
                "threshold": evaluation.previous.threshold,
                "spiking": evaluation.spiking,
            }
        )
    transitions = [
        {
            "source": plan.source,
            "severity": plan.transition.severity,
            "key": plan.transition.key,
            "spike_start": datetime.fromtimestamp(plan.transition.spike_start, UTC).isoformat(),
            "count": plan.transition.check.count,
            "threshold": plan.transition.check.threshold,
            "lasted_minutes": (
                None
                if plan.transition.lasted_seconds is None
                else plan.transition.lasted_seconds // 60
            ),
            "signatures": plan.signatures if plan.transition.severity == "spike" else [],
        }
        for plan in plans
        if plan.transition is not None
    ]
    return {
        "sources": sources,
        "transitions": transitions,
        "read": asdict(stats),
        "unmatched": [
            {"source": count.name, "patterns": len(count.matched_nothing)}
            for count in counts
            if count.matched_nothing
        ],
        "deliveries": [
            {key: value for key, value in row.items() if key != "source"} for row in deliveries
        ],
        "states_saved": saved,
    }


def _publish(
    plans: list[SourcePlan],
    result: dict[str, Any],
    deliveries: list[dict[str, Any]],
    rule: SpikeRule,
    *,
    now: datetime,
    dry_run: bool,
) -> list[dict[str, Any]]:
    # A dry run's preview stays on its own run page, never the latest version analysts follow.
    keys = dict.fromkeys(ARTIFACT_KEYS) if dry_run else ARTIFACT_KEYS
    settings = get_settings()
    timezone = rule.timezone
    step = rule.window_seconds
    summary = render_template(
        TEMPLATES,
        settings.locale,
        "run_summary.md.j2",
        sources=result["sources"],
        messages=[
            {
                "title": plan.message.title,
                "source": plan.source,
                "severity": plan.transition.severity,
            }
            for plan in plans
            if plan.message is not None and plan.transition is not None
        ],
        deliveries=deliveries,
        stats=result["read"],
        unmatched=result["unmatched"],
        states_saved=result["states_saved"],
        dry_run=dry_run,
    )
    window_rows = [
        {
            "source": plan.source,
            "window": f"{local_time(check.start, timezone)}–"
            f"{local_time(check.start + step, timezone, with_date=False)}",
            "count": check.count,
            "baseline": check.baseline,
            "threshold": check.threshold,
            "state": SPIKING if check.spiking else "normal",
        }
        for plan in plans
        for check in (plan.evaluation.previous, plan.evaluation.current)
    ]
    signature_rows = [{"source": plan.source, **item} for plan in plans for item in plan.signatures]
    checked = local_minute(now, timezone)
    spiking = sum(1 for row in result["sources"] if row["spiking"])
    options = {"locale": settings.locale, "currency": settings.currency, "timezone": timezone}
    return [
        {
            "key": keys["summary"],
            "id": publish_markdown(
                keys["summary"],
                summary,
                description=artifact_description(
                    AUTOMATION,
                    checked,
                    f"{spiking} of {len(plans)} sources spiking",
                    dry_run=dry_run,
                ),
            ),
        },
        {
            "key": keys["windows"],
            # quote: Prefect would otherwise walk every cell looking for task results.
            "id": publish_table(
                keys["windows"],
                quote(readable_rows(window_rows, WINDOW_COLUMNS, **options)),
                description=artifact_description(
                    AUTOMATION, checked, "last and current windows", dry_run=dry_run
                ),
            ),
        },
        {
            "key": keys["signatures"],
            "id": publish_table(
                keys["signatures"],
                quote(readable_rows(signature_rows, SIGNATURE_COLUMNS, **options)),
                description=artifact_description(
                    AUTOMATION, checked, "top error signatures", dry_run=dry_run
                ),
            ),
        },
    ]

"""Per-automation metrics: read from Prefect's runs, the ledger and the audit trail; computed."""

from __future__ import annotations

import json
import logging
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import httpx
import numpy as np
from sqlalchemy import select

from moltbot.errors import InputError
from moltbot.state.audit import AuditAction, AuditTrail
from moltbot.state.ledger import EffectStatus, Ledger, effects_table

logger = logging.getLogger("moltbot.metrics")

# Prefect state types of a run that ended; a run still going has no outcome to count yet.
FINISHED = frozenset({"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})
# The effects layer's log line of an outcome taken from the ledger (`tasks/effects.py`):
# `message daily-report…: already_done via team-slack`. Nothing else records such a skip.
ALREADY_DONE_LOG = re.compile(r": already_done(\s|$)")
RECONCILE = "reconcile"
# A row of reconcile's summary table (`flows/reconcile/templates/*/run_summary.md.j2`), the
# same in both locales: | name | expected | omissions | rate |.
_RATE_ROW = re.compile(
    r"^\| (?P<name>[a-z0-9-]+) \| (?P<expected>[\d,]+) \| (?P<omitted>[\d,]+) \|"
)
_PAGE = 200
EFFECT_STATUSES = ("done", "already_done", "dead", "in_doubt", "failed", "pending", "queued")


# --------------------------------------------------------------------------- rows in


@dataclass(frozen=True)
class RunRow:
    """One flow run of an automation (dry runs are left out when gathering).

    Attributes:
        automation: its automation (the flow's name).
        id: the flow run id.
        state: Prefect's state type (`COMPLETED`, `FAILED`, `RUNNING`…).
        triggered_at: when it was due: the webhook receipt for a gateway run, else the run's
            expected start (the scheduled time for a schedule's run).
        seconds: its run time, for a finished run.
        run_count: how many times Prefect ran it (more than 1: it was retried).
    """

    automation: str
    id: str
    state: str
    triggered_at: datetime
    seconds: float | None
    run_count: int = 1


@dataclass(frozen=True)
class EffectRow:
    """One ledger effect last changed in the period.

    Attributes:
        automation: whose effect.
        flow_run_id: the run that claimed it last.
        status: its ledger status.
        attempts: attempts so far (more than 1: retried).
        updated_at: when it last changed (a done effect: when it was delivered).
        fallback: it was delivered by a later link of its route than the first.
    """

    automation: str
    flow_run_id: str | None
    status: str
    attempts: int
    updated_at: datetime
    fallback: bool = False


@dataclass
class MetricsInput:
    """Everything the figures are computed from (see `gather`).

    Attributes:
        since: the period's start.
        until: its end.
        runs: the automations' flow runs started in the period.
        effects: the ledger effects changed in the period.
        already_done: the run id of each effect a run found done already (one entry each).
        audit: (automation, action) of each audit entry of the period.
        omissions: reconcile's last (expected, omissions) per automation in the period.
        hours_saved: hours a completed run saves, per automation (`[metrics.hours_saved]`).
        notes: what could not be read, said to the reader.
    """

    since: datetime
    until: datetime
    runs: list[RunRow] = field(default_factory=list)
    effects: list[EffectRow] = field(default_factory=list)
    already_done: list[str] = field(default_factory=list)
    audit: list[tuple[str, str]] = field(default_factory=list)
    omissions: dict[str, tuple[int, int]] = field(default_factory=dict)
    hours_saved: Mapping[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- figures out


@dataclass(frozen=True)
class AutomationMetrics:
    """One automation's figures over the period (None: nothing to compute it from)."""

    automation: str
    runs: int
    finished: int
    succeeded: int
    success_rate: float | None
    p50_seconds: float | None
    p95_seconds: float | None
    run_retries: int
    effect_retries: int
    effects: dict[str, int]
    omissions_expected: int | None
    omissions: int | None
    omission_rate: float | None
    trigger_to_delivery_seconds: float | None
    fallbacks: int
    acknowledgements: int
    escalations: int
    hours_saved: float | None

    def as_dict(self) -> dict[str, Any]:
        """The figures as JSON types."""
        return asdict(self)


@dataclass(frozen=True)
class MetricsReport:
    """The figures of every automation with activity in the period, in registry order."""

    since: datetime
    until: datetime
    automations: list[AutomationMetrics]
    notes: list[str]

    def totals(self) -> dict[str, Any]:
        """The period at a glance: runs, success rate, effects done, hours saved."""
        finished = sum(m.finished for m in self.automations)
        succeeded = sum(m.succeeded for m in self.automations)
        hours = [m.hours_saved for m in self.automations if m.hours_saved is not None]
        return {
            "runs": sum(m.runs for m in self.automations),
            "success_rate": round(succeeded / finished, 4) if finished else None,
            "done": sum(m.effects["done"] for m in self.automations),
            "dead": sum(m.effects["dead"] for m in self.automations),
            "in_doubt": sum(m.effects["in_doubt"] for m in self.automations),
            "hours_saved": round(sum(hours), 2) if hours else None,
        }

    def as_dict(self) -> dict[str, Any]:
        """The report as one JSON document."""
        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "totals": self.totals(),
            "automations": [m.as_dict() for m in self.automations],
            "notes": list(self.notes),
        }


def percentile(values: Sequence[float], pct: float) -> float | None:
    """The `pct` percentile of `values`, interpolated between the nearest ranks (None: empty)."""
    if not values:
        return None
    return round(float(np.percentile(values, pct)), 3)


def took_fallback(route: str | None, via: str | None) -> bool:
    """True when `via` is a later link of `route` (JSON list) than its first one."""
    if not route or not via:
        return False
    links = json.loads(route)
    return bool(links) and via != links[0]


def compute(data: MetricsInput, order: Sequence[str]) -> MetricsReport:
    """The figures per automation: those of `order` (registry order) with any activity.

    No I/O: every input is in `data`.
    """
    runs: dict[str, list[RunRow]] = defaultdict(list)
    for run in data.runs:
        runs[run.automation].append(run)
    run_of = {run.id: run for run in data.runs}
    effects: dict[str, list[EffectRow]] = defaultdict(list)
    for effect in data.effects:
        effects[effect.automation].append(effect)
    skipped = Counter(run_of[run_id].automation for run_id in data.already_done if run_id in run_of)
    actions = Counter(data.audit)
    active = set(runs) | set(effects) | set(skipped) | {name for name, _ in actions}
    rows = [
        _one(
            name,
            runs[name],
            effects[name],
            already_done=skipped[name],
            acks=actions[(name, AuditAction.ACKNOWLEDGE)],
            escalations=actions[(name, AuditAction.ESCALATE)],
            omission=data.omissions.get(name),
            per_run_hours=data.hours_saved.get(name),
            run_of=run_of,
        )
        for name in order
        if name in active
    ]
    return MetricsReport(data.since, data.until, rows, list(data.notes))


def _one(
    name: str,
    runs: list[RunRow],
    effects: list[EffectRow],
    *,
    already_done: int,
    acks: int,
    escalations: int,
    omission: tuple[int, int] | None,
    per_run_hours: float | None,
    run_of: Mapping[str, RunRow],
) -> AutomationMetrics:
    finished = [run for run in runs if run.state in FINISHED]
    succeeded = sum(run.state == "COMPLETED" for run in finished)
    seconds = [run.seconds for run in finished if run.seconds is not None]
    statuses = Counter(effect.status for effect in effects)
    counts = {status: statuses.get(status, 0) for status in EFFECT_STATUSES}
    counts["already_done"] = already_done
    # Trigger to delivery: per run, from when it was due to its first effect done.
    first_done: dict[str, datetime] = {}
    for effect in effects:
        if effect.status == EffectStatus.DONE and effect.flow_run_id in run_of:
            run_id = effect.flow_run_id
            first_done[run_id] = min(first_done.get(run_id, effect.updated_at), effect.updated_at)
    delays = [
        (delivered - run_of[run_id].triggered_at).total_seconds()
        for run_id, delivered in first_done.items()
    ]
    expected, omitted = omission if omission is not None else (None, None)
    return AutomationMetrics(
        automation=name,
        runs=len(runs),
        finished=len(finished),
        succeeded=succeeded,
        success_rate=round(succeeded / len(finished), 4) if finished else None,
        p50_seconds=percentile(seconds, 50),
        p95_seconds=percentile(seconds, 95),
        run_retries=sum(max(run.run_count - 1, 0) for run in runs),
        effect_retries=sum(max(effect.attempts - 1, 0) for effect in effects),
        effects=counts,
        omissions_expected=expected,
        omissions=omitted,
        omission_rate=round(omitted / expected, 4) if expected else None,
        trigger_to_delivery_seconds=(round(statistics.median(delays), 3) if delays else None),
        fallbacks=sum(effect.fallback for effect in effects if effect.status == EffectStatus.DONE),
        acknowledgements=acks,
        escalations=escalations,
        hours_saved=(round(succeeded * per_run_hours, 2) if per_run_hours is not None else None),
    )


# --------------------------------------------------------------------------- configuration


def hours_saved_config(known: Sequence[str]) -> dict[str, float]:
    """`[metrics.hours_saved]` of moltbot.toml: hours a completed run saves, per automation.

    Raises:
        InputError: an unknown automation, or a value that is not a number of 0 or more.
    """
    from moltbot.config.project import ProjectConfig

    config = ProjectConfig.load()
    table = config.table("metrics", "hours_saved") or {}
    hours: dict[str, float] = {}
    for name, value in table.items():
        where = config.where("metrics", "hours_saved", name)
        if name not in known:
            raise InputError(
                f"{where}: unknown automation {name!r} (choose from: {', '.join(known)})"
            )
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise InputError(f"{where}: hours saved per run must be a number of 0 or more")
        hours[name] = float(value)
    return hours


# --------------------------------------------------------------------------- gathering


def gather(
    ledger: Ledger,
    *,
    since: datetime,
    until: datetime,
    automations: Sequence[str],
    hours_saved: Mapping[str, float] | None = None,
    read_prefect: bool = True,
) -> MetricsInput:
    """Read the period's rows: flow runs, effects, skips, audit entries, omission rates.

    The ledger and the audit trail are always read. The Prefect API (runs, the effects
    layer's `already_done` log lines, reconcile's last summary artifact) may be unreachable:
    then the figures come from the ledger alone and a note says so.
    """
    names = set(automations)
    data = MetricsInput(since=since, until=until, hours_saved=dict(hours_saved or {}))
    data.effects = _ledger_effects(ledger, since, until, names)
    data.audit = [
        (row.automation, row.action)
        for row in AuditTrail(ledger).rows(since=since, until=until)
        if row.automation in names and row.action in (AuditAction.ACKNOWLEDGE, AuditAction.ESCALATE)
    ]
    try:
        if not read_prefect:
            raise ConnectionError("no Prefect server")
        _gather_prefect(data, ledger, names)
    except (httpx.HTTPError, OSError) as exc:
        # A down API must not hide what the ledger knows: say what is missing instead.
        logger.warning("Prefect API unreachable: %s", type(exc).__name__)
        data.runs, data.already_done, data.omissions = [], [], {}
        data.notes.append("prefect_unreachable")
    return data


def _ledger_effects(
    ledger: Ledger, since: datetime, until: datetime, names: set[str]
) -> list[EffectRow]:
    table = effects_table
    statement = select(
        table.c.automation,
        table.c.flow_run_id,
        table.c.status,
        table.c.attempts,
        table.c.updated_at,
        table.c.route,
        table.c.via,
    ).where(
        table.c.updated_at >= since,
        table.c.updated_at < until,
        table.c.automation.in_(sorted(names)),
    )
    with ledger.engine.connect() as conn:
        return [
            EffectRow(
                automation=row.automation,
                flow_run_id=row.flow_run_id,
                status=row.status,
                attempts=row.attempts,
                updated_at=row.updated_at,
                fallback=took_fallback(row.route, row.via),
            )
            for row in conn.execute(statement)
        ]


def _gather_prefect(data: MetricsInput, ledger: Ledger, names: set[str]) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterKey,
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterStartTime,
        LogFilter,
        LogFilterTextSearch,
        LogFilterTimestamp,
    )
    from prefect.client.schemas.sorting import ArtifactSort, FlowRunSort

    from moltbot.runlabels import DRY_RUN_TAG
    from moltbot.state.inbox import Inbox

    with get_client(sync_client=True) as client:
        flow_filter = FlowFilter(name=FlowFilterName(any_=sorted(names)))
        flow_names = {flow.id: flow.name for flow in client.read_flows(flow_filter=flow_filter)}
        started = FlowRunFilter(
            start_time=FlowRunFilterStartTime(after_=data.since, before_=data.until)
        )
        runs = _pages(
            lambda offset: client.read_flow_runs(
                flow_filter=flow_filter,
                flow_run_filter=started,
                sort=FlowRunSort.START_TIME_ASC,
                limit=_PAGE,
                offset=offset,
            )
        )
        runs = [run for run in runs if DRY_RUN_TAG not in run.tags and run.flow_id in flow_names]
        received = {
            entry.flow_run_id: entry.received_at
            for entry in Inbox(ledger).dispatched_to([str(run.id) for run in runs])
        }
        data.runs = [
            RunRow(
                automation=flow_names[run.flow_id],
                id=str(run.id),
                state=run.state_type.value if run.state_type else "UNKNOWN",
                triggered_at=received.get(str(run.id))
                or run.expected_start_time
                or run.start_time
                or run.created,
                seconds=(
                    run.total_run_time.total_seconds()
                    if run.state_type and run.state_type.value in FINISHED
                    else None
                ),
                run_count=run.run_count,
            )
            for run in runs
        ]
        logs = _pages(
            lambda offset: client.read_logs(
                log_filter=LogFilter(
                    text=LogFilterTextSearch(query="already_done"),
                    timestamp=LogFilterTimestamp(after_=data.since, before_=data.until),
                ),
                limit=_PAGE,
                offset=offset,
            )
        )
        data.already_done = [
            str(log.flow_run_id)
            for log in logs
            if log.flow_run_id is not None and ALREADY_DONE_LOG.search(log.message)
        ]
        latest = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[RECONCILE])),
            sort=ArtifactSort.CREATED_DESC,
            limit=1,
        )
        if latest and latest[0].created and data.since <= latest[0].created < data.until:
            data.omissions = {
                name: counts
                for name, counts in omission_counts(str(latest[0].data or "")).items()
                if name in names
            }


def _pages(read: Any) -> list[Any]:
    """Every item of a paginated Prefect read (`read(offset)` returns up to `_PAGE`)."""
    found: list[Any] = []
    while True:
        page = read(len(found))
        found.extend(page)
        if len(page) < _PAGE:
            return found


def omission_counts(summary: str) -> dict[str, tuple[int, int]]:
    """(expected, omissions) per automation from reconcile's summary artifact (markdown)."""
    counts = {}
    for line in summary.splitlines():
        match = _RATE_ROW.match(line.strip())
        if match:
            counts[match["name"]] = (
                int(match["expected"].replace(",", "")),
                int(match["omitted"].replace(",", "")),
            )
    return counts


# --------------------------------------------------------------------------- display

_UNITS = {"en": ("s", "min", "h"), "ko": ("초", "분", "시간")}
_NONE = "–"


def format_seconds(seconds: float | None, locale: str = "en") -> str:
    """`42.0` -> `42 s`, `150` -> `2.5 min`, `5400` -> `1.5 h` (`초`, `분`, `시간` under ko)."""
    if seconds is None:
        return _NONE
    second, minute, hour = _UNITS.get(locale, _UNITS["en"])
    if abs(seconds) < 60:
        return f"{seconds:.1f} {second}".replace(".0 ", " ")
    if abs(seconds) < 3600:
        return f"{seconds / 60:.1f} {minute}".replace(".0 ", " ")
    return f"{seconds / 3600:.1f} {hour}".replace(".0 ", " ")


def format_share(rate: float | None) -> str:
    """`0.9512` -> `95.1%`; None -> `–`."""
    return _NONE if rate is None else f"{rate * 100:.1f}%"


def display_cells(metrics: AutomationMetrics, locale: str = "en") -> list[str]:
    """One automation's figures as the cells of the CLI table and the page's table, in the
    order of `cli_text("metrics_columns")`."""
    effects = metrics.effects
    hours = _NONE if metrics.hours_saved is None else f"{metrics.hours_saved:,.1f}"
    # The rate only: the counts behind it are in --json (omissions, omissions_expected).
    omission = format_share(metrics.omission_rate)
    if metrics.omission_rate is None and metrics.omissions_expected == 0:
        omission = "0/0"
    return [
        metrics.automation,
        f"{metrics.runs:,}",
        format_share(metrics.success_rate),
        format_seconds(metrics.p50_seconds, locale),
        format_seconds(metrics.p95_seconds, locale),
        f"{metrics.run_retries + metrics.effect_retries:,}",
        f"{effects['done']:,}",
        f"{effects['already_done']:,}",
        f"{effects['dead']:,}",
        f"{effects['in_doubt']:,}",
        omission,
        format_seconds(metrics.trigger_to_delivery_seconds, locale),
        f"{metrics.fallbacks:,}",
        f"{metrics.acknowledgements:,}",
        f"{metrics.escalations:,}",
        hours,
    ]

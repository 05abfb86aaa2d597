"""The service-health flow: check every endpoint, alert on state changes by severity, save."""

from __future__ import annotations

from dataclasses import asdict, replace
from datetime import UTC, datetime
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger
from prefect.utilities.annotations import quote

from blocks.http import HttpHeaders
from flows.service_health import ENTRY
from flows.service_health.plan import SEVERITIES, HealthPlan, Severity, plan_health
from flows.service_health.render import (
    AUTOMATION,
    TEMPLATES,
    build_alert_message,
    transition_record,
)
from flows.shared.runs import AUTOMATION_FLOW
from moltbot.blockdocs import load_block
from moltbot.config.monitoring import ServiceCheck, load_monitoring, services_from_parameter
from moltbot.config.settings import checked_timezone, get_settings
from moltbot.effects import Route
from moltbot.effects.report import RunReport, finish_run
from moltbot.errors import InputError
from moltbot.messages import Message
from moltbot.runlabels import artifact_description, flow_run_namer, label_current_run, local_minute
from moltbot.state.service_health import ServiceHealth
from moltbot.templating import render_template
from tasks.artifacts import TableColumn, publish_markdown, publish_table, readable_rows
from tasks.effects import (
    channel_destinations,
    deliver_by_severity,
    routes_by_severity,
    routes_for,
)
from tasks.http_checks import CheckResult, check_services
from tasks.service_health import read_service_health, save_service_health

ARTIFACT_KEYS = {"summary": "service-health", "status": "service-health-status"}
_STATES = {
    "UP": ("up", "정상"),
    "DOWN": ("down", "장애"),
    "DEGRADED": ("degraded", "지연"),
    "UNKNOWN": ("not yet known", "확인 중"),
}
_REASONS = {
    "timeout": ("timeout", "시간 초과"),
    "refused": ("connection refused", "연결 거부"),
    "tls": ("TLS error", "TLS 오류"),
    "dns": ("host not found", "호스트 없음"),
    "closed": ("connection closed without an answer", "응답 없이 연결 끊김"),
    "connect": ("cannot connect", "연결 실패"),
    "status": ("unexpected status", "예상하지 않은 상태 코드"),
    "text": ("body lacks the expected text", "기대한 문구 없음"),
}
STATUS_COLUMNS = (
    TableColumn("service", "Service", "서비스"),
    TableColumn("state", "State", "상태", values=_STATES),
    TableColumn("status_code", "Status code", "상태 코드"),
    TableColumn("latency_ms", "Latency (ms)", "응답 시간(ms)", kind="number", decimals=1),
    TableColumn("since", "Since", "상태 시작", kind="datetime"),
    TableColumn("reason", "Reason", "원인", values=_REASONS),
    TableColumn("failures", "Failures in a row", "연속 실패", kind="number"),
)


class ServiceHealthResult(RunReport):
    """A service-health run: services per state, every check, the changes alerted, the states
    saved."""

    counts: dict[str, int]
    checks: list[dict[str, Any]]
    transitions: list[dict[str, Any]]
    states_saved: int


# --------------------------------------------------------------------------- parameters


def resolve_routes(channels_by_severity: dict[str, Any] | None) -> dict[Severity, list[Route]]:
    """Routes per severity (`down`, `degraded`, `recovered`).

    Without a mapping, `[routes.service-health]` in moltbot.toml decides, else the outbox. In a
    mapping, each severity lists routes (a channel name, or a list tried in order); a missing
    `degraded` or `recovered` takes the `down` routes, a missing `down` the defaults. An empty
    list silences a severity.

    Raises:
        InputError: an unknown severity, or a value that is not a list of routes.
    """
    if channels_by_severity is None:
        return {severity: routes_for(ENTRY, severity, None) for severity in SEVERITIES}
    given = routes_by_severity(ENTRY, channels_by_severity, SEVERITIES)
    down = given["down"] if "down" in given else routes_for(ENTRY, "down", None)
    return {
        "down": down,
        "degraded": given.get("degraded", down),
        "recovered": given.get("recovered", down),
    }


def resolve_services(
    services: dict[str, Any] | None, max_parallel: int | None
) -> tuple[dict[str, ServiceCheck], int]:
    """The services to check and the parallelism: the parameters, else `[monitoring]`.

    Raises:
        InputError: a bad `[monitoring]` table or `services` parameter, or no service at all.
    """
    config = load_monitoring()
    checks = services_from_parameter(services) if services is not None else config.services
    if not checks:
        raise InputError(
            "no services to check: add [monitoring.services.<name>] tables to moltbot.toml "
            "or give the services parameter"
        )
    parallel = config.max_parallel if max_parallel is None else max_parallel
    if not 1 <= parallel <= 1000:
        raise InputError(f"max_parallel must be from 1 to 1000, got {parallel}")
    return checks, parallel


def load_header_blocks(services: dict[str, ServiceCheck]) -> dict[str, HttpHeaders]:
    """Each `HttpHeaders` block the services name, loaded once (secrets registered).

    Raises:
        InputError: a block that is not saved.
    """
    names = sorted({spec.headers_block for spec in services.values() if spec.headers_block})
    return {name: load_block(HttpHeaders, name) for name in names}


# --------------------------------------------------------------------------- tasks


@task(name="plan-alerts", cache_policy=NO_CACHE)
def plan_run(
    checks: list[CheckResult],
    previous: dict[str, ServiceHealth],
    services: dict[str, ServiceCheck],
    *,
    now: datetime,
    timezone: str,
    locale: str,
) -> tuple[HealthPlan, dict[Severity, Message]]:
    """Compare with the stored states and render one message per severity with news."""
    plan = plan_health(checks, previous, services, now=now)
    counts = plan.counts()
    messages = {
        severity: build_alert_message(
            severity, items, counts=counts, now=now, timezone=timezone, locale=locale
        )
        for severity, items in plan.alerts.items()
    }
    return follow_ups(plan, messages, previous), messages


def follow_ups(
    plan: HealthPlan, messages: dict[Severity, Message], previous: dict[str, ServiceHealth]
) -> HealthPlan:
    """Tie alerts and recoveries together: a DOWN or DEGRADED state remembers its alert's key,
    and a recovery message follows the alert of its first service that has one (`resolves`:
    a channel with threads replies in the alert's thread and marks the alert resolved).

    Returns:
        The plan whose state writes carry their alert's key (the recovery message is updated
        in `messages` in place).
    """
    recovered = messages.get("recovered")
    if recovered is not None:
        originals = [
            previous[item.service].alert_key
            for item in plan.alerts["recovered"]
            if item.service in previous and previous[item.service].alert_key
        ]
        if originals:
            messages["recovered"] = recovered.model_copy(
                update={"follow_up_of": originals[0], "resolves": True}
            )
    writes = [
        (replace(state, alert_key=messages[severity].key), severity)
        if severity in ("down", "degraded") and severity in messages
        else (state, severity)
        for state, severity in plan.writes
    ]
    return replace(plan, writes=writes)


# --------------------------------------------------------------------------- the flow


@flow(
    name=AUTOMATION,
    flow_run_name=flow_run_namer(AUTOMATION),
    log_prints=False,
    **AUTOMATION_FLOW,
)
def service_health(
    services: dict[str, Any] | None = None,
    channels_by_severity: dict[str, list[Any]] | None = None,
    max_parallel: int | None = None,
    timezone: str | None = None,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Check every configured HTTP endpoint and alert only when a service changes state.

    Order of effects, and why a crash can neither lose nor duplicate an alert:

    1. Read and check the configuration (`[monitoring]` or `services`), the routes and every
       headers block. Bad input stops the run here, before any request or ledger write.
    2. Check all services at once (at most `max_parallel` in flight); requests are reads, so a
       crash here changes nothing.
    3. Read the stored states and plan: a service goes DOWN after `failures_to_down` failed
       checks in a row, DEGRADED when slower than `latency_ms`, and `recovered` when it
       answers well again. One message per severity with news; its idempotency key is the
       automation, the severity and a digest of (service, from, to, start of the episode the
       change ends) of its services; the delivery layer adds the channel.
    4. Deliver each message through the effects layer on its severity's routes.
    5. Only then save: the states behind each severity whose deliveries all succeeded, and
       the silent ones (a failure streak growing, a first check that is fine). A severity
       with a failed channel keeps its services' old states (failure count included), so the
       next run finds the same change, rebuilds the same key, skips the channels that have it
       and retries the one that failed.

    A crash between 4 and 5 leaves the old states: the re-run rebuilds the same keys, finds them
    done in the ledger and saves. Saving first would lose the alert on a crash in between.

    Args:
        services: service name -> its check (the keys of `[monitoring.services.<name>]`:
            `url`, `expected_status`, `latency_ms`, `contains`, `timeout_seconds`, `method`,
            `headers_block`, `failures_to_down`); replaces the file's services.
        channels_by_severity: routes for `down`, `degraded` (default: the `down` routes) and
            `recovered` (default: the `down` routes); default `[routes.service-health]`, else
            the outbox.
        max_parallel: checks in flight at once; default `[monitoring] max_parallel` (20).
        timezone: IANA timezone of the times shown; default `MOLTBOT_TIMEZONE`.
        dry_run: check and preview, but deliver nothing and save no state.

    Returns:
        The `ServiceHealthResult` as JSON.
    """
    label_current_run(AUTOMATION, dry_run=dry_run)
    logger = get_run_logger()
    settings = get_settings()
    timezone = checked_timezone(timezone or settings.timezone)
    specs, parallel = resolve_services(services, max_parallel)
    routes = resolve_routes(channels_by_severity)
    header_blocks = load_header_blocks(specs)
    links = [link for severity in SEVERITIES for route in routes[severity] for link in route.links]
    destinations = channel_destinations(links) if links else {}

    # quote: the blocks hold secrets Prefect has no reason to walk or record.
    checks = check_services(quote(specs), quote(header_blocks), max_parallel=parallel)
    now = datetime.now(UTC)
    previous = read_service_health(AUTOMATION)
    plan, messages = plan_run(
        quote(checks), quote(previous), quote(specs), now=now, timezone=timezone,
        locale=settings.locale,
    )  # fmt: skip
    counts = plan.counts()
    logger.info(
        "Services: %s up, %s slow, %s down, %s not yet known; news: %s",
        counts["UP"],
        counts["DEGRADED"],
        counts["DOWN"],
        counts["UNKNOWN"],
        ", ".join(f"{len(items)} {name}" for name, items in plan.alerts.items()) or "none",
    )

    deliveries, delivered = deliver_by_severity(messages, routes, destinations, dry_run=dry_run)

    saved = 0
    if not dry_run:
        writes = [state for state, severity in plan.writes if severity in (None, *delivered)]
        if writes:
            saved = save_service_health(AUTOMATION, writes, now)

    result = {
        "counts": counts,
        "checks": [_check_record(row) for row in plan.rows],
        "transitions": [
            {"severity": severity, **transition_record(item, timezone)}
            for severity, items in plan.alerts.items()
            for item in items
        ],
        "deliveries": deliveries,
        "states_saved": saved,
    }
    result["artifacts"] = _publish(plan, result, messages, timezone, now=now, dry_run=dry_run)
    return finish_run(ServiceHealthResult(**result, dry_run=dry_run))


def _check_record(row: Any) -> dict[str, Any]:
    record = asdict(row)
    record["since"] = row.since.isoformat()
    return record


def _publish(
    plan: HealthPlan,
    result: dict[str, Any],
    messages: dict[Severity, Message],
    timezone: str,
    *,
    now: datetime,
    dry_run: bool,
) -> list[dict[str, Any]]:
    # A dry run's preview stays on its own run page: it must not become the latest version of
    # the keyed artifacts people follow.
    keys = dict.fromkeys(ARTIFACT_KEYS) if dry_run else ARTIFACT_KEYS
    settings = get_settings()
    checked = local_minute(now, timezone)
    counts = result["counts"]
    summary = render_template(
        TEMPLATES,
        settings.locale,
        "run_summary.md.j2",
        counts=counts,
        alerts={name: len(items) for name, items in plan.alerts.items()},
        titles={name: message.title for name, message in messages.items()},
        deliveries=result["deliveries"],
        states_saved=result["states_saved"],
        checked=checked,
        timezone=timezone,
        dry_run=dry_run,
    )
    states = f"{counts['UP']} up, {counts['DEGRADED']} slow, {counts['DOWN']} down"
    rows = [asdict(row) for row in plan.rows]
    return [
        {
            "key": keys["summary"],
            "id": publish_markdown(
                keys["summary"],
                summary,
                description=artifact_description(AUTOMATION, checked, states, dry_run=dry_run),
            ),
        },
        {
            "key": keys["status"],
            "id": publish_table(
                keys["status"],
                quote(
                    readable_rows(
                        rows,
                        STATUS_COLUMNS,
                        locale=settings.locale,
                        currency=settings.currency,
                        timezone=timezone,
                    )
                ),
                description=artifact_description(
                    AUTOMATION, checked, f"{len(rows)} services", dry_run=dry_run
                ),
            ),
        },
    ]

"""The health flow: run the doctor's checks, tell ops once when their result changed, save."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect import flow
from prefect.logging import get_run_logger

from flows.health import ENTRY
from flows.health.plan import counts, plan_changes
from flows.health.render import AUTOMATION, build_message, change_record
from flows.shared.runs import AUTOMATION_FLOW
from moltbot.config.settings import get_settings
from moltbot.doctor import worst
from moltbot.effects import Route
from moltbot.effects.report import RunReport, finish_run
from moltbot.effects.routes import RouteSpec
from moltbot.runlabels import flow_run_namer, label_current_run, local_minute
from tasks.artifacts import publish_markdown
from tasks.doctor import run_doctor_checks
from tasks.effects import deliver, route_destinations, routes_for
from tasks.service_health import read_service_health, save_service_health

ARTIFACT_KEY = "health"
# The one kind of message it sends: the checks' result changed.
SEVERITY = "changed"


class HealthResult(RunReport):
    """A health run: the worst status, the checks by status, what changed, the states saved."""

    status: str
    counts: dict[str, int]
    checks: list[dict[str, Any]]
    changes: list[dict[str, Any]]
    states_saved: int


def resolve_routes(channels: list[RouteSpec] | None) -> list[Route]:
    """The `channels` parameter's routes, else `changed` of `[routes.health]` in moltbot.toml,
    else one route along `MOLTBOT_OPS_CHANNELS` (the first channel that takes the message).

    Raises:
        InputError: a malformed `channels` parameter or `[routes]` entry.
    """
    routes = routes_for(ENTRY, SEVERITY, channels)
    return routes or [Route(tuple(get_settings().ops_channels), ENTRY.delivery_policy)]


@flow(
    name=AUTOMATION,
    flow_run_name=flow_run_namer(AUTOMATION),
    log_prints=False,
    **AUTOMATION_FLOW,
)
def health(channels: list[Any] | None = None, dry_run: bool = False) -> dict[str, Any]:
    """Run `moltbot doctor`'s checks and tell ops only when their result changed.

    Order of effects, and why a crash neither loses nor repeats a message:

    1. Run every check (the Prefect API, every block's authenticated no-op, rate limits,
       deployments, the gateway's sources, the ledger, the risky setups); each is ok, warn
       or fail.
    2. Compare each check's status with the one stored by the last run (a check never
       stored counts as ok, so a first run reports only what is not ok). No change: nothing
       is sent. Otherwise one message lists every change; its key is a digest of (check,
       before, after, since when it was `before`), so a re-run finds the same key.
    3. Deliver it through the effects layer on the ops route.
    4. Only then save the changed statuses (not when the delivery failed: the next run finds
       the same changes, rebuilds the same key and tries again).

    Args:
        channels: routes for the message (a channel name, or a list tried in order);
            default: `changed` of `[routes.health]`, else one route along
            `MOLTBOT_OPS_CHANNELS`.
        dry_run: check and preview the message, but send and save nothing.

    Returns:
        The `HealthResult` as JSON.
    """
    label_current_run(AUTOMATION, dry_run=dry_run)
    logger = get_run_logger()
    settings = get_settings()
    routes = resolve_routes(channels)
    checks = run_doctor_checks(settings.locale)
    now = datetime.now(UTC)
    previous = read_service_health(AUTOMATION)
    plan = plan_changes(checks, previous, now=now)
    status, tally = worst(checks), counts(checks)
    logger.info(
        "%s failed, %s warnings, %s ok; %s changed",
        tally["fail"], tally["warn"], tally["ok"], len(plan.changes),
    )  # fmt: skip

    deliveries: list[dict[str, Any]] = []
    if plan.changes:
        message = build_message(
            plan, worst=status, counts=tally, now=now, timezone=settings.timezone,
            locale=settings.locale,
        )  # fmt: skip
        destinations = route_destinations(link for route in routes for link in route.links)
        deliveries = deliver(message, routes, destinations, dry_run=dry_run)
    delivered = all(row["status"] in ("done", "already_done") for row in deliveries)
    saved = 0
    if not dry_run and plan.writes and delivered:
        saved = save_service_health(AUTOMATION, list(plan.writes), now)

    report = HealthResult(
        dry_run=dry_run,
        deliveries=deliveries,
        status=status,
        counts=tally,
        checks=[check.model_dump() for check in checks],
        changes=[change_record(change) for change in plan.changes],
        states_saved=saved,
    )
    if plan.changes:
        checked = local_minute(now, settings.timezone)
        publish_markdown(
            None if dry_run else ARTIFACT_KEY,
            _summary(report, checked),
            f"{AUTOMATION} {checked}",
        )
    return finish_run(report)


def _summary(report: HealthResult, checked: str) -> str:
    lines = [f"# health {checked}: {report.status}", ""]
    for change in report.changes:
        lines.append(f"- `{change['name']}`: {change['before']} -> {change['after']}")
    for delivery in report.deliveries:
        lines.append(f"- {delivery.channel}: {delivery.status}")
    return "\n".join(lines) + "\n"

"""Running the deployments: `moltbot serve` (one process) and `moltbot deploy` (a work pool)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID
from zoneinfo import ZoneInfo

from deployments.alerts import (
    AlertSetup,
    DetectorSetup,
    MissedRunWatch,
    duration_words,
    ensure_crash_detector,
    ensure_failure_alerts,
    ensure_missed_run_alerts,
    pause_missed_run_alerts,
)
from deployments.specs import DeploymentSpec
from moltbot.errors import InputError

if TYPE_CHECKING:
    from prefect.settings import Settings

Report = Callable[[str], None]

HEARTBEAT_SETTING = "PREFECT_FLOWS_HEARTBEAT_FREQUENCY"
# How often `moltbot serve` looks for runs to start. Prefect's default, 10 s, is paid by every
# webhook batch (the dispatcher asks for a deployment's next run when its previous one ends).
RUNNER_POLL_SECONDS = 2
# Prefect's minimum (it raises anything lower to 30 s). Its default, 180 s, would let a dead run
# go unnoticed for nine minutes with the window below.
HEARTBEAT_SECONDS = 30
# A run is declared dead after this many missed heartbeats, as in Prefect's zombie-flow guide:
# one late heartbeat (a slow network, a loaded machine) is not a crash. 3 x 30 s = 90 s.
MISSED_HEARTBEATS = 3


def setup_failure_alerts(ops_block: str | None, report: Report) -> AlertSetup | None:
    """Create or update the failure-alert automation; without an ops block say that alerts are off.

    Raises:
        InputError: an ops block was named but cannot be used.
    """
    if not ops_block:
        report(
            "failure alerts: off (no ops block; set ops_block in moltbot.toml or "
            "MOLTBOT_OPS_BLOCK, or pass --ops-block)"
        )
        return None
    setup = ensure_failure_alerts(ops_block)
    verb = "created" if setup.created else "updated"
    report(f"failure alerts: {verb} automation {setup.automation_id} -> block {ops_block!r}")
    return setup


def missed_run_watches(
    specs: list[DeploymentSpec],
    deployment_ids: Mapping[str, UUID],
    after: datetime | None = None,
) -> list[MissedRunWatch]:
    """A missed-run watch for every deployment that runs on a schedule (not paused).

    Its window is the schedule's longest gap between runs (`DeploymentSpec.longest_gap`) plus
    the deployment's `grace_minutes`.

    Args:
        specs: the deployments.
        deployment_ids: `flow/deployment` -> its id on the server, for the scheduled ones.
        after: where the cron's gaps are looked for from (default: now).
    """
    watches = []
    for spec in specs:
        gap = spec.longest_gap(after) if spec.runs_on_schedule else None
        if gap is None:
            continue
        watches.append(
            MissedRunWatch(
                deployment_id=deployment_ids[spec.full_name],
                deployment=spec.full_name,
                cron=None if spec.interval_seconds is not None else spec.cron,
                timezone=spec.timezone,
                longest_gap=gap,
                grace=timedelta(minutes=spec.grace_minutes),
            )
        )
    return watches


def setup_missed_run_alerts(
    specs: list[DeploymentSpec],
    deployment_ids: Mapping[str, UUID],
    ops_block: str | None,
    report: Report,
) -> list[MissedRunWatch]:
    """Create or update the missed-run alert of every scheduled deployment; the watches set up.

    Without an ops block it says that they are off: the alert has nowhere to go.

    Raises:
        InputError: an ops block was named but cannot be used.
    """
    from moltbot.config.settings import get_settings
    from moltbot.i18n import cli_text

    off, nothing, summary, one, _ = cli_text("missed_run_report")
    if not ops_block:
        report(off)
        return []
    locale = get_settings().locale
    watches = missed_run_watches(specs, deployment_ids)
    setup = ensure_missed_run_alerts(watches, ops_block, locale)
    if not watches and not setup.deleted:
        report(nothing)
        return []
    counts = len(setup.created), len(setup.updated), len(setup.deleted)
    report(summary.format(created=counts[0], updated=counts[1], deleted=counts[2], block=ops_block))
    for watch in watches:
        report(
            one.format(
                deployment=watch.deployment,
                window=duration_words(watch.within, locale),
                gap=duration_words(watch.longest_gap, locale),
                grace=duration_words(watch.grace, locale),
            )
        )
    return watches


def heartbeat_seconds(settings: Settings | None = None) -> int:
    """Seconds between a run's heartbeats: the user's `PREFECT_FLOWS_HEARTBEAT_FREQUENCY`, else 30.

    Args:
        settings: Prefect's settings (default: the current ones, from the environment, the
            Prefect profile and prefect.toml).
    """
    from prefect.settings import get_current_settings

    flows = (settings or get_current_settings()).flows
    # Prefect's own default is not a choice anybody made, so it does not count as set.
    if "heartbeat_frequency" in flows.model_fields_set and flows.heartbeat_frequency:
        return flows.heartbeat_frequency
    return HEARTBEAT_SECONDS


def runner_poll_seconds(settings: Settings | None = None) -> int:
    """Seconds between the serving process's looks for runs: the user's
    `PREFECT_RUNNER_POLL_FREQUENCY`, else 2."""
    from prefect.settings import get_current_settings

    runner = (settings or get_current_settings()).runner
    if "poll_frequency" in runner.model_fields_set and runner.poll_frequency:
        return runner.poll_frequency
    return RUNNER_POLL_SECONDS


def setup_crash_detection(heartbeat: int, report: Report) -> DetectorSetup:
    """Create or update the crashed-run detector for runs that send a heartbeat every `heartbeat` s.

    It is set up with or without an ops block: a run whose process died stays Running and holds
    its deployment's concurrency slot, so every later run of it would wait, alert or not.
    """
    setup = ensure_crash_detector(within_seconds=MISSED_HEARTBEATS * heartbeat)
    verb = "created" if setup.created else "updated"
    report(
        f"crash detection: {verb} automation {setup.automation_id} (a heartbeat every "
        f"{heartbeat} s; a run silent for {setup.within_seconds:g} s is marked Crashed)"
    )
    return setup


def with_heartbeat(job_variables: dict[str, Any], heartbeat: int) -> dict[str, Any]:
    """`job_variables` whose `env` makes the run send a heartbeat every `heartbeat` seconds.

    The value is pinned in the deployment, over whatever a worker's machine has, because the
    detector's window was computed from it. Prefect merges this `env` into the pool's.
    """
    env = {**job_variables.get("env", {}), HEARTBEAT_SETTING: str(heartbeat)}
    return {**job_variables, "env": env}


def describe(spec: DeploymentSpec) -> str:
    """One line about a deployment: name, schedule, policy, paused and why."""
    if spec.interval_seconds is not None:
        schedule = f"every {spec.interval_seconds:g} s"
    elif spec.cron:
        schedule = f"cron {spec.cron!r} ({spec.timezone})"
    else:
        schedule = "no schedule (runs on demand)"
    line = (
        f"{spec.full_name}: {schedule}, at most {spec.policy.concurrency_limit} at once "
        f"({spec.policy.collision_strategy.lower()}), version {spec.version}"
    )
    if spec.missing_parameters:
        missing = "; ".join(spec.missing_parameters)
        line += (
            f"; PAUSED, every run would fail: add {missing} to "
            f"[deployments.{spec.automation.name}.parameters] in moltbot.toml"
        )
    elif spec.paused:
        line += "; paused"
    return line


def next_run(spec: DeploymentSpec, after: datetime | None = None) -> datetime | None:
    """When the deployment's schedule fires next (None: no schedule, or it is paused)."""
    import asyncio

    from prefect.server.schemas.schedules import CronSchedule, IntervalSchedule

    if spec.paused:
        return None
    start = after or datetime.now(ZoneInfo(spec.timezone))
    if spec.interval_seconds is not None:
        schedule: CronSchedule | IntervalSchedule = IntervalSchedule(
            interval=timedelta(seconds=spec.interval_seconds), timezone=spec.timezone
        )
    elif spec.cron:
        schedule = CronSchedule(cron=spec.cron, timezone=spec.timezone)
    else:
        return None
    dates = asyncio.run(schedule.get_dates(n=1, start=start))
    return dates[0].astimezone(ZoneInfo(spec.timezone)) if dates else None


def next_run_words(spec: DeploymentSpec, after: datetime | None = None) -> str:
    """`2026-12-04 09:00 KST`, or why there is no next run."""
    if spec.missing_parameters:
        return "paused (see above)"
    moment = next_run(spec, after)
    if moment is None:
        return "paused" if spec.paused else "no schedule: on demand (webhooks, run_deployment)"
    return moment.strftime("%Y-%m-%d %H:%M %Z")


def serve_deployments(
    specs: list[DeploymentSpec], *, ops_block: str | None, limit: int | None, report: Report
) -> None:
    """Register every deployment and run their schedules in this process until interrupted.

    Prefect's runner polls for scheduled runs and runs each in a subprocess, which sends a
    heartbeat every `heartbeat_seconds()`; on Ctrl-C it pauses the schedules so no run piles up
    while nothing serves them.
    """
    from prefect import serve

    if not specs:
        raise InputError("no deployment to serve (all automations disabled?)")
    setup_failure_alerts(ops_block, report)
    heartbeat = heartbeat_seconds()
    setup_crash_detection(heartbeat, report)
    deployments = [spec.to_runner_deployment() for spec in specs]
    # The missed-run alerts name the deployments' ids, so the scheduled ones are registered
    # now; `serve` registers them again (an update) when it starts.
    scheduled_ids = {
        spec.full_name: deployment.apply()
        for spec, deployment in zip(specs, deployments, strict=True)
        if ops_block and spec.runs_on_schedule
    }
    watches = setup_missed_run_alerts(specs, scheduled_ids, ops_block, report)
    for spec in specs:
        report(describe(spec))
    report(f"serving {len(specs)} deployment(s) in this process; next runs:")
    for spec in specs:
        report(f"  {spec.full_name:<28} {next_run_words(spec)}")
    report("Ctrl-C stops serving and pauses the schedules (run `uv run moltbot serve` to resume).")
    # The runner puts the frequency into each run's environment, over the served process's.
    try:
        serve(
            *deployments,
            limit=limit,
            print_starting_message=False,
            heartbeat_seconds=heartbeat,
            query_seconds=runner_poll_seconds(),
        )
    finally:
        # Stopped on purpose (Ctrl-C, even one that came while the runner was still starting):
        # no run is missed on purpose while nothing serves the schedules. A serve process that
        # dies without this step (SIGKILL, a crash of the host) leaves the alerts on, as it
        # should.
        if watches:
            pause_missed_run_alerts([watch.name for watch in watches])
            from moltbot.i18n import cli_text

            report(cli_text("missed_run_report")[4].format(count=len(watches)))


def ensure_process_pool(pool: str) -> bool:
    """Create the process work pool `pool` unless it exists; return True when created.

    Raises:
        InputError: a pool of that name exists but is not a process pool.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound
    from prefect.workers.process import ProcessWorker

    with get_client(sync_client=True) as client:
        try:
            existing = client.read_work_pool(pool)
        except ObjectNotFound:
            template = ProcessWorker.get_default_base_job_template()
            client.create_work_pool(
                WorkPoolCreate(name=pool, type="process", base_job_template=template)
            )
            return True
    if existing.type != "process":
        raise InputError(f"work pool {pool!r} is a {existing.type!r} pool, not a process pool")
    return False


def deploy_to_pool(
    specs: list[DeploymentSpec], *, pool: str, ops_block: str | None, report: Report
) -> list[str]:
    """Register every deployment with the process work pool `pool`; return their ids.

    Any number of `prefect worker start --pool <pool>` processes, on any machine with moltbot
    installed, then run the scheduled and triggered runs; each run sends a heartbeat every
    `heartbeat_seconds()` (set in the deployment's job variables).
    """
    if not specs:
        raise InputError("no deployment to register (all automations disabled?)")
    if ensure_process_pool(pool):
        report(f"work pool {pool!r}: created (type process)")
    setup_failure_alerts(ops_block, report)
    heartbeat = heartbeat_seconds()
    setup_crash_detection(heartbeat, report)
    ids = []
    for spec in specs:
        deployment = spec.to_runner_deployment(work_pool_name=pool)
        deployment.job_variables = with_heartbeat(deployment.job_variables, heartbeat)
        deployment_id = deployment.apply()
        ids.append(str(deployment_id))
        report(describe(spec))
    deployment_ids = {spec.full_name: UUID(str(id_)) for spec, id_ in zip(specs, ids, strict=True)}
    setup_missed_run_alerts(specs, deployment_ids, ops_block, report)
    from prefect.settings import get_current_settings

    api = get_current_settings().api.url
    report(f"start workers with: PREFECT_API_URL={api} uv run prefect worker start --pool {pool}")
    return ids

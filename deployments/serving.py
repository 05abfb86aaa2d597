"""Running the deployments: `moltbot serve` (one process) and `moltbot deploy` (a work pool)."""

from __future__ import annotations

from collections.abc import Callable

from deployments.alerts import AlertSetup, ensure_failure_alerts
from deployments.specs import DeploymentSpec
from moltbot.errors import InputError

Report = Callable[[str], None]


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
        missing = ", ".join(spec.missing_parameters)
        line += (
            f"; PAUSED: needs parameter(s) {missing} "
            f"([deployments.{spec.automation.name}.parameters] in moltbot.toml)"
        )
    elif spec.paused:
        line += "; paused"
    return line


def serve_deployments(
    specs: list[DeploymentSpec], *, ops_block: str | None, limit: int | None, report: Report
) -> None:
    """Register every deployment and run their schedules in this process until interrupted.

    Prefect's runner polls for scheduled runs and runs each in a subprocess; on Ctrl-C it
    pauses the schedules so no run piles up while nothing serves them.
    """
    from prefect import serve

    if not specs:
        raise InputError("no deployment to serve (all automations disabled?)")
    setup_failure_alerts(ops_block, report)
    deployments = [spec.to_runner_deployment() for spec in specs]
    for spec in specs:
        report(describe(spec))
    serve(*deployments, limit=limit, print_starting_message=False)


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
    installed, then run the scheduled and triggered runs.
    """
    if not specs:
        raise InputError("no deployment to register (all automations disabled?)")
    if ensure_process_pool(pool):
        report(f"work pool {pool!r}: created (type process)")
    setup_failure_alerts(ops_block, report)
    ids = []
    for spec in specs:
        deployment_id = spec.to_runner_deployment(work_pool_name=pool).apply()
        ids.append(str(deployment_id))
        report(describe(spec))
    report(f"start workers with: prefect worker start --pool {pool}")
    return ids

"""Who did what: the actor of each action, and the audit entries the CLI and every run write."""

from __future__ import annotations

import getpass
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from moltbot.config.settings import get_settings
from moltbot.state.audit import AuditAction, AuditRow, AuditTrail, Publication
from moltbot.state.ledger import Ledger

logger = logging.getLogger("moltbot.audit")

CONFIG_FILE = "moltbot.toml"
ARTIFACT_PREFIX = "moltbot-audit"
# A run's parameters that say nothing about who asked for what: kept out of its audit entry.
_UNAUDITED_PARAMETERS = frozenset({"dry_run"})

# The time a run's audit entry and its publication decision take: the wall clock, except
# inside `audit_clock` (tests move it instead of waiting out the publication interval).
_NOW: ContextVar[Callable[[], datetime]] = ContextVar(
    "moltbot_audit_now", default=lambda: datetime.now(UTC)
)


@contextmanager
def audit_clock(now: Callable[[], datetime]) -> Iterator[None]:
    """Within the block, runs' audit entries and publications read the time from `now`."""
    token = _NOW.set(now)
    try:
        yield
    finally:
        _NOW.reset(token)


def os_user() -> str:
    """The operating-system user running this process (`unknown` where none can be told)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        # No login name and no passwd entry (a bare container user id).
        return f"uid-{os.getuid()}" if hasattr(os, "getuid") else "unknown"


def cli_actor() -> str:
    """The actor of a CLI command: `user:<OS user>`."""
    return f"user:{os_user()}"


def run_actor(
    tags: Iterable[str],
    *,
    deployment: str | None = None,
    auto_scheduled: bool = False,
    source: str | None = None,
) -> str:
    """The actor of a flow run, from what started it.

    A schedule's run is `deployment:<name> (schedule)`; the gateway's is `webhook[:source]`;
    the CLI's and the demo's are the OS user that ran the command (the run executes in that
    process); any other deployment run (`prefect deployment run`, the UI) is
    `deployment:<name>`, since open-source Prefect does not say which person asked.
    """
    tag_set = set(tags)
    if auto_scheduled or ("schedule" in tag_set and deployment):
        return f"deployment:{deployment or 'unknown'} (schedule)"
    if "webhook" in tag_set:
        # The gateway tags its runs `webhook:<source>` (see moltbot.webhooks.dispatcher).
        source = source or next(
            (tag.removeprefix("webhook:") for tag in sorted(tag_set) if tag.startswith("webhook:")),
            None,
        )
        return f"webhook:{source}" if source else "webhook"
    if "cli" in tag_set or "demo" in tag_set or deployment is None:
        return cli_actor()
    return f"deployment:{deployment}"


def open_trail() -> tuple[Ledger, AuditTrail]:
    """The configured ledger and its audit trail (close the ledger when done)."""
    ledger = Ledger.from_settings()
    return ledger, AuditTrail(ledger)


def record(
    action: str,
    target: str,
    *,
    actor: str | None = None,
    automation: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    outcome: str = "ok",
    detail: str | None = None,
) -> AuditRow:
    """Append one entry to the configured ledger's audit trail (actor: the CLI's user)."""
    ledger, trail = open_trail()
    try:
        return trail.record(
            action,
            target,
            actor=actor or cli_actor(),
            automation=automation,
            parameters=parameters,
            outcome=outcome,
            detail=detail,
        )
    finally:
        ledger.close()


def save_block(block: Any, name: str) -> None:
    """Save (or overwrite) a block document and record who saved it (never its values)."""
    from moltbot.blockdocs import save_block_document

    save_block_document(block, name)
    record_blocks_saved([(block, name)])


def record_blocks_saved(saved: Iterable[tuple[Any, str]]) -> None:
    """One `block saved` entry per (block, document name) moltbot saved."""
    ledger, trail = open_trail()
    try:
        for block, name in saved:
            trail.record(
                AuditAction.BLOCK_SAVED,
                f"block {type(block).get_block_type_slug()}/{name}",
                actor=cli_actor(),
            )
    finally:
        ledger.close()


def config_digest(directory: Path | None = None) -> str | None:
    """SHA-256 of `moltbot.toml` in `directory` (the working directory), None without one."""
    path = (directory or Path.cwd()) / CONFIG_FILE
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def note_config(actor: str, *, directory: Path | None = None) -> AuditRow | None:
    """Record `config changed` when `moltbot.toml` differs from the last one recorded.

    The file's content is not stored (it may name people or channels), only its digest, so the
    trail says when the configuration changed and who ran moltbot with it first.
    """
    digest = config_digest(directory)
    if digest is None:
        return None
    ledger, trail = open_trail()
    try:
        return _note_config(trail, actor, digest)
    finally:
        ledger.close()


def _note_config(
    trail: AuditTrail, actor: str, digest: str, *, at: datetime | None = None
) -> AuditRow | None:
    last = trail.latest(AuditAction.CONFIG_CHANGED)
    if last is not None and (last.parameters or {}).get("sha256") == digest:
        return None
    return trail.record(
        AuditAction.CONFIG_CHANGED, CONFIG_FILE, actor=actor, parameters={"sha256": digest}, at=at
    )


def run_parameters(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters an audit entry keeps of a run (masked later, on writing)."""
    return {key: value for key, value in parameters.items() if key not in _UNAUDITED_PARAMETERS}


def audit_flow_run(flow: Any, flow_run: Any, state: Any) -> None:
    """Prefect state hook: record the finished run (completed, failed, crashed, cancelled).

    Registered on every automation's flow, so a run is recorded whatever started it; the day's
    table is published when due (`publish_due`). One ledger connection does both. A run must
    not fail because its audit entry could not be written: the failure is logged.
    """
    try:
        deployment = _deployment_name(flow.name, flow_run)
        parameters = dict(flow_run.parameters or {})
        actor = run_actor(
            flow_run.tags or [],
            deployment=deployment,
            auto_scheduled=bool(getattr(flow_run, "auto_scheduled", False)),
        )
        outcome = (state.type.value if state.type is not None else "unknown").lower()
        if parameters.get("dry_run") is True:
            outcome = f"{outcome} (dry run)"
        detail = None if state.is_completed() else (state.message or None)
        settings = get_settings()
        now = _NOW.get()()
        ledger = Ledger.from_settings(settings)
        try:
            trail = AuditTrail(ledger)
            digest = config_digest()
            if digest is not None:
                _note_config(trail, actor, digest, at=now)
            trail.record(
                AuditAction.RUN,
                f"{flow_run.name} (flow run {flow_run.id})",
                actor=actor,
                automation=flow.name,
                parameters=run_parameters(parameters),
                outcome=outcome,
                detail=detail,
                at=now,
            )
            publish_due(
                trail,
                now=now,
                interval=timedelta(seconds=settings.audit_publish_interval_seconds),
                zone=ZoneInfo(settings.timezone),
            )
        finally:
            ledger.close()
    except Exception as exc:
        logger.warning("could not write the audit entry of this run: %s", type(exc).__name__)


AUDIT_HOOKS: dict[str, list[Any]] = {
    "on_completion": [audit_flow_run],
    "on_failure": [audit_flow_run],
    "on_crashed": [audit_flow_run],
    "on_cancellation": [audit_flow_run],
}
"""`@flow(..., **AUDIT_HOOKS)`: every final state of a run writes its audit entry."""


def _deployment_name(flow_name: str, flow_run: Any) -> str | None:
    """`<flow>/<deployment>` of a deployment's run (its id when the API cannot say), else None."""
    deployment_id = getattr(flow_run, "deployment_id", None)
    if deployment_id is None:
        return None
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            return f"{flow_name}/{client.read_deployment(deployment_id).name}"
    except Exception:
        return str(deployment_id)


def audit_zone() -> ZoneInfo:
    """The timezone audit days and times are shown in (the `timezone` setting)."""
    return ZoneInfo(get_settings().timezone)


def day_bounds(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The UTC instants where `day` begins and ends in `zone`."""
    start = datetime.combine(day, datetime.min.time(), tzinfo=zone)
    return start.astimezone(UTC), (start + timedelta(days=1)).astimezone(UTC)


def artifact_key(day: date) -> str:
    """The key of a day's audit artifact: `moltbot-audit-2026-12-03`."""
    return f"{ARTIFACT_PREFIX}-{day.isoformat()}"


def artifact_rows(rows: Iterable[AuditRow], zone: ZoneInfo) -> list[dict[str, str]]:
    """Audit entries as the artifact's table rows (already masked when written)."""
    return [
        {
            "#": str(row.seq),
            "time": row.at.astimezone(zone).strftime("%H:%M:%S"),
            "actor": row.actor,
            "action": row.action,
            "automation": row.automation or "",
            "target": row.target,
            "outcome": row.outcome,
            "detail": row.detail or "",
        }
        for row in rows
    ]


def publish_due(
    trail: AuditTrail, *, now: datetime, interval: timedelta, zone: ZoneInfo
) -> list[str]:
    """Publish the day's audit table if its last publication is `interval` old (or there is
    none yet); the keys published.

    Each version holds the whole day, so publishing on every run would write a day of R runs
    R times over (about R²/2 rows). Bounded instead: at most one version per `interval` across every
    process on the ledger, the first run of a day always publishing. When it publishes, it
    first publishes the day before again if entries were written there after its last
    version (its last minutes), so every day's final table lands with the next day's first
    run; `moltbot audit --publish` publishes any day on demand.
    """
    day = now.astimezone(zone).date()
    seen = trail.publication(day)
    if seen is not None and now - seen.published_at < interval:
        return []
    keys: list[str] = []
    start, _ = day_bounds(day, zone)
    before = trail.last_before(start)
    if before is not None:
        earlier = before.at.astimezone(zone).date()
        earlier_seen = trail.publication(earlier)
        if earlier_seen is None or earlier_seen.last_seq < before.seq:
            keys += _publish_claimed(trail, earlier, zone=zone, now=now, seen=earlier_seen)
    keys += _publish_claimed(trail, day, zone=zone, now=now, seen=seen)
    return keys


def _publish_claimed(
    trail: AuditTrail, day: date, *, zone: ZoneInfo, now: datetime, seen: Publication | None
) -> list[str]:
    """Publish `day` if this run wins the turn (see `AuditTrail.claim_publication`)."""
    start, end = day_bounds(day, zone)
    rows = trail.rows(since=start, until=end)
    if not rows or not trail.claim_publication(day, last_seq=rows[-1].seq, at=now, seen=seen):
        return []
    try:
        key = _create_day_artifact(day, rows, trail.head(), zone)
    except BaseException:
        # Not published after all: the next run takes the turn again.
        trail.release_publication(day, at=now, seen=seen)
        raise
    return [key]


def publish_day(day: date, *, trail: AuditTrail | None = None) -> str | None:
    """Publish (a new version of) `day`'s audit table as a Prefect artifact; its key.

    The description carries the chain's head hash at that moment, so the Prefect database keeps
    a copy of the anchor that a rewrite of the whole ledger cannot also change.
    """
    if trail is None:
        ledger, trail = open_trail()
        try:
            return publish_day(day, trail=trail)
        finally:
            ledger.close()
    zone = audit_zone()
    start, end = day_bounds(day, zone)
    rows = trail.rows(since=start, until=end)
    if not rows:
        return None
    key = _create_day_artifact(day, rows, trail.head(), zone)
    trail.note_publication(day, last_seq=rows[-1].seq, at=_NOW.get()())
    return key


def _create_day_artifact(day: date, rows: list[AuditRow], head: str, zone: ZoneInfo) -> str:
    # Through the client rather than `create_table_artifact`: `moltbot audit --publish` runs
    # outside any flow run, where Prefect deprecates artifact creation; inside a run's hook
    # the version is linked to that run as before.
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import ArtifactCreate
    from prefect.utilities.context import get_task_and_flow_run_ids

    key = artifact_key(day)
    task_run_id, flow_run_id = get_task_and_flow_run_ids()
    with get_client(sync_client=True) as client:
        client.create_artifact(
            artifact=ArtifactCreate(
                type="table",
                key=key,
                description=f"moltbot audit trail, {day.isoformat()} ({zone.key}): {len(rows)} "
                f"entr{'y' if len(rows) == 1 else 'ies'}; chain head {head[:16]}",
                data=json.dumps(artifact_rows(rows, zone), ensure_ascii=False),
                flow_run_id=flow_run_id,
                task_run_id=task_run_id,
            )
        )
    return key

"""How a run shows itself in the Prefect UI: its name, its tags, its artifacts' descriptions."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from moltbot.config.settings import get_settings

Origin = Literal["cli", "demo", "schedule", "webhook"]
"""What started a run: `moltbot run`, `moltbot demo`, a deployment's schedule, the gateway."""

ORIGINS: tuple[Origin, ...] = ("cli", "demo", "schedule", "webhook")
DRY_RUN_TAG = "dry-run"
DRY_RUN_SUFFIX = " (dry run)"
DRY_RUN_PREFIX = "DRY RUN — "

Labeler = Callable[[Mapping[str, Any], str, datetime], str]
"""What a run name says after the automation: (parameters, timezone, now) -> `2026-12-02`."""

logger = logging.getLogger("moltbot.runlabels")


# --------------------------------------------------------------------------- tags


def run_tags(automation: str, *, dry_run: bool = False, origin: Origin | None = None) -> list[str]:
    """The tags a run of `automation` carries: its name, its origin, `dry-run` for a dry run.

    The CLI and the demo wrap their flow calls in `prefect.tags(*run_tags(...))`; the gateway
    passes them to `run_deployment`; each flow adds the ones only the run itself knows
    (`label_current_run`).

    Raises:
        ValueError: an origin that is not one of `ORIGINS` (a programming error).
    """
    if origin is not None and origin not in ORIGINS:
        raise ValueError(f"unknown run origin {origin!r} (use one of {', '.join(ORIGINS)})")
    tags = [automation]
    if origin is not None:
        tags.append(origin)
    if dry_run:
        tags.append(DRY_RUN_TAG)
    return tags


def missing_tags(
    current: Iterable[str], automation: str, *, dry_run: bool, auto_scheduled: bool
) -> list[str]:
    """The tags `label_current_run` adds to a run that has `current`, in `run_tags` order."""
    have = set(current)
    wanted = run_tags(automation, dry_run=dry_run, origin="schedule" if auto_scheduled else None)
    return [tag for tag in wanted if tag not in have]


def label_current_run(automation: str, *, dry_run: bool) -> list[str]:
    """Add the tags the current flow run lacks: the automation, `dry-run`, `schedule`.

    Each flow calls this once, first thing, so every run is tagged whatever started it (a
    schedule, the gateway, the CLI, a bare `prefect deployment run`). The other tags are kept.

    Returns:
        The tags added (none outside a flow run, or when the API could not be reached).
    """
    from prefect.client.orchestration import get_client
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    run = context.flow_run if context is not None else None
    if run is None:
        return []
    added = missing_tags(
        run.tags, automation, dry_run=dry_run, auto_scheduled=bool(run.auto_scheduled)
    )
    if not added:
        return []
    tags = [*run.tags, *added]
    try:
        with get_client(sync_client=True) as client:
            client.update_flow_run(run.id, tags=tags)
    except Exception as exc:
        # Tags only help people find runs: a run must not fail because it could not be labelled.
        logger.warning("could not tag flow run %s: %s", run.id, type(exc).__name__)
        return []
    run.tags = tags
    return added


# --------------------------------------------------------------------------- names


def local_minute(moment: datetime, timezone: str) -> str:
    """`moment` as `2026-12-03 21:00` in `timezone` (a naive moment counts as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M")


def name_timezone(parameters: Mapping[str, Any]) -> str:
    """The timezone a run name uses: the run's `timezone` parameter, else the setting, else UTC.

    Never raises: a bad timezone fails the run with its own clear message, not the naming.
    """
    for candidate in (parameters.get("timezone"), _setting_timezone()):
        if isinstance(candidate, str) and candidate:
            try:
                ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError):
                continue
            return candidate
    return "UTC"


def _setting_timezone() -> str | None:
    try:
        return get_settings().timezone
    except Exception:
        # Invalid settings fail the run at its first real step, with their own message.
        return None


def at_check_time(parameters: Mapping[str, Any], timezone: str, now: datetime) -> str:
    """The default label: the local time the run starts (`2026-12-03 21:00`)."""
    return local_minute(now, timezone)


def run_name(
    automation: str,
    parameters: Mapping[str, Any],
    *,
    now: datetime,
    label: Labeler = at_check_time,
) -> str:
    """`daily-report 2026-12-02`, `inventory-alert 2026-12-03 21:00 (dry run)`…

    Args:
        automation: the automation's name (its flow's name).
        parameters: the run's parameters (validated, as the flow receives them).
        now: the current time.
        label: what the name says after the automation; a label that fails falls back to the
            local time, since a name is never worth failing a run for.
    """
    timezone = name_timezone(parameters)
    try:
        text = label(parameters, timezone, now)
    except Exception:
        # Odd parameters are the flow's to refuse, with a clear message; the name stays plain.
        text = at_check_time(parameters, timezone, now)
    suffix = DRY_RUN_SUFFIX if parameters.get("dry_run") is True else ""
    return f"{automation} {text}{suffix}"


def flow_run_namer(automation: str, label: Labeler = at_check_time) -> Callable[[], str]:
    """The `flow_run_name=` callable of `automation`'s `@flow`.

    Prefect calls it once the parameters are validated, inside the run's context, so it reads
    them from `prefect.runtime.flow_run.parameters`.
    """

    def name() -> str:
        from prefect.runtime import flow_run

        return run_name(automation, dict(flow_run.parameters), now=datetime.now(UTC), label=label)

    name.__name__ = f"{automation.replace('-', '_')}_run_name"
    return name


# --------------------------------------------------------------------------- artifacts


def artifact_description(automation: str, when: str, *details: str, dry_run: bool) -> str:
    """`daily-report 2026-12-02 · top products`, with `DRY RUN — ` in front for a dry run.

    The automation and the date or window come first, so versions of a keyed artifact can be
    told apart from the list without opening each one.
    """
    text = " · ".join([f"{automation} {when}".strip(), *(d for d in details if d)])
    return f"{DRY_RUN_PREFIX}{text}" if dry_run else text

"""The metrics-weekly flow: gather the period's figures, render the page, publish it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from prefect import flow
from prefect.logging import get_run_logger

from flows.metrics_weekly import ENTRY
from flows.shared.runs import AUTOMATION_FLOW
from moltbot.config.settings import get_settings
from moltbot.effects.report import ArtifactRef, RunReport, finish_run
from moltbot.errors import InputError
from moltbot.metrics_page import render_markdown
from moltbot.runlabels import artifact_description, flow_run_namer, label_current_run, local_minute
from tasks.artifacts import publish_markdown
from tasks.metrics import gather_metrics

AUTOMATION = ENTRY.name
ARTIFACT_KEY = "metrics-weekly"


class MetricsWeeklyResult(RunReport):
    """A metrics-weekly run: the period and the figures per automation (as `moltbot metrics
    --json` prints them)."""

    metrics: dict[str, Any]


@flow(
    name=AUTOMATION,
    flow_run_name=flow_run_namer(AUTOMATION),
    log_prints=False,
    **AUTOMATION_FLOW,
)
def metrics_weekly(days: int = 7, dry_run: bool = False) -> dict[str, Any]:
    """Publish the last `days` days' metrics page (the same as `moltbot metrics --html`).

    It reads Prefect's run history, the ledger and the audit trail and sends nothing: its only
    effect is the markdown artifact `metrics-weekly` (a new version each run; a dry run's
    stays on its own run page).

    Args:
        days: the period, counted back from now.
        dry_run: publish on the run page only, not as the next version of `metrics-weekly`.

    Returns:
        The `MetricsWeeklyResult` as JSON: the figures per automation and the artifact.
    """
    label_current_run(AUTOMATION, dry_run=dry_run)
    if days < 1:
        raise InputError(f"days must be 1 or more, got {days}")
    settings = get_settings()
    until = datetime.now(UTC)
    since = until - timedelta(days=days)
    report = gather_metrics(since, until)
    get_run_logger().info(
        "%d automation(s) active in the last %d day(s)", len(report.automations), days
    )
    markdown = render_markdown(report, locale=settings.locale, timezone=settings.timezone)
    key = None if dry_run else ARTIFACT_KEY
    when = f"{local_minute(since, settings.timezone)} – {local_minute(until, settings.timezone)}"
    artifact_id = publish_markdown(
        key, markdown, artifact_description(AUTOMATION, when, dry_run=dry_run)
    )
    result = MetricsWeeklyResult(
        metrics=report.as_dict(),
        artifacts=[ArtifactRef(key=key, id=artifact_id)],
        dry_run=dry_run,
    )
    return finish_run(result)

"""The metrics-weekly automation: the week's per-automation metrics page, as an artifact."""

from moltbot.registry import Automation

ENTRY = Automation(
    name="metrics-weekly",
    flow_ref="flows.metrics_weekly.flow:metrics_weekly",
    description="Run history, ledger and audit trail -> a weekly page of per-automation metrics "
    "with charts (runs, success rate, durations, effects, omissions, hours saved).",
    # Monday 09:00 (in the deployment's timezone, Asia/Seoul by default): the week just ended,
    # ready when the team starts the week.
    default_schedule="0 9 * * 1",
    # Two pages at once would only publish the same figures twice.
    collision_strategy="CANCEL_NEW",
)

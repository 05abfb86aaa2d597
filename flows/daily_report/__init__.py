"""The daily-report automation: sales data -> KPIs -> chat, e-mail, outbox and Prefect artifacts."""

from moltbot.registry import Automation

ENTRY = Automation(
    name="daily-report",
    flow_ref="flows.daily_report.flow:daily_report",
    description="Sales/ops data -> daily KPIs -> chat, e-mail with a chart, outbox, artifact.",
    default_schedule="0 9 * * *",
    # Every report must go out, one after the other, so a run beyond the limit queues: the
    # ledger keys make a queued run find the report already sent instead of sending it again.
    collision_strategy="ENQUEUE",
    default_routes={"info": ("outbox",)},
)

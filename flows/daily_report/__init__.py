"""The daily-report automation: sales data -> KPIs -> chat, e-mail, outbox and Prefect artifacts."""

from moltbot.registry import Automation
from moltbot.rules import Rule, Words

RULES: tuple[Rule, ...] = (
    Rule(
        "daily-report.report",
        condition=Words(
            "every day: the report date's KPIs, a chart and the top items (warning when the "
            "revenue is unusual)",
            "매일: 보고일의 KPI, 차트, 상위 항목 (매출이 평소와 다르면 경고)",
        ),
        dedup=Words(
            "daily-report:<report date>, per route (its first channel)",
            "daily-report:<보고일>, 경로(첫 채널)마다",
        ),
        route="info",
        severities=("info", "warning"),
        templates=(
            "title.txt.j2",
            "slack.mrkdwn.j2",
            "slack_top.mrkdwn.j2",
            "report.md.j2",
            "email.html.j2",
        ),
    ),
)
"""Which condition produces which effect (`moltbot policy` lists them)."""

ENTRY = Automation(
    name="daily-report",
    flow_ref="flows.daily_report.flow:daily_report",
    description="Sales/ops data -> daily KPIs -> chat, e-mail with a chart, outbox, artifact.",
    default_schedule="0 9 * * *",
    # Every report must go out, one after the other, so a run beyond the limit queues: the
    # ledger keys make a queued run find the report already sent instead of sending it again.
    collision_strategy="ENQUEUE",
    default_routes={"info": ("outbox",)},
    rules=RULES,
)

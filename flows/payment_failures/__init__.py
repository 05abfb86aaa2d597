"""The payment-failures automation: payments -> window alerts, repeat tickets, daily rates."""

from moltbot.registry import Automation
from moltbot.rules import Rule, Words, run_summary_rule

RULES: tuple[Rule, ...] = (
    Rule(
        "payment-failures.window-alert",
        condition=Words(
            "a closed window (window_minutes) had payment failures",
            "닫힌 구간(window_minutes)에 결제 실패가 있음",
        ),
        dedup=Words(
            "payment-failures:alert:<window start, UTC>, per route",
            "payment-failures:alert:<구간 시작, UTC>, 경로마다",
        ),
        route="alert",
        severities=("warning",),
        templates=("alert_title.txt.j2", "alert.mrkdwn.j2", "alert.md.j2"),
    ),
    Rule(
        "payment-failures.daily-summary",
        condition=Words(
            "a local day ended: its failures, attempts and rates by reason and provider",
            "현지 날짜가 끝남: 그날의 실패, 시도, 사유·결제사별 비율",
        ),
        dedup=Words(
            "payment-failures:summary:<local date>, per route",
            "payment-failures:summary:<현지 날짜>, 경로마다",
        ),
        route="summary",
        severities=("info",),
        templates=("summary_title.txt.j2", "summary.mrkdwn.j2", "summary.md.j2"),
    ),
    run_summary_rule("payment-failures"),
)
"""Which condition produces which effect (`moltbot policy` lists them)."""

ENTRY = Automation(
    name="payment-failures",
    flow_ref="flows.payment_failures.flow:payment_failures",
    description="Payment failures -> one alert per 5 minutes, a ticket per repeating customer, "
    "daily failure rates.",
    default_schedule="*/5 * * * *",
    # Webhook runs and the scheduled check share the deployment: a run beyond the limit waits,
    # since a cancelled webhook run would leave its events unrecorded.
    collision_strategy="ENQUEUE",
    default_routes={"alert": ("outbox",), "summary": ("outbox",)},
    webhook_routes={
        # The inbox id, never the event: run parameters are shown to anyone with the Prefect UI,
        # and a payment event carries customer details; the flow reads it from the inbox.
        event_type: {"inbox_ids": ["{{ inbox_id }}"]}
        for event_type in (
            "payment_intent.payment_failed",
            "charge.failed",
            "payment.failed",
            "payment_intent.succeeded",
            "charge.succeeded",
            "payment.succeeded",
        )
    },
    rules=RULES,
)

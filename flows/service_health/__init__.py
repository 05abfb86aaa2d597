"""The service-health automation: HTTP endpoints -> UP, DEGRADED, DOWN -> alerts on changes."""

from moltbot.registry import Automation, RequiredChoice
from moltbot.rules import Rule, Words, run_summary_rule
from moltbot.templating import ALERT_TEMPLATES

RULES: tuple[Rule, ...] = (
    Rule(
        "service-health.down",
        condition=Words(
            "a service failed failures_to_down checks in a row (it is DOWN)",
            "서비스 점검이 failures_to_down번 연속 실패 (DOWN)",
        ),
        dedup=Words(
            "service-health:down:<digest of the changed services>, per route",
            "service-health:down:<바뀐 서비스의 다이제스트>, 경로마다",
        ),
        route="down",
        severities=("critical",),
        templates=ALERT_TEMPLATES,
    ),
    Rule(
        "service-health.degraded",
        condition=Words(
            "a service answers, but slower than its latency_ms (DEGRADED)",
            "서비스가 응답하지만 latency_ms보다 느림 (DEGRADED)",
        ),
        dedup=Words(
            "service-health:degraded:<digest of the changed services>, per route",
            "service-health:degraded:<바뀐 서비스의 다이제스트>, 경로마다",
        ),
        route="degraded",
        severities=("warning",),
        templates=ALERT_TEMPLATES,
    ),
    Rule(
        "service-health.recovered",
        condition=Words(
            "a DOWN or DEGRADED service is UP again (with how long it was out)",
            "DOWN 또는 DEGRADED였던 서비스가 다시 UP (중단 시간 포함)",
        ),
        dedup=Words(
            "service-health:recovered:<digest of the changed services>, per route",
            "service-health:recovered:<바뀐 서비스의 다이제스트>, 경로마다",
        ),
        route="recovered",
        severities=("info",),
        templates=ALERT_TEMPLATES,
    ),
    run_summary_rule("service-health"),
)
"""Which condition produces which effect (`moltbot policy` lists them)."""

ENTRY = Automation(
    name="service-health",
    flow_ref="flows.service_health.flow:service_health",
    description="HTTP endpoints -> DOWN after K failures, DEGRADED when slow, recovered -> alerts.",
    default_schedule="* * * * *",
    # A check that starts while the previous one still runs would count the same failures
    # against states the other is about to save, so the newcomer is cancelled (the next minute
    # checks again).
    collision_strategy="CANCEL_NEW",
    default_routes={
        "down": ("outbox",),
        "degraded": ("outbox",),
        "recovered": ("outbox",),
    },
    # Without services a run every minute would only fail: the deployment is created paused.
    required_choices=(
        RequiredChoice("services to check", (("services",),), config_table="monitoring.services"),
    ),
    rules=RULES,
)

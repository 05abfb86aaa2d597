"""The service-health automation: HTTP endpoints -> UP, DEGRADED, DOWN -> alerts on changes."""

from moltbot.registry import Automation, RequiredChoice

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
)

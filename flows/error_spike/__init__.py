"""The error-spike automation: error lines per window (logs or a table) -> spike and clear."""

from moltbot.registry import Automation, RequiredChoice

ENTRY = Automation(
    name="error-spike",
    flow_ref="flows.error_spike.flow:error_spike",
    description="Error lines per window (log files or a table) -> alert on a spike, then its end.",
    default_schedule="*/5 * * * *",
    # Two counts of the same files at once would race for the same offsets: the newcomer is
    # cancelled (the next tick reads on from where this one stops).
    collision_strategy="CANCEL_NEW",
    default_routes={"spike": ("outbox",), "cleared": ("outbox",)},
    required_choices=(RequiredChoice("log sources", (("sources",),)),),
)

"""The on-call automation: digests of held messages, and escalation of unacknowledged alerts."""

from moltbot.registry import Automation

ENTRY = Automation(
    name="on-call",
    flow_ref="flows.on_call.flow:on_call",
    description="Held messages -> one digest per route when quiet hours end; urgent alerts "
    "nobody acknowledged -> the next channel of their route.",
    # Every minute: an escalation is due N minutes after its last step, a digest at the end of
    # quiet hours; a minute late is the most either waits.
    default_schedule="* * * * *",
    # Two runs at once would find the same due steps (their keys keep them single anyway): the
    # newcomer is cancelled and the next minute looks again.
    collision_strategy="CANCEL_NEW",
)

"""The reconcile automation: what should have produced an effect vs the effects recorded."""

from moltbot.registry import Automation

ENTRY = Automation(
    name="reconcile",
    flow_ref="flows.reconcile.flow:reconcile",
    description="What should have produced an effect vs the effects recorded -> every omission, "
    "the omission rate per automation.",
    # Off the hour: the hourly automations (form-digest at :00) have finished by then.
    default_schedule="17 * * * *",
    # Two checks at once would both find the same new omissions; the newcomer is cancelled and
    # the next hour checks again.
    collision_strategy="CANCEL_NEW",
    default_routes={"omission": ("outbox",)},
)

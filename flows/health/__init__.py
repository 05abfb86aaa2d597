"""The health automation: `moltbot doctor`'s checks every 5 minutes, ops told when they change."""

from moltbot.registry import Automation

ENTRY = Automation(
    name="health",
    flow_ref="flows.health.flow:health",
    description="moltbot doctor's checks every 5 minutes -> one ops message when the result "
    "changes (not every time).",
    default_schedule="*/5 * * * *",
    # A run that starts while the previous one still checks would compare with states the other
    # is about to save: the newcomer is cancelled (the next one is 5 minutes away).
    collision_strategy="CANCEL_NEW",
    # No default chain: its message goes to MOLTBOT_OPS_CHANNELS unless `[routes.health]` names
    # a `changed` route (or a run gives `channels`).
    default_routes={},
)

"""The inventory-alert automation: stock levels -> state transitions -> alerts by severity."""

from moltbot.registry import Automation, RequiredChoice

ENTRY = Automation(
    name="inventory-alert",
    flow_ref="flows.inventory_alert.flow:inventory_alert",
    description="Stock levels -> only changed states (low, out, back) -> alerts by severity.",
    default_schedule="*/30 * * * *",
    # A stock check that starts while the previous one still runs would compare against states
    # the other is about to save, so the newcomer is cancelled (the next tick checks again).
    collision_strategy="CANCEL_NEW",
    default_routes={
        "out": ("outbox",),
        "low": ("outbox",),
        "recovered": ("outbox",),
        "reminder": ("outbox",),
    },
    required_choices=(
        RequiredChoice(
            "a stock source", (("source",), ("sheets_block", "spreadsheet_id", "worksheet"))
        ),
    ),
    shadow_ref="flows.inventory_alert.shadow:replay",
)

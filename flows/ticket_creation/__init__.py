"""The ticket-creation automation: form answers and events -> Jira issues, never twice."""

from moltbot.registry import Automation

ENTRY = Automation(
    name="ticket-creation",
    flow_ref="flows.ticket_creation.flow:ticket_creation",
    description="Form answers and events -> Jira issues, never duplicated, optional review.",
    default_schedule=None,
    # Every batch of tickets must be created, one after the other, so a run beyond the limit
    # queues: the ledger keys make a queued run find the issues already created.
    collision_strategy="ENQUEUE",
    default_routes={"info": ("outbox",)},
    shadow_ref="flows.ticket_creation.shadow:replay",
    # No webhook route of its own: `payment.failed` goes to payment-failures, which opens a
    # ticket through this flow once a customer fails repeatedly (not one per failure). A
    # `[webhooks.routes]` entry can still send any event type here (with `inbox_ids`).
)

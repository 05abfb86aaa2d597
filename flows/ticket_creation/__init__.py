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
    webhook_routes={
        # No `mapping`: ticket-creation picks the mapping whose `event_types` has the type.
        # The inbox id, not the event: run parameters are shown to anyone with the Prefect UI,
        # and a payment event carries customer details; the flow reads the event from the inbox.
        "payment.failed": {"inbox_ids": ["{{ inbox_id }}"]},
    },
)

"""The payment-failures automation: payments -> window alerts, repeat tickets, daily rates."""

from moltbot.registry import Automation

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
)

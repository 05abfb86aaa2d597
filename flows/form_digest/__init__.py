"""The form-digest automation: new Google Forms answers -> a digest in Notion, chat and outbox."""

from moltbot.registry import Automation

ENTRY = Automation(
    name="form-digest",
    flow_ref="flows.form_digest.flow:form_digest",
    description="New Google Form answers in a sheet -> a digest in Notion, chat and outbox.",
    default_schedule="0 * * * *",
    # Every digest must run, one after the other, so a run beyond the limit queues: the
    # watermark makes a queued run find the answers already digested instead of redoing them.
    collision_strategy="ENQUEUE",
    default_routes={"info": ("outbox",)},
    shadow_ref="flows.form_digest.shadow:replay",
)

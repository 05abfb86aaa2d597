"""The on-call flow: deliver the digests of held messages, then the due escalation steps."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect import flow
from prefect.logging import get_run_logger

from flows.on_call import ENTRY
from flows.shared.runs import AUTOMATION_FLOW
from moltbot.config.alerting import load_escalation
from moltbot.config.settings import get_settings
from moltbot.effects.escalation import plan_steps
from moltbot.effects.executors import message_intent
from moltbot.effects.quiet import plan_digests
from moltbot.effects.report import RunReport, finish_run
from moltbot.errors import InputError
from moltbot.runlabels import flow_run_namer, label_current_run
from tasks.artifacts import publish_markdown
from tasks.effects import channel_destinations, delivery_rows, perform_effects
from tasks.on_call import load_due_escalations, load_held, record_steps, release_held

AUTOMATION = ENTRY.name
ARTIFACT_KEY = "on-call"


class OnCallResult(RunReport):
    """An on-call run: the digests of held messages and the escalation steps it took."""

    now: str
    digests: list[dict[str, Any]]
    released: int
    escalations: list[dict[str, Any]]


@flow(
    name=AUTOMATION,
    flow_run_name=flow_run_namer(AUTOMATION),
    log_prints=False,
    **AUTOMATION_FLOW,
)
def on_call(now: datetime | None = None, dry_run: bool = False) -> dict[str, Any]:
    """Deliver what quiet hours held, and escalate urgent alerts nobody acknowledged.

    Order of effects, and why a crash neither loses nor repeats a message:

    1. Read the held messages whose quiet hours ended, and the open escalations whose next
       step is due (`[escalation]` in moltbot.toml; none without it).
    2. Plan one digest per route and end of quiet hours (its key names the route, the end and
       its members), and each escalation's next step (keyed by the alert and the step number).
    3. Deliver them through the effects layer, never held or escalated themselves.
    4. Only then record the digests' members done (one transaction) and each escalation's
       step (the next one due in N minutes while links are left). A crash between 3 and 4
       re-runs into step 3's `already_done` and records then; recording first could lose a
       message. A digest or step that failed leaves its rows as they were: the next run tries
       the same key again.
    5. Publish a summary on the run page.

    Args:
        now: the moment to act as of (default: now); for replays and tests.
        dry_run: show what would go out; send and record nothing.

    Returns:
        The `OnCallResult` as JSON: the digests, how many held messages they released, and
        the escalation steps.
    """
    label_current_run(AUTOMATION, dry_run=dry_run)
    logger = get_run_logger()
    settings = get_settings()
    if now is not None and now.tzinfo is None:
        raise InputError("now: give a timezone (e.g. 2026-12-04T08:00:00+09:00)")
    now = (now or datetime.now(UTC)).astimezone(UTC)
    escalation = load_escalation()

    held = load_held(now)
    digests = plan_digests(held, locale=settings.locale, timezone=settings.timezone)
    due, links = load_due_escalations(now, escalation, settings.locale) if escalation else ([], {})
    steps = (
        plan_steps(due, escalation, locale=settings.locale, ack_links=links) if escalation else []
    )
    logger.info(
        "%d held message(s) in %d digest(s); %d escalation step(s) due",
        len(held),
        len(digests),
        len(steps),
    )

    digest_intents = [message_intent(digest.message, digest.route) for digest in digests]
    intents = [*digest_intents, *(step.intent for step in steps)]
    destinations = channel_destinations({link for i in intents for link in i.route.links})
    outcomes = perform_effects(intents, destinations, dry_run=dry_run, quiet_and_escalation=False)
    digest_outcomes, step_outcomes = outcomes[: len(digests)], outcomes[len(digests) :]

    released = 0
    digest_rows = []
    for digest, intent, outcome in zip(digests, digest_intents, digest_outcomes, strict=True):
        if not dry_run and outcome.status in ("done", "already_done") and outcome.via:
            released += release_held(list(digest.members), digest_key=intent.key, via=outcome.via)
        digest_rows.append(
            {
                "route": digest.route.describe(),
                "messages": len(digest.members),
                "status": outcome.status,
                "via": outcome.via,
            }
        )
    step_rows = (
        record_steps(steps, step_outcomes, config=escalation, now=now)
        if escalation and steps and not dry_run
        else []
    )

    report = OnCallResult(
        now=now.isoformat(),
        dry_run=dry_run,
        deliveries=delivery_rows(intents, outcomes),
        digests=digest_rows,
        released=released,
        escalations=step_rows,
    )
    if intents:
        publish_markdown(None if dry_run else ARTIFACT_KEY, _summary(report), "on-call")
    return finish_run(report)


def _summary(report: OnCallResult) -> str:
    lines = [f"# on-call {report.now}", ""]
    for row in report.digests:
        lines.append(
            f"- digest of {row['messages']} held message(s) on {row['route']}: "
            f"{row['status']}" + (f" via {row['via']}" if row["via"] else "")
        )
    for row in report.escalations:
        lines.append(
            f"- escalation step {row['step']} of `{row['key']}`: {row['status']}"
            + (f" via {row['via']}" if row["via"] else "")
        )
    return "\n".join(lines) + "\n"

"""The reconcile automation: what should have produced an effect vs the effects recorded."""

from moltbot.registry import Automation
from moltbot.rules import Rule, Words, run_summary_rule

RULES: tuple[Rule, ...] = (
    Rule(
        "reconcile.omissions",
        condition=Words(
            "new omissions: something should have produced an effect and the ledger has none",
            "새 누락: 작업이 있어야 하는데 원장에 기록이 없음",
        ),
        dedup=Words(
            "reconcile:omissions:<digest of the omission ids>, per route",
            "reconcile:omissions:<누락 id의 다이제스트>, 경로마다",
        ),
        route="omission",
        severities=("warning",),
        templates=("title.txt.j2", "slack.mrkdwn.j2", "alert.md.j2"),
    ),
    run_summary_rule("reconcile"),
)
"""Which condition produces which effect (`moltbot policy` lists them)."""

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
    rules=RULES,
)

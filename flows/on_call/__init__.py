"""The on-call automation: digests of held messages, and escalation of unacknowledged alerts."""

from moltbot.registry import Automation
from moltbot.rules import Rule, Words

RULES: tuple[Rule, ...] = (
    Rule(
        "on-call.quiet-digest",
        condition=Words(
            "quiet hours of a route ended and messages were held during them",
            "경로의 방해 금지 시간이 끝났고 그동안 보류된 메시지가 있음",
        ),
        dedup=Words(
            "on-call:digest:<route>:<end of quiet hours>:<digest of the held keys>",
            "on-call:digest:<경로>:<방해 금지 시간 종료>:<보류된 키의 다이제스트>",
        ),
        severities=("info", "warning"),
        templates=("digest_title.txt.j2", "digest.md.j2"),
        template_package="moltbot.effects",
    ),
)
"""Which condition produces which effect (`moltbot policy` lists them)."""

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
    rules=RULES,
)

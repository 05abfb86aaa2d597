"""The health automation: `moltbot doctor`'s checks every 5 minutes, ops told when they change."""

from moltbot.registry import Automation
from moltbot.rules import Rule, Words
from moltbot.templating import ALERT_TEMPLATES

RULES: tuple[Rule, ...] = (
    Rule(
        "health.changed",
        condition=Words(
            "a doctor check's status changed since the last run (became a warning or failed, or "
            "is ok again); the same result again sends nothing",
            "지난 실행 이후 doctor 점검의 상태가 바뀜 (경고나 실패가 되었거나 다시 정상); 같은 "
            "결과는 보내지 않음",
        ),
        dedup=Words(
            "health:<digest of each changed check, its status before and after, and since when>",
            "health:<바뀐 점검마다 이전·이후 상태와 이전 상태의 시작 시각의 다이제스트>",
        ),
        route="changed",
        severities=("info", "warning", "critical"),
        templates=ALERT_TEMPLATES,
        ops_fallback=True,
    ),
)
"""Which condition produces which effect (`moltbot policy` lists them)."""

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
    rules=RULES,
)

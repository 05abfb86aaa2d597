"""The error-spike automation: error lines per window (logs or a table) -> spike and clear."""

from moltbot.registry import Automation, RequiredChoice
from moltbot.rules import Rule, Words, run_summary_rule
from moltbot.templating import ALERT_TEMPLATES as STANDARD_ALERT_TEMPLATES

# Every alert renders the standard set, its items as signature lines.
ALERT_TEMPLATES = tuple(
    name.replace("slack_items", "slack_signatures") for name in STANDARD_ALERT_TEMPLATES
)

RULES: tuple[Rule, ...] = (
    Rule(
        "error-spike.spike",
        condition=Words(
            "a source's error lines in a window reach max(min_count, factor x baseline)",
            "한 소스의 구간 오류 줄 수가 max(min_count, factor x 기준값)에 도달",
        ),
        dedup=Words(
            "error-spike:<source>:spike:<spike start>, per route",
            "error-spike:<소스>:spike:<급증 시작 시각>, 경로마다",
        ),
        route="spike",
        severities=("critical",),
        templates=ALERT_TEMPLATES,
    ),
    Rule(
        "error-spike.cleared",
        condition=Words(
            "a spiking source's windows are back under the threshold",
            "급증한 소스의 구간이 기준 아래로 돌아옴",
        ),
        dedup=Words(
            "error-spike:<source>:cleared:<spike start>, per route",
            "error-spike:<소스>:cleared:<급증 시작 시각>, 경로마다",
        ),
        route="cleared",
        severities=("info",),
        templates=ALERT_TEMPLATES,
    ),
    run_summary_rule("error-spike"),
)
"""Which condition produces which effect (`moltbot policy` lists them)."""

ENTRY = Automation(
    name="error-spike",
    flow_ref="flows.error_spike.flow:error_spike",
    description="Error lines per window (log files or a table) -> alert on a spike, then its end.",
    default_schedule="*/5 * * * *",
    # Two counts of the same files at once would race for the same offsets: the newcomer is
    # cancelled (the next tick reads on from where this one stops).
    collision_strategy="CANCEL_NEW",
    default_routes={"spike": ("outbox",), "cleared": ("outbox",)},
    required_choices=(RequiredChoice("log sources", (("sources",),)),),
    rules=RULES,
)

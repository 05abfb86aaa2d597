"""The metrics-weekly automation: the week's per-automation metrics page, as an artifact."""

from moltbot.registry import Automation
from moltbot.rules import Rule, Words

RULES: tuple[Rule, ...] = (
    Rule(
        "metrics-weekly.page",
        condition=Words(
            "every run: the period's per-automation metrics with charts, as the next version of "
            "the `metrics-weekly` artifact",
            "매 실행: 기간의 자동화별 지표와 차트를 `metrics-weekly` 아티팩트의 새 버전으로",
        ),
        dedup=Words("one per run (a Prefect artifact)", "실행마다 하나 (Prefect 아티팩트)"),
        kind="artifact",
        templates=("page.md.j2", "page.html.j2", "summary.txt.j2"),
        # The page is `moltbot metrics --html`'s too: it lives with the runtime.
        template_package="moltbot.metrics_page",
    ),
)
"""Which condition produces which effect (`moltbot policy` lists them)."""

ENTRY = Automation(
    name="metrics-weekly",
    flow_ref="flows.metrics_weekly.flow:metrics_weekly",
    description="Run history, ledger and audit trail -> a weekly page of per-automation metrics "
    "with charts (runs, success rate, durations, effects, omissions, hours saved).",
    # Monday 09:00 (in the deployment's timezone, Asia/Seoul by default): the week just ended,
    # ready when the team starts the week.
    default_schedule="0 9 * * 1",
    # Two pages at once would only publish the same figures twice.
    collision_strategy="CANCEL_NEW",
    rules=RULES,
)

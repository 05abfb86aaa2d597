"""The inventory-alert automation: stock levels -> state transitions -> alerts by severity."""

from moltbot.registry import Automation, RequiredChoice
from moltbot.rules import Rule, Words, run_summary_rule
from moltbot.templating import ALERT_TEMPLATES

RULES: tuple[Rule, ...] = (
    Rule(
        "inventory-alert.out-of-stock",
        condition=Words(
            "an item's stock changed to out (none left)",
            "품목 재고가 품절(0)로 바뀜",
        ),
        dedup=Words(
            "inventory-alert:out:<digest of the items and their states>, per route",
            "inventory-alert:out:<품목과 상태의 다이제스트>, 경로마다",
        ),
        route="out",
        severities=("critical",),
        templates=ALERT_TEMPLATES,
    ),
    Rule(
        "inventory-alert.low-stock",
        condition=Words(
            "an item's stock changed to low (at or below its reorder point)",
            "품목 재고가 부족(재주문점 이하)으로 바뀜",
        ),
        dedup=Words(
            "inventory-alert:low:<digest of the items and their states>, per route",
            "inventory-alert:low:<품목과 상태의 다이제스트>, 경로마다",
        ),
        route="low",
        severities=("warning",),
        templates=ALERT_TEMPLATES,
    ),
    Rule(
        "inventory-alert.recovered",
        condition=Words(
            "a low or out item is back in stock",
            "부족하거나 품절된 품목의 재고가 돌아옴",
        ),
        dedup=Words(
            "inventory-alert:recovered:<digest of the items and their states>, per route",
            "inventory-alert:recovered:<품목과 상태의 다이제스트>, 경로마다",
        ),
        route="recovered",
        severities=("info",),
        templates=ALERT_TEMPLATES,
    ),
    Rule(
        "inventory-alert.reminder",
        condition=Words(
            "an item is still out of stock a whole cooldown (cooldown_hours) after the last alert",
            "마지막 알림 후 대기 시간(cooldown_hours)이 지나도 여전히 품절",
        ),
        dedup=Words(
            "inventory-alert:reminder:<digest of the items and their periods>, per route",
            "inventory-alert:reminder:<품목과 기간의 다이제스트>, 경로마다",
        ),
        route="reminder",
        severities=("critical",),
        templates=ALERT_TEMPLATES,
    ),
    run_summary_rule("inventory-alert"),
)
"""Which condition produces which effect (`moltbot policy` lists them)."""

ENTRY = Automation(
    name="inventory-alert",
    flow_ref="flows.inventory_alert.flow:inventory_alert",
    description="Stock levels -> only changed states (low, out, back) -> alerts by severity.",
    default_schedule="*/30 * * * *",
    # A stock check that starts while the previous one still runs would compare against states
    # the other is about to save, so the newcomer is cancelled (the next tick checks again).
    collision_strategy="CANCEL_NEW",
    default_routes={
        "out": ("outbox",),
        "low": ("outbox",),
        "recovered": ("outbox",),
        "reminder": ("outbox",),
    },
    required_choices=(
        RequiredChoice(
            "a stock source", (("source",), ("sheets_block", "spreadsheet_id", "worksheet"))
        ),
    ),
    rules=RULES,
    shadow_ref="flows.inventory_alert.shadow:replay",
)

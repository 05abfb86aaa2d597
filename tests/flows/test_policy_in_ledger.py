"""A flow run records each effect's rule id and the policy version; `outbox show` tells them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.inventory_alert.flow import inventory_alert
from moltbot.cli import app
from moltbot.config.settings import get_settings
from moltbot.policy import build_document, current_version
from moltbot.registry import get_automation
from moltbot.state.ledger import Ledger

pytestmark = pytest.mark.slow

STOCK = """\
sku,name,on_hand,reorder_point,lead_time_days,daily_demand,location
S1,텀블러,0,5,3,1,창고
S2,머그컵,2,5,3,1,창고
S3,녹차,40,5,3,1,창고
"""


def test_an_inventory_run_records_the_rule_of_each_alert_and_the_policy_version(
    tmp_path: Path, prefect_api: str
) -> None:
    source = tmp_path / "stock.csv"
    source.write_text(STOCK, encoding="utf-8")

    inventory_alert(source=str(source))

    with Ledger(get_settings().resolved_ledger_url) as ledger:
        effects = ledger.effects(automation="inventory-alert")
    rules = {effect.key.split(":")[1]: effect.rule_id for effect in effects}
    assert rules == {"out": "inventory-alert.out-of-stock", "low": "inventory-alert.low-stock"}
    declared = {rule.id for rule in get_automation("inventory-alert").rules}
    assert set(rules.values()) <= declared
    version = build_document().version
    assert current_version() == version
    assert {effect.policy_version for effect in effects} == {version}

    shown = CliRunner().invoke(app, ["outbox", "show", effects[0].key])
    entry = json.loads(shown.stdout)
    assert shown.exit_code == 0
    assert (entry["rule_id"], entry["policy_version"]) == (effects[0].rule_id, version)

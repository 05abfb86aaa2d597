"""What `moltbot serve` says about each deployment's next run, computed without a server."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from deployments.serving import next_run_words
from deployments.specs import build_specs

SEOUL = ZoneInfo("Asia/Seoul")
READY = {
    "daily-report": {"parameters": {"source": "orders.csv"}},
    "inventory-alert": {"parameters": {"source": "stock.csv"}},
    "form-digest": {
        "parameters": {"sheets_block": "s", "spreadsheet_id": "x", "worksheet": "Form"}
    },
}


def test_next_runs_follow_each_schedule_in_its_timezone() -> None:
    specs = {spec.automation.name: spec for spec in build_specs(READY, version="test")}
    after = datetime(2026, 12, 3, 21, 10, tzinfo=SEOUL)

    assert next_run_words(specs["daily-report"], after) == "2026-12-04 09:00 KST"
    assert next_run_words(specs["inventory-alert"], after) == "2026-12-03 21:30 KST"
    assert next_run_words(specs["form-digest"], after) == "2026-12-03 22:00 KST"
    assert next_run_words(specs["ticket-creation"], after).startswith("no schedule: on demand")


def test_a_deployment_that_cannot_run_has_no_next_run() -> None:
    specs = {spec.automation.name: spec for spec in build_specs({}, version="test")}

    assert specs["inventory-alert"].paused
    assert specs["inventory-alert"].missing_parameters == (
        "a stock source: source, or sheets_block + spreadsheet_id + worksheet",
    )
    assert next_run_words(specs["inventory-alert"]) == "paused (see above)"

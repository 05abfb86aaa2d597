"""The one registry: each flow package's entry agrees with its flow, and the runtime stays lazy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from moltbot.registry import Automation, automation_names, automations, get_automation

ROOT = Path(__file__).resolve().parents[2]


def test_the_registry_order_is_the_documented_one() -> None:
    assert automation_names() == [
        "daily-report",
        "inventory-alert",
        "form-digest",
        "ticket-creation",
        "service-health",
        "error-spike",
        "payment-failures",
        "reconcile",
        "on-call",
        "health",
        "metrics-weekly",
    ]


@pytest.mark.parametrize("entry", automations(), ids=lambda entry: entry.name)
def test_the_flow_name_is_the_registry_name(entry: Automation) -> None:
    assert entry.load_flow().name == entry.name


@pytest.mark.parametrize("entry", automations(), ids=lambda entry: entry.name)
def test_each_entry_is_declared_by_its_own_flow_package(entry: Automation) -> None:
    package = entry.flow_ref.split(":")[0].rsplit(".", 1)[0]

    assert package == f"flows.{entry.name.replace('-', '_')}"
    assert get_automation(entry.name) is entry


def test_names_are_unique() -> None:
    names = automation_names()

    assert len(names) == len(set(names))


def test_the_runtime_imports_no_flow_module() -> None:
    # A fresh interpreter: this one has imported the flows already.
    script = (
        "import json, sys\n"
        "import moltbot.cli\n"
        "from moltbot.registry import automations\n"
        "automations()\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    modules = json.loads(done.stdout)

    assert "flows" in modules  # the entries were read...
    flow_modules = [
        name for name in modules if name.startswith("flows.") and name.endswith(".flow")
    ]
    assert flow_modules == []  # ...without importing a flow

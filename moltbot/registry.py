"""The one registry of automations: name, flow, description, default trigger and routes."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from moltbot.errors import InputError

if TYPE_CHECKING:
    from prefect import Flow


@dataclass(frozen=True)
class Automation:
    """One automation moltbot ships.

    Attributes:
        name: the CLI and deployment name (`daily-report`).
        flow_ref: `module:attribute` of its Prefect flow, imported only when needed.
        description: one line for `moltbot list` and the docs.
        default_schedule: cron expression of its default deployment schedule.
        default_channels: where its messages go when no channels are given.
        default_parameters: parameters its deployment passes unless the config says otherwise.
    """

    name: str
    flow_ref: str
    description: str
    default_schedule: str | None = None
    default_channels: tuple[str, ...] = field(default=("outbox",))
    default_parameters: dict[str, Any] = field(default_factory=dict)

    def load_flow(self) -> Flow:
        """Import and return the automation's flow (importing Prefect costs about a second)."""
        module_name, attribute = self.flow_ref.split(":")
        return getattr(importlib.import_module(module_name), attribute)

    def as_dict(self) -> dict[str, object]:
        """The entry as plain JSON types."""
        return {
            "name": self.name,
            "flow": self.flow_ref,
            "description": self.description,
            "default_schedule": self.default_schedule,
            "default_channels": list(self.default_channels),
            "default_parameters": dict(self.default_parameters),
        }


AUTOMATIONS: tuple[Automation, ...] = (
    Automation(
        name="daily-report",
        flow_ref="flows.daily_report.flow:daily_report",
        description="Sales/ops data -> daily KPIs -> chat, e-mail with a chart, outbox, artifact.",
        default_schedule="0 9 * * *",
    ),
    Automation(
        name="inventory-alert",
        flow_ref="flows.inventory_alert.flow:inventory_alert",
        description="Stock levels -> only changed states (low, out, back) -> alerts by severity.",
        default_schedule="*/30 * * * *",
    ),
    Automation(
        name="form-digest",
        flow_ref="flows.form_digest.flow:form_digest",
        description="New Google Form answers in a sheet -> a digest in Notion, chat and outbox.",
        default_schedule="0 * * * *",
    ),
    Automation(
        name="ticket-creation",
        flow_ref="flows.ticket_creation.flow:ticket_creation",
        description="Form answers and events -> Jira issues, never duplicated, optional review.",
        default_schedule=None,
    ),
)


def automation_names() -> list[str]:
    """Names of all automations, in registry order."""
    return [automation.name for automation in AUTOMATIONS]


def get_automation(name: str) -> Automation:
    """The automation called `name`.

    Raises:
        InputError: no such automation (the message lists the valid names).
    """
    for automation in AUTOMATIONS:
        if automation.name == name:
            return automation
    raise InputError(f"unknown automation {name!r} (choose from: {', '.join(automation_names())})")

"""The automation registry's shape and lookup; the entries are declared by the flow packages."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from moltbot.errors import InputError
from moltbot.rules import Rule

if TYPE_CHECKING:
    from prefect import Flow

CollisionStrategy = Literal["ENQUEUE", "CANCEL_NEW"]
"""What a run that starts while the concurrency limit is reached does: wait, or cancel itself."""

DeliveryPolicy = Literal["at_least_once", "at_most_once"]
"""What an effect whose outcome is unknown does: try again, or give up (dead-letter)."""


@dataclass(frozen=True)
class RequiredChoice:
    """Optional parameters of which one group must be given in full (a file source, or a sheet).

    Attributes:
        what: what the group gives, in words (`a stock source`).
        groups: the alternatives, each a tuple of parameter names given together.
        config_table: a moltbot.toml table (dotted, `monitoring.services`) that gives the same
            when it has at least one entry, for automations configured there.
    """

    what: str
    groups: tuple[tuple[str, ...], ...]
    config_table: str | None = None

    def satisfied_by(
        self, parameters: Mapping[str, Any], config: Mapping[str, Any] | None = None
    ) -> bool:
        """True when some group has every one of its parameters set (not None, not empty), or
        `config` (the parsed moltbot.toml) has entries in `config_table`."""
        if any(
            all(parameters.get(name) not in (None, "") for name in group) for group in self.groups
        ):
            return True
        if self.config_table is None or config is None:
            return False
        table: Any = config
        for key in self.config_table.split("."):
            table = table.get(key) if isinstance(table, Mapping) else None
        return isinstance(table, Mapping) and bool(table)

    def words(self) -> str:
        """`source, or sheets_block + spreadsheet_id + worksheet`."""
        words = ", or ".join(" + ".join(group) for group in self.groups)
        if self.config_table:
            words += f" (or [{self.config_table}.<name>] tables in moltbot.toml)"
        return words


@dataclass(frozen=True)
class Automation:
    """One automation moltbot ships: its entry in the one registry.

    Attributes:
        name: the CLI and deployment name (`daily-report`); its `@flow(name=...)` is the same.
        flow_ref: `module:attribute` of its Prefect flow, imported only when needed.
        description: one line for `moltbot list` and the docs.
        default_schedule: cron expression of its default deployment schedule.
        default_parameters: parameters its deployment passes unless the config says otherwise.
        concurrency_limit: how many runs of its deployment may run at once.
        collision_strategy: what a run beyond `concurrency_limit` does (queue or cancel itself).
        default_routes: severity -> ordered channel chain (first choice first) of its messages.
        delivery_policy: what an effect whose outcome is unknown does.
        webhook_routes: webhook event type -> parameters of the run of its default deployment
            that the gateway starts for such an event, unless the `[webhooks]` config says
            otherwise.
        required_choices: groups of optional parameters of which one must be given (the flow's
            signature cannot say "this or that"); a deployment without one is created paused.
        rules: which condition produces which effect (the policy document lists them; each
            effect records its rule's id in the ledger).
        review_parameter: the flow parameter that makes a person review effects before they
            happen (None: the automation has no review mode).
        shadow_ref: `module:attribute` of its replay function for `moltbot shadow` (see
            `moltbot.shadow.Replayer`), when its real runs record their inputs.
    """

    name: str
    flow_ref: str
    description: str
    default_schedule: str | None = None
    default_parameters: dict[str, Any] = field(default_factory=dict)
    concurrency_limit: int = 1
    collision_strategy: CollisionStrategy = "ENQUEUE"
    default_routes: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: {"info": ("outbox",)}
    )
    delivery_policy: DeliveryPolicy = "at_least_once"
    webhook_routes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    required_choices: tuple[RequiredChoice, ...] = ()
    rules: tuple[Rule, ...] = ()
    review_parameter: str | None = None
    shadow_ref: str | None = None

    def rule(self, name: str) -> str:
        """The id of this automation's rule `name` (`out-of-stock` -> `inventory-alert.out-of-
        stock`), so a flow can only record a rule it declares.

        Raises:
            KeyError: no such rule is declared.
        """
        rule_id = f"{self.name}.{name}"
        if rule_id not in {rule.id for rule in self.rules}:
            raise KeyError(f"{self.name} declares no rule {rule_id!r}")
        return rule_id

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
            "default_parameters": dict(self.default_parameters),
            "concurrency_limit": self.concurrency_limit,
            "collision_strategy": self.collision_strategy,
            "default_routes": {
                severity: list(chain) for severity, chain in self.default_routes.items()
            },
            "delivery_policy": self.delivery_policy,
            "webhook_routes": {
                event_type: dict(parameters)
                for event_type, parameters in self.webhook_routes.items()
            },
            "required_choices": [
                {
                    "what": choice.what,
                    "groups": [list(group) for group in choice.groups],
                    "config_table": choice.config_table,
                }
                for choice in self.required_choices
            ],
        }


def automations() -> tuple[Automation, ...]:
    """Every automation, in registry order, as `flows/__init__.py` collects them.

    `flows` is imported on the first call, not when this module is: the runtime has no static
    import of the automations, and their flow modules (and Prefect) stay unimported.
    """
    return importlib.import_module("flows").AUTOMATIONS


def automation_names() -> list[str]:
    """Names of all automations, in registry order."""
    return [automation.name for automation in automations()]


def get_automation(name: str) -> Automation:
    """The automation called `name`.

    Raises:
        InputError: no such automation (the message lists the valid names).
    """
    for automation in automations():
        if automation.name == name:
            return automation
    raise InputError(f"unknown automation {name!r} (choose from: {', '.join(automation_names())})")

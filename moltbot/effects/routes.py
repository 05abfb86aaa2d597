"""Routes of messages: `[routes]` in moltbot.toml, a `channels` parameter, or the defaults."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, get_args

from moltbot.config.project import ProjectConfig
from moltbot.effects.model import DeliveryPolicy, Route
from moltbot.errors import InputError

POLICIES: tuple[str, ...] = get_args(DeliveryPolicy)

RouteSpec = str | Sequence[str]
"""How a parameter names a route: one channel, or an ordered chain of channels."""


@dataclass(frozen=True)
class RoutesConfig:
    """The `[routes]` table: per automation, per severity, a chain of channels and a policy.

    ```toml
    [routes.inventory-alert]
    out = ["team-slack", "ops-email", "oncall-sms"]
    low = { channels = ["team-slack"], policy = "at_most_once" }
    policy = "at_least_once"          # the automation's default for its severities
    ```

    Attributes:
        routes: automation -> severity -> route.
        policies: automation -> its default policy, where the file sets one.
    """

    routes: dict[str, dict[str, Route]] = field(default_factory=dict)
    policies: dict[str, DeliveryPolicy] = field(default_factory=dict)

    @classmethod
    def load(
        cls, config: ProjectConfig | None = None, *, automations: Sequence[str] | None = None
    ) -> RoutesConfig:
        """Read and check `[routes]`; `automations` are the names it may mention.

        Raises:
            InputError: a malformed entry, naming the file's line.
        """
        config = config or ProjectConfig.load()
        table = config.table("routes") or {}
        routes: dict[str, dict[str, Route]] = {}
        policies: dict[str, DeliveryPolicy] = {}
        for automation, entries in table.items():
            where = config.where("routes", automation)
            if automations is not None and automation not in automations:
                raise InputError(
                    f"{where}: [routes.{automation}]: no such automation "
                    f"(choose from: {', '.join(automations)})"
                )
            if not isinstance(entries, dict):
                raise InputError(f"{where}: [routes.{automation}] must be a table of severities")
            default = entries.get("policy", None)
            if default is not None:
                policies[automation] = _policy(
                    default, config.where("routes", automation, "policy")
                )
            chosen: dict[str, Route] = {}
            for severity, value in entries.items():
                if severity == "policy":
                    continue
                at = config.where("routes", automation, severity)
                chosen[severity] = _route(value, default or "at_least_once", at, severity)
            routes[automation] = chosen
        return cls(routes, policies)

    def policy_for(self, automation: str, fallback: DeliveryPolicy) -> DeliveryPolicy:
        """The automation's policy from the file, else `fallback`."""
        return self.policies.get(automation, fallback)


def _policy(value: Any, where: str) -> DeliveryPolicy:
    if value not in POLICIES:
        raise InputError(f"{where}: policy must be one of {', '.join(POLICIES)}, got {value!r}")
    return value  # type: ignore[no-any-return]


def _links(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(link, str) and link.strip() for link in value)
    ):
        raise InputError(f"{where}: a route is a non-empty list of channel names")
    if len(set(value)) != len(value):
        raise InputError(f"{where}: a route lists a channel twice")
    return tuple(value)


def _route(value: Any, default_policy: str, where: str, severity: str) -> Route:
    if isinstance(value, dict):
        unknown = sorted(set(value) - {"channels", "policy"})
        if unknown:
            raise InputError(f"{where}: unknown key {', '.join(unknown)} (use channels, policy)")
        if "channels" not in value:
            raise InputError(f"{where}: route {severity!r} needs channels")
        policy = _policy(value.get("policy", default_policy), where)
        return Route(_links(value["channels"], where), policy)
    return Route(_links(value, where), _policy(default_policy, where))


def routes_from_parameter(
    given: Sequence[RouteSpec], policy: DeliveryPolicy, *, name: str = "channels"
) -> list[Route]:
    """Routes from a flow parameter: each item one channel, or a list (a fallback chain).

    Raises:
        InputError: an empty list, a bad item, or two routes starting at the same channel.
    """
    if not given:
        raise InputError(f"{name}: no channels given (use 'outbox' for local files)")
    routes = [
        Route(_links(list(item) if not isinstance(item, str) else item, name), policy)
        for item in given
    ]
    return checked_fan_out(routes, name)


def checked_fan_out(routes: list[Route], name: str) -> list[Route]:
    """Refuse two routes that start at the same channel (their ledger keys would collide)."""
    firsts = [route.name for route in routes]
    repeated = sorted({first for first in firsts if firsts.count(first) > 1})
    if repeated:
        raise InputError(f"{name}: a channel is listed twice: {', '.join(repeated)}")
    return routes


def resolve_routes(
    automation: str,
    severity: str,
    given: Sequence[RouteSpec] | None,
    *,
    config: RoutesConfig,
    defaults: Mapping[str, Sequence[str]],
    default_policy: DeliveryPolicy,
    name: str = "channels",
) -> list[Route]:
    """Where a message of `automation` with `severity` goes: the parameter's routes, else the
    `[routes]` entry, else the automation's default chain (empty when it has none)."""
    policy = config.policy_for(automation, default_policy)
    if given is not None:
        return routes_from_parameter(given, policy, name=name)
    configured = config.routes.get(automation, {}).get(severity)
    if configured is not None:
        return [configured]
    chain = defaults.get(severity)
    return [Route(tuple(chain), policy)] if chain else []

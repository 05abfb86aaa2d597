"""The one task every automation hands its intended effects to, and reads the ledger through."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger
from prefect.runtime import flow_run
from prefect.utilities.annotations import quote

from moltbot.effects import SETTLED, Executor, Intent, Outcome, Route, perform
from moltbot.effects.channels import OUTBOX, channel_executors
from moltbot.effects.executors import message_intent
from moltbot.effects.perform import preview
from moltbot.effects.preview import preview_lines
from moltbot.effects.routes import RoutesConfig, RouteSpec, resolve_routes
from moltbot.effects.runtime import runtime_from_settings
from moltbot.errors import InputError
from moltbot.messages import Message
from moltbot.registry import Automation
from moltbot.state.ledger import EffectStatus, Ledger


@task(name="perform-effects", cache_policy=NO_CACHE)
def _perform_effects(
    intents: list[Intent],
    destinations: Mapping[str, Executor],
    force: bool,
    dry_run: bool,
    quiet_and_escalation: bool = True,
) -> list[Outcome]:
    logger = get_run_logger()
    if dry_run:
        outcomes = preview(intents, destinations)
        _show_previews(outcomes)
    else:
        with Ledger.from_settings() as ledger:
            runtime = runtime_from_settings(
                ledger,
                destinations,
                flow_run_id=flow_run.get_id(),
                quiet_and_escalation=quiet_and_escalation,
            )
            outcomes = perform(intents, runtime, force=force)
    for outcome in outcomes:
        line = f"{outcome.kind} {outcome.label or outcome.key}: {outcome.status}"
        if outcome.via:
            line += f" via {outcome.via}"
        if outcome.tried:
            line += f" (after {', '.join(t.link for t in outcome.tried)} failed)"
        if not outcome.settled:
            logger.error("%s: %s", line, outcome.error)
        else:
            logger.info("%s", line)
    return outcomes


def _show_previews(outcomes: Sequence[Outcome]) -> None:
    """Log each destination's preview (masked already) and put them all on the run page."""
    shown = [outcome for outcome in outcomes if outcome.preview is not None]
    if not shown:
        return
    logger = get_run_logger()
    for outcome in shown:
        logger.info("Dry run, would go out:\n%s", "\n".join(preview_lines([outcome])))
    # Key None: on this run's page only, never the latest version of an artifact people follow.
    text = "\n".join(preview_lines(shown))
    create_markdown_artifact(
        markdown=f"~~~text\n{text}\n~~~", key=None, description="Dry run: what would go out"
    )


def perform_effects(
    intents: Sequence[Intent],
    destinations: Mapping[str, Executor],
    *,
    force: bool = False,
    dry_run: bool = False,
    quiet_and_escalation: bool = True,
) -> list[Outcome]:
    """Perform `intents` through the effects layer, in one Prefect task run.

    Args:
        intents: what the automation wants done, each with its idempotency key and route.
        destinations: an executor for every link of every route (see `channel_destinations`).
        force: perform even what the ledger records as done.
        dry_run: claim, apply and record nothing; every outcome is `dry_run`, with a
            preview of what its route's first destination would receive (logged, and shown
            on the run page as a markdown artifact).
        quiet_and_escalation: messages follow `[quiet_hours]` and `[escalation]` (off only
            for the on-call automation's digests and steps, which those rules produce).

    Returns:
        One outcome per intent, in order.
    """
    if not intents:
        return []
    # quote: Prefect would otherwise walk every message and attachment looking for futures.
    return _perform_effects(
        quote(list(intents)), quote(dict(destinations)), force, dry_run, quiet_and_escalation
    )


@task(name="load-channels", cache_policy=NO_CACHE)
def channel_destinations(names: Iterable[str]) -> dict[str, Executor]:
    """Load each named channel block once (`outbox` needs none) as a destination.

    Raises:
        InputError: a name that is neither `outbox` nor a saved channel block.
    """
    return dict(channel_executors(names))


def route_destinations(names: Iterable[str]) -> dict[str, Executor]:
    """`channel_destinations` of `names`, in a task run only when a block is to be loaded.

    The outbox alone (the default route) loads nothing: a `load-channels` task run would only
    cost the run its Prefect round trips and events.

    Raises:
        InputError: a name that is neither `outbox` nor a saved channel block.
    """
    wanted = list(dict.fromkeys(names))
    if all(name == OUTBOX for name in wanted):
        return dict(channel_executors(wanted))
    return channel_destinations(wanted)


@dataclass(frozen=True)
class EffectState:
    """What the ledger says about one key, read before planning (no claim)."""

    status: str
    kind: str
    remote_id: str | None
    held: bool


@task(name="read-effects", cache_policy=NO_CACHE)
def read_effects(keys: list[str]) -> dict[str, EffectState]:
    """The ledger's rows for `keys` (absent keys are left out); `held` is a pending claim whose
    holder is alive and whose lease has not run out."""
    from datetime import UTC, datetime

    from moltbot.effects.holders import holder_is_dead

    now = datetime.now(UTC)
    states: dict[str, EffectState] = {}
    with Ledger.from_settings() as ledger:
        for key in dict.fromkeys(keys):
            effect = ledger.get(key)
            if effect is None:
                continue
            held = ledger.is_held(effect, now, holder_is_dead)
            states[key] = EffectState(effect.status.value, effect.kind, effect.remote_id, held)
    return states


@task(name="count-done-effects", cache_policy=NO_CACHE)
def count_done(automation: str, prefixes: list[str]) -> dict[str, int]:
    """How many done effects of `automation` have keys starting with each prefix."""
    counts = dict.fromkeys(prefixes, 0)
    with Ledger.from_settings() as ledger:
        for prefix in counts:
            counts[prefix] = len(
                ledger.effects(automation=automation, status=EffectStatus.DONE, key_prefix=prefix)
            )
    return counts


def message_intents(message: Message, routes: Sequence[Route]) -> list[Intent]:
    """One intent per route for `message` (see `message_intent`)."""
    return [message_intent(message, route) for route in routes]


def delivery_rows(intents: Sequence[Intent], outcomes: Sequence[Outcome]) -> list[dict[str, Any]]:
    """The run result's rows of message outcomes: the route's channel, then the outcome."""
    return [
        {"channel": intent.route.name, **outcome.model_dump(mode="json", exclude={"label"})}
        for intent, outcome in zip(intents, outcomes, strict=True)
    ]


def deliver(
    message: Message,
    routes: Sequence[Route],
    destinations: Mapping[str, Executor],
    *,
    force: bool = False,
    dry_run: bool = False,
) -> list[dict[str, Any]]:
    """Deliver `message` on each route through the effects layer; the result rows."""
    intents = message_intents(message, routes)
    return delivery_rows(
        intents, perform_effects(intents, destinations, force=force, dry_run=dry_run)
    )


def deliver_by_severity(
    messages: Mapping[str, Message],
    routes: Mapping[str, Sequence[Route]],
    destinations: Mapping[str, Executor],
    *,
    dry_run: bool = False,
) -> tuple[list[dict[str, Any]], set[str]]:
    """Deliver each severity's message on that severity's routes.

    Returns:
        The result rows (each with its `severity`), and the severities whose every delivery
        is settled (done or already done): the ones whose state a flow may now save.
    """
    # Every severity's intents go to the effects layer at once (one task run, one ledger and
    # runtime, one ops announcement), then the outcomes are told apart again by severity.
    planned = [
        (severity, message_intents(message, routes[severity]))
        for severity, message in messages.items()
    ]
    intents = [intent for _, of_severity in planned for intent in of_severity]
    outcomes = iter(perform_effects(intents, destinations, dry_run=dry_run))
    deliveries: list[dict[str, Any]] = []
    delivered: set[str] = set()
    for severity, of_severity in planned:
        rows = delivery_rows(of_severity, [next(outcomes) for _ in of_severity])
        deliveries.extend({"severity": severity, **row} for row in rows)
        if not unsettled(rows):
            delivered.add(severity)
    return deliveries, delivered


def unsettled(rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The outcome rows whose effect is not done (failed, dead, in doubt, held)."""
    return [row for row in rows if row["status"] not in SETTLED]


def routes_by_severity(
    automation: Automation,
    channels_by_severity: Mapping[str, Any],
    severities: Sequence[str],
) -> dict[str, list[Route]]:
    """The routes of each severity a `channels_by_severity` parameter names (an empty list
    silences that severity); severities it leaves out are not in the result.

    Raises:
        InputError: not a mapping, an unknown severity, or a value that is not a list of routes.
    """
    if not isinstance(channels_by_severity, Mapping):
        raise InputError("channels_by_severity must map severities to lists of channel names")
    unknown = sorted(set(channels_by_severity) - set(severities))
    if unknown:
        raise InputError(
            f"channels_by_severity: unknown severity {', '.join(map(repr, unknown))} "
            f"(use {', '.join(severities)})"
        )
    given: dict[str, list[Route]] = {}
    for severity, specs in channels_by_severity.items():
        name = f"channels_by_severity[{severity!r}]"
        if not isinstance(specs, list):
            raise InputError(f"{name} must be a list of channel names")
        given[severity] = routes_for(automation, severity, specs, name=name) if specs else []
    return given


def routes_for(
    automation: Automation,
    severity: str,
    given: Sequence[RouteSpec] | None,
    *,
    name: str = "channels",
) -> list[Route]:
    """The routes of `automation`'s messages of `severity`: the `channels` parameter, else
    `[routes]` in moltbot.toml, else the registry's default chain.

    Raises:
        InputError: a malformed parameter or `[routes]` entry.
    """
    from moltbot.registry import automation_names

    config = RoutesConfig.load(automations=automation_names())
    return resolve_routes(
        automation.name,
        severity,
        given,
        config=config,
        defaults=automation.default_routes,
        default_policy=automation.delivery_policy,
        name=name,
    )

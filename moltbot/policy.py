"""The policy document: each automation's triggers, rules, routes, templates, and its version."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from moltbot.config.alerting import (
    EscalationConfig,
    QuietHoursConfig,
    load_escalation,
    load_quiet_hours,
    severity_rank,
)
from moltbot.config.project import ProjectConfig
from moltbot.config.settings import Settings, get_settings
from moltbot.effects.routes import RoutesConfig, resolve_routes
from moltbot.errors import InputError
from moltbot.masking import mask_text
from moltbot.registry import Automation, automations
from moltbot.rules import Rule, Words
from moltbot.templating import SUPPORTED_LOCALES, render_template

logger = logging.getLogger("moltbot.policy")

VERSION_CHARS = 12
"""Hex digits of the sha256 of the canonical JSON kept as the policy version."""
EXCERPT_CHARS = 160
REGENERATE = "uv run moltbot policy > docs/POLICY.md"
_TEMPLATES = Path(__file__).parent / "templates"


class Schedule(BaseModel):
    """When the automation's deployment runs by itself (None fields: not on a schedule)."""

    cron: str | None
    interval_seconds: float | None
    timezone: str
    enabled: bool
    paused: bool


class QuietHours(BaseModel):
    """The quiet hours on a rule's route: when, and which of its severities wait for the end."""

    start: str
    end: str
    timezone: str
    held: list[str]


class Escalation(BaseModel):
    """How a rule's urgent messages climb their route until acknowledged."""

    after_minutes: int
    severities: list[str]


class RuleEntry(BaseModel):
    """One rule as the document states it, with the configuration in force applied."""

    id: str
    kind: str
    condition: dict[str, str]
    severities: list[str]
    route: str | None
    chain: list[str] = Field(description="Channels tried in order (empty: not a message).")
    chain_from: str | None = Field(description="default, [routes] or a deployment parameter.")
    in_doubt: str | None
    quiet_hours: QuietHours | None
    escalation: Escalation | None
    dedup: dict[str, str]
    templates: list[str]
    excerpt: dict[str, str] = Field(description="Locale -> the first template's opening line.")


class AutomationEntry(BaseModel):
    """One automation in the document."""

    name: str
    description: str
    owner: str | None = Field(description="From [owners] (or its `default`); None: unassigned.")
    schedule: Schedule | None
    webhook_events: list[str]
    concurrency_limit: int
    collision_strategy: str
    delivery_policy: str
    review_parameter: str | None
    review_default: bool | None
    rules: list[RuleEntry]


class TicketMapping(BaseModel):
    """A `[ticket_creation.mappings.<name>]` entry: what becomes which Jira issue."""

    name: str
    source: str
    event_types: list[str]
    project: str
    issue_type: str | None = Field(description="A fixed issue type (None: a choice or unset).")
    issue_type_from: str | None = Field(description="The template a choice looks up.")
    priority: str | None
    priority_from: str | None
    dedup: str | None = Field(description="The recurrence key's template (None: the default).")


class PolicyDocument(BaseModel):
    """Everything `moltbot policy` states; its canonical JSON's hash is the policy version."""

    automations: list[AutomationEntry]
    ticket_mappings: list[TicketMapping]
    ops_channels: list[str]

    def canonical_json(self) -> str:
        """Sorted keys, no whitespace: the same document always gives the same text."""
        return json.dumps(
            self.model_dump(mode="json"), sort_keys=True, ensure_ascii=False, separators=(",", ":")
        )

    @property
    def version(self) -> str:
        """A short sha256 of the canonical JSON."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:VERSION_CHARS]

    def as_json(self) -> dict[str, Any]:
        """The document with its version, JSON-ready (`moltbot policy --format json`)."""
        return {"version": self.version, **self.model_dump(mode="json")}


def build_document(
    config: ProjectConfig | None = None,
    settings: Settings | None = None,
    registry: Sequence[Automation] | None = None,
) -> PolicyDocument:
    """The policy of `registry` (default: every automation) under `config` (default: the
    working directory's moltbot.toml) and `settings`: pure apart from reading templates.

    Raises:
        InputError: a malformed table of moltbot.toml (routes, quiet hours, escalation,
            deployments, owners), naming its line.
    """
    from deployments.specs import DeploymentSettings, parse_deployment_settings

    config = config or ProjectConfig.load()
    settings = settings or get_settings()
    registry = tuple(registry if registry is not None else automations())
    names = [automation.name for automation in registry]
    routes = RoutesConfig.load(config, automations=names)
    quiet = load_quiet_hours(config)
    escalation = load_escalation(config)
    deployments = parse_deployment_settings(config.table("deployments") or {}, config)
    owners = _owners(config)
    entries = []
    for automation in registry:
        deployment = deployments.get(automation.name, DeploymentSettings())
        parameters = {**automation.default_parameters, **deployment.parameters}
        context = _RuleContext(automation, routes, quiet, escalation, parameters, settings)
        review = automation.review_parameter
        entries.append(
            AutomationEntry(
                name=automation.name,
                description=automation.description,
                owner=owners.get(automation.name, owners.get("default")),
                schedule=_schedule(automation, deployment, settings),
                webhook_events=sorted(automation.webhook_routes),
                concurrency_limit=deployment.concurrency_limit or automation.concurrency_limit,
                collision_strategy=deployment.collision_strategy or automation.collision_strategy,
                delivery_policy=routes.policy_for(automation.name, automation.delivery_policy),
                review_parameter=review,
                review_default=bool(parameters.get(review, False)) if review else None,
                rules=[context.entry(rule) for rule in automation.rules],
            )
        )
    return PolicyDocument(
        automations=entries,
        ticket_mappings=_ticket_mappings(config),
        ops_channels=list(settings.ops_channels),
    )


def render_markdown(document: PolicyDocument, locale: str = "en") -> str:
    """The document as Markdown in `locale` (headings and words; excerpts in every locale).

    Deterministic: no timestamps, registry and rule order.
    """
    text = render_template(
        _TEMPLATES,
        locale,
        "policy.md.j2",
        doc=document,
        version=document.version,
        regenerate=REGENERATE,
        locales=SUPPORTED_LOCALES,
        schedule=lambda entry: _schedule_words(entry, locale),
    )
    return text.rstrip() + "\n"


_VERSIONS: dict[tuple[str | None, str, tuple[str, ...]], str | None] = {}


def current_version(settings: Settings | None = None) -> str | None:
    """The version of the policy in force in this process, computed once per configuration.

    None when moltbot.toml cannot be read as a policy (the run reports that problem itself;
    the effects it performs then record no version rather than not happening).
    """
    settings = settings or get_settings()
    config = ProjectConfig.load()
    # The file's text and the settings the document reads: a changed file (tests, a long-lived
    # `serve`) gets its own version, an unchanged one costs a dict lookup. Measured on the 2-core
    # dev machine with the shipped moltbot.toml: building it ~2-4 ms (~6 ms the first time in a
    # process), a cached call ~0.2 ms (reading the file).
    key = (
        config.path.read_text(encoding="utf-8") if config.found else None,
        settings.timezone,
        tuple(settings.ops_channels),
    )
    if key not in _VERSIONS:
        try:
            _VERSIONS[key] = build_document(config, settings).version
        except InputError as exc:
            logger.warning("no policy version recorded: %s", exc)
            _VERSIONS[key] = None
    return _VERSIONS[key]


class _RuleContext:
    """What a rule's entry depends on besides the rule: its automation and the config."""

    def __init__(
        self,
        automation: Automation,
        routes: RoutesConfig,
        quiet: QuietHoursConfig | None,
        escalation: EscalationConfig | None,
        parameters: Mapping[str, Any],
        settings: Settings,
    ) -> None:
        self.automation = automation
        self.routes = routes
        self.quiet = quiet
        self.escalation = escalation
        self.parameters = parameters
        self.settings = settings

    def entry(self, rule: Rule) -> RuleEntry:
        chain, chain_from, policy = self._chain(rule)
        return RuleEntry(
            id=rule.id,
            kind=rule.kind,
            condition=_both(rule.condition),
            severities=list(rule.severities),
            route=rule.route,
            chain=chain,
            chain_from=chain_from,
            in_doubt=policy,
            quiet_hours=self._quiet(rule, chain),
            escalation=self._escalation(rule, chain),
            dedup=_both(rule.dedup),
            templates=list(rule.templates),
            excerpt=_excerpts(self.automation, rule),
        )

    def _chain(self, rule: Rule) -> tuple[list[str], str | None, str | None]:
        if rule.kind != "message" or rule.route is None:
            # No route of its own (an on-call digest goes along its held messages' routes).
            return [], None, None
        name = self.automation.name
        given, chain_from = self._given(rule)
        if given is None:
            configured = rule.route in self.routes.routes.get(name, {})
            chain_from = "[routes]" if configured else "default"
        found = resolve_routes(
            name,
            rule.route,
            given,
            config=self.routes,
            defaults=self.automation.default_routes,
            default_policy=self.automation.delivery_policy,
        )
        if not found and rule.ops_fallback and self.settings.ops_channels:
            ops = " > ".join(self.settings.ops_channels)
            return [ops], "ops", self.automation.delivery_policy
        if not found:
            return [], chain_from, None
        # Several routes (a fan-out parameter) are listed one after the other, each its chain.
        return [" > ".join(route.links) for route in found], chain_from, found[0].policy

    def _given(self, rule: Rule) -> tuple[Any, str | None]:
        """The channels a deployment parameter names for `rule`, and which parameter."""
        by_severity = self.parameters.get("channels_by_severity")
        if isinstance(by_severity, Mapping) and rule.route in by_severity:
            return by_severity[rule.route], "channels_by_severity"
        if self.parameters.get("channels") is not None:
            return self.parameters["channels"], "channels"
        return None, None

    def _quiet(self, rule: Rule, chain: list[str]) -> QuietHours | None:
        if self.quiet is None or not chain:
            return None
        window = self.quiet.window_for(chain[0].split(" > ")[0], self.settings.timezone)
        if window is None:
            return None
        held = [s for s in rule.severities if severity_rank(s) < severity_rank(window.hold_below)]
        return QuietHours(
            start=window.start.strftime("%H:%M"),
            end=window.end.strftime("%H:%M"),
            timezone=window.timezone,
            held=held,
        )

    def _escalation(self, rule: Rule, chain: list[str]) -> Escalation | None:
        if self.escalation is None or not chain:
            return None
        severities = [s for s in rule.severities if s in self.escalation.severities]
        after = self.escalation.after_for(chain[0].split(" > ")[0])
        if not severities or after is None:
            return None
        return Escalation(after_minutes=after, severities=severities)


def _both(words: Words) -> dict[str, str]:
    return {locale: words.text(locale) for locale in SUPPORTED_LOCALES}


def template_folder(automation: Automation, rule: Rule) -> Path:
    """The `templates/` folder of `rule`: its `template_package`'s, else the automation's flow
    package's (found without importing the flow module)."""
    package = rule.template_package or automation.flow_ref.split(":")[0].rsplit(".", 1)[0]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"{rule.id}: no package {package!r}")
    return Path(next(iter(spec.submodule_search_locations))) / "templates"


def _excerpts(automation: Automation, rule: Rule) -> dict[str, str]:
    if not rule.templates:
        return {}
    folder = template_folder(automation, rule)
    return {
        locale: _opening_line((folder / locale / rule.templates[0]).read_text(encoding="utf-8"))
        for locale in SUPPORTED_LOCALES
    }


_MARKUP = re.compile(r"\{%.*?%\}|\{#.*?#\}|<[^>]*>")


def _opening_line(source: str) -> str:
    """The first line of a template that says something: not only Jinja tags, comments or
    HTML markup (an import, a doctype)."""
    for line in source.splitlines():
        if re.search(r"\w", _MARKUP.sub("", line)):
            return line.strip()[:EXCERPT_CHARS]
    return ""


def _schedule(automation: Automation, deployment: Any, settings: Settings) -> Schedule | None:
    """The deployment's schedule as `deployments.specs.build_specs` makes it."""
    cron = None if deployment.interval_seconds else deployment.cron or automation.default_schedule
    if cron is None and deployment.interval_seconds is None:
        return None
    return Schedule(
        cron=cron,
        interval_seconds=deployment.interval_seconds,
        timezone=deployment.timezone or settings.timezone,
        enabled=deployment.enabled,
        paused=bool(deployment.paused),
    )


def _schedule_words(entry: AutomationEntry, locale: str) -> str:
    from moltbot.describe import schedule_words

    schedule = entry.schedule
    if schedule is None:
        return schedule_words(None, "", locale)
    if schedule.interval_seconds is not None:
        seconds = f"{schedule.interval_seconds:g}"
        return f"{seconds}초마다" if locale == "ko" else f"every {seconds} s"
    return schedule_words(schedule.cron, schedule.timezone, locale)


def _owners(config: ProjectConfig) -> dict[str, str]:
    """`[owners]`: automation (or `default`) -> who answers for it, masked like any output."""
    table = config.table("owners") or {}
    owners = {}
    for name, owner in table.items():
        if not isinstance(owner, str) or not owner.strip():
            raise InputError(f"{config.where('owners', name)}: [owners] {name}: must be a name")
        owners[name] = mask_text(owner.strip())
    return owners


def _ticket_mappings(config: ProjectConfig) -> list[TicketMapping]:
    """The ticket mappings as the document states them (templates shown as written)."""
    table = config.table("ticket_creation", "mappings") or {}
    mappings = []
    for name, mapping in table.items():
        if not isinstance(mapping, Mapping):
            continue  # the flow refuses it with its line when it runs; nothing to state here
        mappings.append(
            TicketMapping(
                name=name,
                source=str(mapping.get("source", "")),
                event_types=[str(t) for t in mapping.get("event_types", [])],
                project=str(mapping.get("project", "")),
                issue_type=_fixed(mapping.get("issue_type")),
                issue_type_from=_choice_from(mapping.get("issue_type")),
                priority=_fixed(mapping.get("priority")),
                priority_from=_choice_from(mapping.get("priority")),
                dedup=str(mapping["dedup"]) if mapping.get("dedup") else None,
            )
        )
    return mappings


def _fixed(value: Any) -> str | None:
    return None if value is None or isinstance(value, Mapping) else str(value)


def _choice_from(value: Any) -> str | None:
    """The template a choice looks up (its table of values is in moltbot.toml)."""
    return str(value.get("from", "")) if isinstance(value, Mapping) else None


__all__ = [
    "REGENERATE",
    "PolicyDocument",
    "build_document",
    "current_version",
    "render_markdown",
    "template_folder",
]

"""Ticket mappings: how a form answer or an event becomes a Jira issue, read from moltbot.toml."""

from __future__ import annotations

import math
import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from moltbot import formatting
from moltbot.config.project import KeyPath, ProjectConfig
from moltbot.errors import InputError
from moltbot.masking import mask_text

MAPPINGS_TABLE = ("ticket_creation", "mappings")
SourceKind = Literal["form", "events"]
EmailRule = Literal["keep-domain", "mask", "keep"]
PhoneRule = Literal["mask", "keep"]
_EMAIL_RULES: tuple[str, ...] = ("keep-domain", "mask", "keep")
_PHONE_RULES: tuple[str, ...] = ("mask", "keep")
_CHOICE_KEYS = ("from", "map", "default")
_FIELDS = (
    "source",
    "event_types",
    "project",
    "issue_type",
    "summary",
    "description",
    "priority",
    "labels",
    "components",
    "assignee",
    "sla_hours",
    "timestamp_column",
    "dedup",
    "privacy",
)
_REQUIRED = ("source", "project", "issue_type", "summary")
_NAMES_SHOWN = 20
_RENDER_ERRORS = (
    jinja2.TemplateError,
    TypeError,
    ValueError,
    ArithmeticError,
    LookupError,
    AttributeError,
)


class NamedFields(dict):
    """A dict of answers or payload values that names itself when a template asks for a key
    it lacks ("the sheet has no column '제목' (it has: …)") instead of Jinja's "dict object"."""

    def __init__(self, values: Mapping[str, Any], label: str) -> None:
        super().__init__(values)
        # Underscored: `payload.label` must still reach a payload key called "label", and the
        # sandbox never lets a template read an underscored attribute.
        self._described_as = label


class _MissingValue(jinja2.StrictUndefined):
    """StrictUndefined whose message names the sheet column or payload key that is missing."""

    @property
    def _undefined_message(self) -> str:
        owner = self._undefined_obj
        if isinstance(owner, NamedFields) and self._undefined_name is not None:
            names = list(owner)[:_NAMES_SHOWN]
            more = ", …" if len(owner) > _NAMES_SHOWN else ""
            listed = ", ".join(map(repr, names)) + more if names else "nothing"
            return f"{owner._described_as} has no {self._undefined_name!r} (it has: {listed})"
        return super()._undefined_message


def _environment(locale: str) -> SandboxedEnvironment:
    # Sandboxed: mappings are configuration, and a template must not reach Python internals.
    environment = SandboxedEnvironment(
        undefined=_MissingValue,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    environment.filters["number"] = lambda value, decimals=0: formatting.format_number(
        value, locale, decimals
    )
    environment.filters["money"] = lambda value, currency="KRW": formatting.format_money(
        value, currency, locale
    )
    environment.filters["longdate"] = lambda value: formatting.format_date(value, locale)
    return environment


@dataclass(frozen=True)
class Template:
    """One Jinja2 template of a mapping, with where it is written (for error messages).

    Attributes:
        text: the template source.
        key: its key path in the config file (the mapping's table plus the field).
        field: the field's name for messages (``summary``, ``priority.from``).
        compiled: the compiled template.
    """

    text: str
    key: KeyPath
    field: str
    compiled: jinja2.Template


@dataclass(frozen=True)
class Choice:
    """A value looked up from a rendered template: ``{ from = "{{ … }}", map = {…}, default }``.

    Attributes:
        source: the template whose (stripped) result is looked up in `options`.
        options: rendered value -> chosen value (exact match first, then ignoring case).
        default: the value when nothing matches (None: no default, an unmatched value is an
            input error).
    """

    source: Template
    options: dict[str, Any]
    default: Any | None


@dataclass(frozen=True)
class Privacy:
    """What happens to e-mail addresses and phone numbers in the ticket's text.

    Attributes:
        email: ``keep-domain`` (``***@example.com``), ``mask`` (``***``) or ``keep``.
        phone: ``mask`` or ``keep``.
    """

    email: EmailRule = "keep-domain"
    phone: PhoneRule = "mask"


@dataclass(frozen=True)
class TicketMapping:
    """A named mapping from one kind of input to Jira issue fields.

    Attributes:
        name: the mapping's name (`[ticket_creation.mappings.<name>]`).
        source: ``form`` (sheet rows) or ``events``.
        event_types: event types this mapping takes (events only; empty: none by default,
            any when named explicitly).
        project: the Jira project key.
        issue_type: issue type name, fixed or chosen.
        summary: the summary template.
        description: the description template (None: no description of the mapping's own).
        priority: priority name, fixed or chosen (None: Jira's default).
        labels: label templates (blank results dropped, spaces turned into dashes).
        components: component name templates, or a choice of a name or list of names.
        assignee: account id, fixed or chosen (None or blank: unassigned).
        sla_hours: hours from the item's time to its due date, fixed or chosen (None: no due
            date).
        timestamp_column: the form's timestamp column (None: the first column).
        dedup: template of the recurrence key (None: the item's own id); items with the same
            rendered value share one issue, later ones become comments.
        privacy: masking of e-mail addresses and phone numbers in the ticket text.
        config: the file it was read from, for line numbers.
    """

    name: str
    source: SourceKind
    event_types: tuple[str, ...]
    project: str
    issue_type: Template | Choice
    summary: Template
    description: Template | None
    priority: Template | Choice | None
    labels: tuple[Template, ...]
    components: tuple[Template, ...] | Choice
    assignee: Template | Choice | None
    sla_hours: float | Choice | None
    timestamp_column: str | None
    dedup: Template | None
    privacy: Privacy
    config: ProjectConfig

    def where(self, *keys: str, line: int | None = None) -> str:
        """``mapping 'support-form' (moltbot.toml line 14)`` for one of its fields."""
        place = self.config.where(*MAPPINGS_TABLE, self.name, *keys, line=line)
        return f"mapping {self.name!r} ({place})"

    def render(self, template: Template, context: Mapping[str, Any], item: str) -> str:
        """Render one of this mapping's templates for `item` (named in errors).

        Raises:
            InputError: the template failed (a missing column or payload key, a bad filter
                argument…), naming the mapping, the line and the item.
        """
        try:
            return template.compiled.render(context)
        except _RENDER_ERRORS as exc:
            if isinstance(exc, jinja2.TemplateError) and exc.message:
                problem = exc.message
            else:
                problem = f"{type(exc).__name__}: {exc}"
            line = self.config.value_line(template.key, _template_line(exc) or 1)
        # Masked: a failing filter may quote the value it was given.
        raise InputError(
            mask_text(f"{self.where(line=line)}: {template.field}: {problem} ({item})")
        )

    def choose(self, choice: Choice, context: Mapping[str, Any], item: str, field: str) -> Any:
        """The option `choice` picks for `item`: its rendered `from` looked up in its map.

        Raises:
            InputError: no option matches and there is no default.
        """
        value = self.render(choice.source, context, item).strip()
        if value in choice.options:
            return choice.options[value]
        folded = {key.casefold(): option for key, option in choice.options.items()}
        if value.casefold() in folded:
            return folded[value.casefold()]
        if choice.default is not None:
            return choice.default
        shown = value if len(value) <= 40 else value[:40] + "…"
        raise InputError(
            mask_text(
                f"{self.where(field)}: {field}: no entry for {shown!r} in its map and no "
                f"default ({item})"
            )
        )


def _template_line(exc: BaseException) -> int | None:
    """The template line an exception was raised on (Jinja keeps it in the traceback)."""
    line = getattr(exc, "lineno", None)
    traceback: types.TracebackType | None = exc.__traceback__
    while traceback is not None:
        if traceback.tb_frame.f_code.co_filename == "<template>":
            line = traceback.tb_lineno
        traceback = traceback.tb_next
    return line


def load_mappings(config: ProjectConfig, *, locale: str = "en") -> dict[str, TicketMapping]:
    """Every mapping in `[ticket_creation.mappings.*]`, validated and with compiled templates.

    Raises:
        InputError: an unknown field, a value of the wrong type, or a template that does not
            compile, naming the mapping and the line.
    """
    table = config.table(*MAPPINGS_TABLE) or {}
    environment = _environment(locale)
    return {name: _parse(name, body, config, environment) for name, body in table.items()}


def _require_some(mappings: Mapping[str, TicketMapping]) -> None:
    if not mappings:
        raise InputError(
            "no ticket mappings configured: add [ticket_creation.mappings.<name>] tables to "
            "moltbot.toml in the working directory"
        )


def choose_mapping(
    mappings: Mapping[str, TicketMapping], name: str | None, source: SourceKind
) -> TicketMapping:
    """The mapping named `name`, or the only one for `source` when no name is given.

    Raises:
        InputError: no such mapping, one for the other kind of input, or several to choose from.
    """
    _require_some(mappings)
    if name is not None:
        if name not in mappings:
            raise InputError(f"unknown mapping {name!r} (configured: {', '.join(mappings)})")
        chosen = mappings[name]
        if chosen.source != source:
            raise InputError(f"mapping {name!r} is for {chosen.source}, not for {source}")
        return chosen
    candidates = [mapping for mapping in mappings.values() if mapping.source == source]
    if len(candidates) != 1:
        listed = ", ".join(m.name for m in candidates) or "none"
        raise InputError(
            f"give mapping=<name>: {len(candidates)} mappings are for {source} ({listed})"
        )
    return candidates[0]


def mapping_for_event(
    mappings: Mapping[str, TicketMapping], name: str | None, event_type: str, item: str
) -> TicketMapping:
    """The mapping for one event: the named one, or the one whose `event_types` has its type.

    Raises:
        InputError: no mapping takes this type, or several do, or the named one does not.
    """
    _require_some(mappings)
    if name is not None:
        chosen = choose_mapping(mappings, name, "events")
        if chosen.event_types and event_type not in chosen.event_types:
            raise InputError(
                f"{item}: mapping {name!r} takes event types {', '.join(chosen.event_types)}, "
                f"not {event_type!r}"
            )
        return chosen
    candidates = [
        mapping
        for mapping in mappings.values()
        if mapping.source == "events" and event_type in mapping.event_types
    ]
    if len(candidates) != 1:
        known = sorted({t for m in mappings.values() for t in m.event_types})
        problem = "no mapping takes" if not candidates else "several mappings take"
        raise InputError(
            f"{item}: {problem} event type {event_type!r} "
            f"(mapped types: {', '.join(known) or 'none'}); give mapping=<name>"
        )
    return candidates[0]


# --------------------------------------------------------------------------- parsing


class _Reader:
    """Reads one mapping table, raising InputErrors that name the mapping and the line."""

    def __init__(
        self, name: str, body: dict[str, Any], config: ProjectConfig, env: SandboxedEnvironment
    ) -> None:
        self.name = name
        self.body = body
        self.config = config
        self.env = env
        self.prefix: KeyPath = (*MAPPINGS_TABLE, name)

    def fail(self, keys: tuple[str, ...], problem: str, line: int | None = None) -> InputError:
        where = self.config.where(*self.prefix, *keys, line=line)
        field = f"{'.'.join(keys)}: " if keys else ""
        return InputError(f"mapping {self.name!r} ({where}): {field}{problem}")

    def template(self, keys: tuple[str, ...], value: Any) -> Template:
        if not isinstance(value, str):
            raise self.fail(keys, f"must be a text (template), got {_kind(value)}")
        try:
            compiled = self.env.from_string(value)
        except jinja2.TemplateSyntaxError as exc:
            line = self.config.value_line((*self.prefix, *keys), exc.lineno)
            raise self.fail(keys, f"template error: {exc.message}", line) from None
        return Template(value, (*self.prefix, *keys), ".".join(keys), compiled)

    def templates(self, keys: tuple[str, ...], value: Any) -> tuple[Template, ...]:
        if not isinstance(value, list):
            raise self.fail(keys, f"must be a list of texts, got {_kind(value)}")
        return tuple(self.template(keys, item) for item in value)

    def choice(self, keys: tuple[str, ...], value: dict[str, Any], check: Any) -> Choice:
        unknown = [key for key in value if key not in _CHOICE_KEYS]
        if unknown:
            raise self.fail(
                (*keys, unknown[0]), f"unknown key (a choice has {', '.join(_CHOICE_KEYS)})"
            )
        if "from" not in value or "map" not in value:
            raise self.fail(keys, "a choice needs 'from' (a template) and 'map' (a table)")
        options = value["map"]
        if not isinstance(options, dict) or not options:
            raise self.fail((*keys, "map"), "must be a table of value = choice")
        checked = {
            str(key): check((*keys, "map", str(key)), option) for key, option in options.items()
        }
        default = check((*keys, "default"), value["default"]) if "default" in value else None
        return Choice(self.template((*keys, "from"), value["from"]), checked, default)

    def text(self, keys: tuple[str, ...], value: Any) -> str:
        if not isinstance(value, str):
            raise self.fail(keys, f"must be a text, got {_kind(value)}")
        return value

    def names(self, keys: tuple[str, ...], value: Any) -> list[str]:
        if isinstance(value, str):
            return [value]
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return list(value)
        raise self.fail(keys, f"must be a name or a list of names, got {_kind(value)}")

    def hours(self, keys: tuple[str, ...], value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(keys, f"must be a number of hours, got {_kind(value)}")
        if not math.isfinite(value) or value < 0:
            raise self.fail(keys, f"must be 0 or more hours, got {value}")
        return float(value)

    def text_or_choice(self, keys: tuple[str, ...], value: Any) -> Template | Choice:
        if isinstance(value, dict):
            return self.choice(keys, value, self.text)
        return self.template(keys, value)


def _kind(value: Any) -> str:
    return {dict: "a table", list: "a list", str: "a text", bool: "true/false"}.get(
        type(value), type(value).__name__
    )


def _parse(name: str, body: Any, config: ProjectConfig, env: SandboxedEnvironment) -> TicketMapping:
    reader = _Reader(name, body if isinstance(body, dict) else {}, config, env)
    if not isinstance(body, dict):
        raise reader.fail((), "must be a table")
    for key in body:
        if key not in _FIELDS:
            raise reader.fail((key,), f"unknown field (known: {', '.join(_FIELDS)})")
    for key in _REQUIRED:
        if key not in body:
            raise reader.fail((key,), "is required")
    source = body["source"]
    if source not in ("form", "events"):
        raise reader.fail(("source",), f"must be 'form' or 'events', got {source!r}")
    event_types: tuple[str, ...] = ()
    if "event_types" in body:
        if source != "events":
            raise reader.fail(("event_types",), "only an events mapping takes event types")
        event_types = tuple(reader.names(("event_types",), body["event_types"]))
    if "timestamp_column" in body and source != "form":
        raise reader.fail(("timestamp_column",), "only a form mapping has a timestamp column")
    project = reader.text(("project",), body["project"]).strip()
    if not project:
        raise reader.fail(("project",), "must name a Jira project key")

    def optional(key: str, parse: Any) -> Any:
        return parse((key,), body[key]) if key in body else None

    components: tuple[Template, ...] | Choice = ()
    if isinstance(body.get("components"), dict):
        components = reader.choice(("components",), body["components"], reader.names)
    elif "components" in body:
        components = reader.templates(("components",), body["components"])
    sla: float | Choice | None = None
    if isinstance(body.get("sla_hours"), dict):
        sla = reader.choice(("sla_hours",), body["sla_hours"], reader.hours)
    elif "sla_hours" in body:
        sla = reader.hours(("sla_hours",), body["sla_hours"])
    return TicketMapping(
        name=name,
        source=source,
        event_types=event_types,
        project=project,
        issue_type=reader.text_or_choice(("issue_type",), body["issue_type"]),
        summary=reader.template(("summary",), body["summary"]),
        description=optional("description", reader.template),
        priority=optional("priority", reader.text_or_choice),
        labels=reader.templates(("labels",), body["labels"]) if "labels" in body else (),
        components=components,
        assignee=optional("assignee", reader.text_or_choice),
        sla_hours=sla,
        timestamp_column=optional("timestamp_column", reader.text),
        dedup=optional("dedup", reader.template),
        privacy=_privacy(reader, body.get("privacy", {})),
        config=config,
    )


def _privacy(reader: _Reader, value: Any) -> Privacy:
    if not isinstance(value, dict):
        raise reader.fail(("privacy",), f"must be a table, got {_kind(value)}")
    for key in value:
        if key not in ("email", "phone"):
            raise reader.fail(("privacy", key), "unknown key (privacy has email and phone)")
    email = value.get("email", "keep-domain")
    if email not in _EMAIL_RULES:
        raise reader.fail(("privacy", "email"), f"must be one of {', '.join(_EMAIL_RULES)}")
    phone = value.get("phone", "mask")
    if phone not in _PHONE_RULES:
        raise reader.fail(("privacy", "phone"), f"must be one of {', '.join(_PHONE_RULES)}")
    return Privacy(email=email, phone=phone)

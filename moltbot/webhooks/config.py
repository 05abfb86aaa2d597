"""The gateway's configuration (`[webhooks]` in moltbot.toml): sources, routes, default target."""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from moltbot.config.project import ProjectConfig
from moltbot.errors import InputError
from moltbot.registry import automations

_PLACEHOLDER = re.compile(
    r"^\{\{\s*(?P<name>source|inbox_id|event(?:\.(?:id|type|occurred_at|payload))?)\s*\}\}$"
)

_DEPLOYMENT_TAG = "deployment target"
_EVENT_TAG = "event target"

BATCH_PARAMETER = "inbox_ids"
BATCHED_PARAMETERS: dict[str, Any] = {BATCH_PARAMETER: ["{{ inbox_id }}"]}
"""The default parameters of a deployment target: its runs take batches of inbox ids."""
# A cap, not a size: while a deployment's runs are all going, its entries wait in the inbox and
# the next run takes every one waiting, up to this. A run's fixed cost (a process starting,
# seconds on a loaded machine) is what a burst pays per batch; 2,000 ids are ~80 kB of run
# parameters.
DEFAULT_BATCH_SIZE = 2000
MAX_BATCH_SIZE = 5000
DEFAULT_BATCH_WINDOW_SECONDS = 1.0

# A webhook sender posts one event per request over a few connections at a time; twenty leaves
# room for a burst, while one client can no longer hold the gateway's connections by the thousand.
DEFAULT_MAX_CONNECTIONS_PER_CLIENT = 20


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceConfig(_Strict):
    """One sender of webhooks, reached at `POST /hooks/<name>`.

    Attributes:
        block: name of the saved `WebhookSource` block holding its signing secret and scheme.
        scheme: when given, the block's scheme must be this one (a guard against a mix-up).
        tolerance_seconds: how far a Stripe-style signature timestamp may be from the clock.
    """

    block: str = Field(min_length=1, description="Name of the WebhookSource block.")
    scheme: Literal["stripe", "github"] | None = Field(
        default=None, description="Expected scheme; the block's own scheme is used when unset."
    )
    tolerance_seconds: int = Field(
        default=300, ge=1, le=3600, description="Allowed age of a Stripe-style signature."
    )


class DeploymentTarget(_Strict):
    """Run a deployment with parameters built from the event.

    A parameter value that is exactly `{{ inbox_id }}` becomes the inbox entry's id (a flow can
    read the event from the inbox, so its payload is not shown with the run's parameters in the
    Prefect UI); one that is exactly `{{ event }}` becomes the normalised event
    (`{"id", "type", "occurred_at", "payload"}`); `{{ event.id }}`, `{{ event.type }}`,
    `{{ event.occurred_at }}`, `{{ event.payload }}` and `{{ source }}` become that part. Such
    values may sit anywhere inside lists and tables; other values pass through unchanged.

    A target with the default parameters is *batched*: the dispatcher gathers the pending
    entries of every route to its deployment and starts one run for up to `batch_size` of them,
    passing all their ids in `inbox_ids`; a partial batch waits for more at most
    `batch_window_seconds` after its oldest entry became due. A target with other parameters
    gets one run per entry.

    Attributes:
        deployment: `"<flow name>/<deployment name>"`, e.g. `"ticket-creation/default"`.
        parameters: the flow run's parameters (merged with the deployment's defaults by Prefect);
            default `{"inbox_ids": ["{{ inbox_id }}"]}`, so no payload is shown in the UI.
        batch_size: most inbox ids in one run of a batched target.
        batch_window_seconds: how long a partial batch may wait for more entries.
    """

    deployment: str = Field(description='"<flow name>/<deployment name>".')
    parameters: dict[str, Any] = Field(
        # The inbox id, never the payload: run parameters are shown to everyone with the
        # Prefect UI, and a payload carries customer details. A route that wants the payload
        # in its parameters says so with '{{ event }}'.
        default_factory=lambda: copy.deepcopy(BATCHED_PARAMETERS),
        description="Flow run parameters; '{{ inbox_id }}', '{{ event }}' and "
        "'{{ event.<part> }}' are filled in (default: the inbox id only).",
    )
    batch_size: int = Field(
        default=DEFAULT_BATCH_SIZE,
        ge=1,
        le=MAX_BATCH_SIZE,
        description="Most inbox ids per run (targets with the default parameters only).",
    )
    batch_window_seconds: float = Field(
        default=DEFAULT_BATCH_WINDOW_SECONDS,
        ge=0,
        le=60,
        description="Longest wait of a partial batch for more entries, in seconds.",
    )

    @field_validator("deployment")
    @classmethod
    def _flow_slash_deployment(cls, value: str) -> str:
        if not re.fullmatch(r"[^/]+/[^/]+", value):
            raise ValueError(f'{value!r} is not "<flow name>/<deployment name>"')
        return value

    @field_validator("parameters")
    @classmethod
    def _known_placeholders(cls, value: dict[str, Any]) -> dict[str, Any]:
        for text in _strings(value):
            if "{{" in text and not _PLACEHOLDER.match(text):
                raise ValueError(
                    f"unknown placeholder {text!r} (use a whole value '{{{{ event }}}}', "
                    "'{{ event.id }}', '{{ event.type }}', '{{ event.occurred_at }}', "
                    "'{{ event.payload }}', '{{ inbox_id }}' or '{{ source }}')"
                )
        return value

    @model_validator(mode="after")
    def _batch_settings_need_batching(self) -> DeploymentTarget:
        tuned = {"batch_size", "batch_window_seconds"} & self.model_fields_set
        if tuned and not self.batched:
            raise ValueError(
                f"{sorted(tuned)[0]} applies only to a target with the default parameters "
                '(inbox_ids = ["{{ inbox_id }}"]); other targets get one run per entry'
            )
        return self

    @property
    def batched(self) -> bool:
        """Whether the target's runs take batches of inbox ids (it has the default parameters)."""
        return self.parameters == BATCHED_PARAMETERS

    @property
    def label(self) -> str:
        """How results and errors name this target."""
        return f"deployment {self.deployment}"

    def render_parameters(
        self, event: Mapping[str, Any], source: str, inbox_id: str = ""
    ) -> dict[str, Any]:
        """The flow run parameters for `event`, received from `source` as inbox entry `inbox_id`."""
        return _fill(self.parameters, event, source, inbox_id)


class EventTarget(_Strict):
    """Emit a Prefect event (automations and deployment triggers can react to it).

    Attributes:
        event: the event name; `{type}` and `{source}` are replaced by the webhook's.
    """

    event: str = Field(
        default="moltbot.webhook.{type}",
        min_length=1,
        description="Prefect event name; {type} and {source} are filled in.",
    )

    @field_validator("event")
    @classmethod
    def _known_fields(cls, value: str) -> str:
        try:
            value.format(type="t", source="s")
        except (KeyError, IndexError, ValueError):
            raise ValueError(f"event name {value!r} may only use {{type}} and {{source}}") from None
        return value

    @property
    def label(self) -> str:
        """How results and errors name this target."""
        return f"event {self.event}"

    def event_name(self, event_type: str, source: str) -> str:
        """The Prefect event name for a webhook of `event_type` from `source`."""
        return self.event.format(type=event_type, source=source)


def _target_kind(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        return _DEPLOYMENT_TAG if isinstance(value, DeploymentTarget) else _EVENT_TAG
    if isinstance(value, Mapping):
        if "deployment" in value:
            return _DEPLOYMENT_TAG
        if "event" in value:
            return _EVENT_TAG
    return None


Target = Annotated[
    Annotated[DeploymentTarget, Tag(_DEPLOYMENT_TAG)] | Annotated[EventTarget, Tag(_EVENT_TAG)],
    Discriminator(
        _target_kind,
        custom_error_type="target",
        custom_error_message='a target is a table with deployment = "<flow>/<deployment>" '
        '(and optional parameters) or event = "<name>"',
    ),
]
"""A route's target: a deployment to run or a Prefect event to emit."""


def _default_sources() -> dict[str, SourceConfig]:
    return {
        "stripe": SourceConfig(block="webhook-stripe", scheme="stripe"),
        "github": SourceConfig(block="webhook-github", scheme="github"),
    }


# Event types that also emit an alert: a Prefect event an automation can turn into an ops
# notification.
_ALERTED_EVENT_TYPES = ("payment.failed",)


def _default_routes() -> dict[str, list[DeploymentTarget | EventTarget]]:
    # The automations' own webhook routes (registry order), each to its default deployment.
    from deployments.specs import DEPLOYMENT_NAME

    routes: dict[str, list[DeploymentTarget | EventTarget]] = {}
    for automation in automations():
        for event_type, parameters in automation.webhook_routes.items():
            routes.setdefault(event_type, []).append(
                DeploymentTarget(
                    deployment=f"{automation.name}/{DEPLOYMENT_NAME}",
                    parameters=copy.deepcopy(dict(parameters)),
                )
            )
    for event_type in _ALERTED_EVENT_TYPES:
        routes.setdefault(event_type, []).append(EventTarget(event="moltbot.alert.{type}"))
    return routes


class GatewayConfig(_Strict):
    """Everything the webhook gateway needs to know besides the secrets.

    Attributes:
        sources: senders by name (the `<source>` of `/hooks/<source>`).
        routes: event type -> targets; every target of the type's route gets the event.
        default: the target of every type without a route; None (`default = "ignore"` in the
            file) accepts such events into the inbox and marks them `ignored`.
        max_connections_per_client: open connections one client address may hold at once; one
            more is answered 503 and closed at once (behind a reverse proxy every connection
            comes from the proxy's address, so the proxy must cap per client instead).
        identity_header: the request header in which a reverse proxy in front of the gateway
            passes the authenticated caller (e.g. `X-Forwarded-User`); when set, each accepted
            webhook is an audit entry naming it. Only set it behind such a proxy: a client
            reaching the gateway directly could send any value.
    """

    sources: dict[str, SourceConfig] = Field(default_factory=_default_sources)
    routes: dict[str, list[Target]] = Field(default_factory=_default_routes)
    default: Target | None = Field(default_factory=EventTarget)
    max_connections_per_client: int = Field(
        default=DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
        ge=1,
        description="Open connections one client address may hold; more are refused (503).",
    )
    identity_header: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9-]{1,64}$",
        description="Header a reverse proxy sets to the caller's identity (audited per webhook).",
    )

    @field_validator("sources")
    @classmethod
    def _source_names(cls, value: dict[str, SourceConfig]) -> dict[str, SourceConfig]:
        for name in value:
            if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,63}", name):
                raise ValueError(
                    f"source name {name!r} must be lower-case letters, digits, '-' or '_' "
                    "(it is a URL path segment)"
                )
        return value

    @field_validator("routes", mode="before")
    @classmethod
    def _single_target_as_list(cls, value: Any) -> Any:
        # `"error.spike" = { deployment = "…" }` reads better than a one-element list.
        if isinstance(value, Mapping):
            return {
                name: [targets] if isinstance(targets, Mapping) else targets
                for name, targets in value.items()
            }
        return value

    @field_validator("default", mode="before")
    @classmethod
    def _ignore_means_none(cls, value: Any) -> Any:
        # TOML has no null: the word "ignore" switches the default target off.
        return None if value == "ignore" else value

    @model_validator(mode="after")
    def _targets_distinct(self) -> GatewayConfig:
        for event_type, targets in self.routes.items():
            labels = [target.label for target in targets]
            repeated = sorted({label for label in labels if labels.count(label) > 1})
            if repeated:
                # The Prefect idempotency key of a run is the inbox id plus the deployment name.
                raise ValueError(f"route {event_type!r} lists {repeated[0]} twice")
        return self

    @classmethod
    def from_table(cls, table: Mapping[str, Any] | None) -> GatewayConfig:
        """Validate the `[webhooks]` table of moltbot.toml; None (no table) gives the defaults.

        Raises:
            InputError: an unknown key, a wrong value or a malformed target, named by its path.
        """
        try:
            return cls.model_validate(dict(table or {}))
        except ValidationError as exc:
            raise InputError(f"[webhooks] config: {describe_errors(exc)}") from None

    @classmethod
    def from_project(cls, project: ProjectConfig | None = None) -> GatewayConfig:
        """The `[webhooks]` table of the project's moltbot.toml, the defaults when it has none.

        Args:
            project: the parsed file; default: `moltbot.toml` in the working directory.

        Raises:
            InputError: as `from_table`, prefixed with the file and line of the first problem.
        """
        project = project or ProjectConfig.load()
        table = project.table("webhooks")
        try:
            return cls.model_validate(table or {})
        except ValidationError as exc:
            first = exc.errors()[0]["loc"]
            keys = [part for part in first if part not in (_DEPLOYMENT_TAG, _EVENT_TAG)]
            where = project.where("webhooks", *keys)
            raise InputError(f"{where}: [webhooks] config: {describe_errors(exc)}") from None

    def targets_for(self, event_type: str) -> list[DeploymentTarget | EventTarget]:
        """The targets of `event_type`: its route's, else the default one, else none."""
        if event_type in self.routes:
            return list(self.routes[event_type])
        return [] if self.default is None else [self.default]


def describe_errors(exc: ValidationError) -> str:
    """A validation error as one line, e.g. `routes."payment.failed"[0].deploymnt: unknown key`."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        path = _path(error["loc"])
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        elif error["type"] == "missing":
            message = "missing"
        else:
            message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{path}: {message}" if path else message)
    return "; ".join(problems)


def _path(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if part in (_DEPLOYMENT_TAG, _EVENT_TAG):
            continue
        if isinstance(part, int):
            text += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z0-9_-]+", part):
            text += f".{part}" if text else part
        else:
            text += f'."{part}"' if text else f'"{part}"'
    return text


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [text for item in value.values() for text in _strings(item)]
    if isinstance(value, list | tuple):
        return [text for item in value for text in _strings(item)]
    return []


def _fill(value: Any, event: Mapping[str, Any], source: str, inbox_id: str) -> Any:
    if isinstance(value, str):
        found = _PLACEHOLDER.match(value)
        if found is None:
            return value
        name = found["name"]
        if name == "source":
            return source
        if name == "inbox_id":
            return inbox_id
        if name == "event":
            return dict(event)
        return event[name.removeprefix("event.")]
    if isinstance(value, Mapping):
        return {key: _fill(item, event, source, inbox_id) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_fill(item, event, source, inbox_id) for item in value]
    return value

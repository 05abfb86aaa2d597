"""The effects layer's vocabulary: intents in, outcomes out, routes and delivery policies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field

DeliveryPolicy = Literal["at_least_once", "at_most_once"]
"""What to do with an effect whose outcome is unknown and cannot be looked up: send it again
(`at_least_once`, the default for alerts) or hold it for a person (`at_most_once`)."""

OutcomeStatus = Literal[
    "done", "already_done", "queued", "held", "in_doubt", "failed", "dead", "dry_run"
]
"""One vocabulary for every effect of every automation:

- `done`: performed now (or found performed remotely after an interrupted attempt: `recovered`).
- `already_done`: the ledger says an earlier run performed it; nothing was sent.
- `queued`: a message held for the end of its route's quiet hours; a digest delivers it then.
- `held`: another live run holds it right now; this run did not perform it.
- `in_doubt`: it may have happened and cannot be checked; a person resolves it.
- `failed`: it was refused or could not be settled; the next run tries again.
- `dead`: every destination of its route failed; announced to ops, replayable.
- `dry_run`: nothing was performed or recorded.
"""

SETTLED: frozenset[str] = frozenset({"done", "already_done", "queued", "dry_run"})
"""Outcomes after which the effect exists, or is sure to (queued for the end of quiet hours; the
ledger keeps it), or in a dry run would."""


@dataclass(frozen=True)
class Route:
    """Where an effect may go, in order: the first destination that accepts it takes it.

    Attributes:
        links: executor names (channel block names for messages), tried in order.
        policy: what an unknown outcome on a destination without a look-up means.
    """

    links: tuple[str, ...]
    policy: DeliveryPolicy = "at_least_once"

    def __post_init__(self) -> None:
        if not self.links:
            raise ValueError("a route needs at least one destination")

    @property
    def name(self) -> str:
        """The route's name in keys and tables: its first destination (stable when fallbacks
        are added or removed, so a changed chain does not resend what was delivered)."""
        return self.links[0]

    def describe(self) -> str:
        """``team-slack > ops-email > oncall-sms``."""
        return " > ".join(self.links)


@dataclass(frozen=True)
class Intent:
    """One external effect an automation wants, with its idempotency key.

    Attributes:
        key: the ledger key: automation, logical item and target (at most 512 characters).
        automation: the automation that wants it.
        kind: what it is: ``message``, ``notion_page``, ``jira_issue``, ``jira_comment``,
            ``sheets_append``.
        target: where it lands (a database id, a project, a route), for tables and the audit.
        payload: what the executor needs to perform it (a `Message`, a dict of fields).
        route: the destinations, in order.
        label: a short human name for outcomes (``out alert``, ``row 12``); no personal data.
        companion_keys: other ledger keys settled together with this one (a ticket's
            occurrence key), claimed and recorded alongside.
        known_remote_id: the effect is known to exist remotely already (found by the caller's
            own search): record it, perform nothing.
        follow_up_of: the logical key of an earlier effect this one follows up (an alert's
            recovery follows the alert): `perform` looks up what that effect became on each
            destination it tries and passes it on as `original_remote_id`.
        original_remote_id: the remote id `follow_up_of` got on the destination now applying
            this intent (set by `perform`; None where the original did not go).
        rule_id: the automation's rule that produced it (`moltbot policy`), recorded in the
            ledger when the effect is claimed.
    """

    key: str
    automation: str
    kind: str
    target: str
    payload: Any
    route: Route
    label: str = ""
    companion_keys: tuple[str, ...] = ()
    known_remote_id: str | None = None
    follow_up_of: str | None = None
    original_remote_id: str | None = None
    rule_id: str | None = None


class Preview(BaseModel):
    """What one destination would receive, shown by a dry run (masked: it reaches terminals and
    logs). Built by the destination's own rendering, the code a real send runs.

    Attributes:
        destination: the route link that would take the effect (a channel block name,
            ``jira:<block>`` …).
        kind: what the destination is: ``slack``, ``email``, ``outbox``, ``jira_issue``,
            ``jira_comment``, ``notion_page``, ``sheets_append``.
        lines: the effect as it would read there (a chat's text, an e-mail's headers, an
            issue's fields, a page's outline), masked.
        file: a file holding the full rendering (an e-mail's HTML), when one was written.
        fallbacks: the route's later destinations, tried in order if this one fails.
    """

    destination: str
    kind: str
    lines: list[str] = Field(default_factory=list)
    file: str | None = None
    fallbacks: list[str] = Field(default_factory=list)


class Attempt(BaseModel):
    """One destination that did not take the effect, and why (masked)."""

    link: str
    error: str


class Outcome(BaseModel):
    """What became of one intent (JSON-ready with `model_dump(mode="json")`).

    Attributes:
        key: the ledger key.
        kind: the intent's kind.
        target: the intent's target.
        status: see `OutcomeStatus`.
        via: the destination that took it (for `done` / `already_done`).
        tried: destinations that failed (or were skipped by an open circuit) before.
        remote_id: the remote service's id (issue key, page id, Message-ID), when known.
        attempts: claims of this key so far (the ledger's count).
        error: why it is not done (masked).
        transient: for `failed`: whether a later run may succeed without a fix.
        recovered: `done` by finding it remotely after an interrupted attempt.
        held_by: the flow run holding it (for `held`).
        label: the intent's human name.
        preview: for `dry_run`: what the route's first destination would receive, when it can
            show it.
    """

    key: str
    kind: str
    target: str
    status: OutcomeStatus
    via: str | None = None
    tried: list[Attempt] = Field(default_factory=list)
    remote_id: str | None = None
    attempts: int = 0
    error: str | None = None
    transient: bool = False
    recovered: bool = False
    held_by: str | None = None
    label: str = ""
    # Only dry runs have one: every other outcome's JSON stays as it was.
    preview: Preview | None = Field(default=None, exclude_if=lambda value: value is None)

    @property
    def settled(self) -> bool:
        """True when the effect exists now (done now or before, or a dry run's preview)."""
        return self.status in SETTLED


@dataclass
class Applied:
    """An executor's answer for one intent it performed: the remote id, if the service gave one."""

    remote_id: str | None = None

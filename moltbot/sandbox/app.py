"""The sandbox's root FastAPI app: which emulator is mounted where, and their shared state."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from moltbot.sandbox.inbox import MailSource, install_inbox
from moltbot.sandbox.jira import JiraState, create_jira_app
from moltbot.sandbox.notion import NotionState, create_notion_app
from moltbot.sandbox.sheets import SheetsState, create_sheets_app
from moltbot.sandbox.slack import SlackState, create_slack_app
from moltbot.sandbox.targets import TargetsState, create_targets_app


@dataclass
class SandboxState:
    """In-memory state of every emulator, inspectable from Python while the server runs.

    Attributes:
        slack: the Slack incoming-webhook emulator's posts, faults and registered webhooks.
        sheets: the Google Sheets emulator's spreadsheets, request log and faults.
        notion: the Notion emulator's databases, pages, request log and faults.
        jira: the Jira emulator's projects, issues, request log and faults.
        targets: the switchable HTTP targets (up, down, slow, drop) health checks call.
    """

    slack: SlackState = field(default_factory=SlackState)
    sheets: SheetsState = field(default_factory=SheetsState)
    notion: NotionState = field(default_factory=NotionState)
    jira: JiraState = field(default_factory=JiraState)
    targets: TargetsState = field(default_factory=TargetsState)

    def reset(self) -> None:
        """Back to the seeded state in every emulator (for use between tests)."""
        self.slack.reset()
        self.sheets.reset()
        self.notion.reset()
        self.jira.reset()
        self.targets.reset()


class Service(NamedTuple):
    """One emulator mounted on the root app.

    Attributes:
        name: short name shown by ``GET /_sandbox``.
        prefix: mount path, e.g. ``/slack``.
        factory: builds the sub-app from the shared `SandboxState`.
    """

    name: str
    prefix: str
    factory: Callable[[SandboxState], FastAPI]


# Adding an emulator is one line here (plus its field on SandboxState); all share one port.
SERVICES: tuple[Service, ...] = (
    Service("slack", "/slack", lambda s: create_slack_app(s.slack)),
    Service("sheets", "/sheets", lambda s: create_sheets_app(s.sheets)),
    Service("notion", "/notion", lambda s: create_notion_app(s.notion)),
    Service("jira", "/jira", lambda s: create_jira_app(s.jira)),
    Service("targets", "/targets", lambda s: create_targets_app(s.targets)),
)


def create_app(state: SandboxState | None = None, *, mail: MailSource | None = None) -> FastAPI:
    """Build the root app: the inbox pages, and every service in `SERVICES` under its prefix.

    Args:
        state: the emulators' state to serve (a fresh one when None).
        mail: where the inbox reads e-mail (the sandbox's SMTP sink, which runs apart from
            this app); without it the inbox shows no e-mail.
    """
    state = state if state is not None else SandboxState()
    app = FastAPI(title="moltbot sandbox", docs_url=None, redoc_url=None)
    app.state.sandbox = state
    app.state.mail = mail
    listing = {"services": [{"name": s.name, "prefix": s.prefix} for s in SERVICES]}

    @app.get("/_sandbox")
    def services() -> JSONResponse:
        return JSONResponse(listing)

    # Before the mounts: a mount answers every path below its prefix (/jira/browse/KEY).
    install_inbox(app, state, mail, listing=listing)
    for service in SERVICES:
        app.mount(service.prefix, service.factory(state), name=service.name)
    return app

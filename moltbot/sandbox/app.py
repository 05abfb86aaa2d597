"""The sandbox's root FastAPI app: which emulator is mounted where, and their shared state."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from moltbot.sandbox.dooray import DoorayState, create_dooray_app
from moltbot.sandbox.inbox import MailSource, install_inbox
from moltbot.sandbox.jandi import JandiState, create_jandi_app
from moltbot.sandbox.jira import JiraState, create_jira_app
from moltbot.sandbox.kakaowork import KakaoWorkState, create_kakaowork_app
from moltbot.sandbox.naverworks import NaverWorksState, create_naverworks_app
from moltbot.sandbox.notion import NotionState, create_notion_app
from moltbot.sandbox.sheets import SheetsState, create_sheets_app
from moltbot.sandbox.slack import SlackState, create_slack_app
from moltbot.sandbox.solapi import SolapiState, create_solapi_app
from moltbot.sandbox.targets import TargetsState, create_targets_app
from moltbot.sandbox.twilio import TwilioState, create_twilio_app


@dataclass
class SandboxState:
    """In-memory state of every emulator, inspectable from Python while the server runs.

    Attributes:
        slack: the Slack incoming-webhook emulator's posts, faults and registered webhooks.
        sheets: the Google Sheets emulator's spreadsheets, request log and faults.
        notion: the Notion emulator's databases, pages, request log and faults.
        jira: the Jira emulator's projects, issues, request log and faults.
        targets: the switchable HTTP targets (up, down, slow, drop) health checks call.
        twilio: the Twilio Messages emulator's messages, refusals and faults.
        solapi: the Solapi emulator's messages, signatures, clock and faults.
        kakaowork: the KakaoWork Web API emulator's users, rooms, messages and faults.
        naverworks: the NAVER WORKS emulator's apps, tokens, bot messages and faults.
        jandi: the JANDI incoming-webhook emulator's webhooks, posts, faults and limit.
        dooray: the Dooray! incoming-hook emulator's hooks, posts, faults and limit.
    """

    slack: SlackState = field(default_factory=SlackState)
    sheets: SheetsState = field(default_factory=SheetsState)
    notion: NotionState = field(default_factory=NotionState)
    jira: JiraState = field(default_factory=JiraState)
    targets: TargetsState = field(default_factory=TargetsState)
    twilio: TwilioState = field(default_factory=TwilioState)
    solapi: SolapiState = field(default_factory=SolapiState)
    kakaowork: KakaoWorkState = field(default_factory=KakaoWorkState)
    naverworks: NaverWorksState = field(default_factory=NaverWorksState)
    jandi: JandiState = field(default_factory=JandiState)
    dooray: DoorayState = field(default_factory=DoorayState)

    def reset(self) -> None:
        """Back to the seeded state in every emulator (for use between tests)."""
        self.slack.reset()
        self.sheets.reset()
        self.notion.reset()
        self.jira.reset()
        self.targets.reset()
        self.kakaowork.reset()
        self.naverworks.reset()
        self.jandi.reset()
        self.dooray.reset()
        self.twilio.reset()
        self.solapi.reset()


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
    Service("kakaowork", "/kakaowork", lambda s: create_kakaowork_app(s.kakaowork)),
    Service("naverworks", "/naverworks", lambda s: create_naverworks_app(s.naverworks)),
    Service("jandi", "/jandi", lambda s: create_jandi_app(s.jandi)),
    Service("dooray", "/dooray", lambda s: create_dooray_app(s.dooray)),
    Service("twilio", "/twilio", lambda s: create_twilio_app(s.twilio)),
    Service("solapi", "/solapi", lambda s: create_solapi_app(s.solapi)),
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

"""Jira Cloud REST v2 emulator (mounted at /jira): issues, bulk create, JQL search, comments."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from moltbot.sandbox.kit import EmulatorCore, install_emulator

SANDBOX_JIRA_EMAIL = "sandbox@moltbot.local"
SANDBOX_JIRA_TOKEN = "sandbox-jira-token"


def error_response(status: int, message: str) -> JSONResponse:
    """Jira's error shape: ``{"errorMessages": [...], "errors": {}}``."""
    return JSONResponse({"errorMessages": [message], "errors": {}}, status_code=status)


class JiraState:
    """In-memory state of the emulator (skeleton: being written)."""

    def __init__(self) -> None:
        self.core = EmulatorCore("jira")

    def reset(self) -> None:
        """Back to the seeded state, with no requests logged and no faults."""
        self.core.reset()


def create_jira_app(state: JiraState) -> FastAPI:
    """Build the sub-app serving `state`."""
    app = FastAPI(title="moltbot sandbox: jira")
    install_emulator(app, state.core, error_response)
    return app

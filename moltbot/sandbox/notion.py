"""Notion API emulator (mounted at /notion): databases, data sources, pages, blocks, search."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from moltbot.sandbox.kit import EmulatorCore, install_emulator

SANDBOX_NOTION_TOKEN = "sandbox-notion-token"
NOTION_VERSION = "2025-09-03"


def error_response(status: int, message: str) -> JSONResponse:
    """Notion's error shape: ``{"object": "error", "status", "code", "message"}``."""
    return JSONResponse(
        {"object": "error", "status": status, "code": "internal_server_error", "message": message},
        status_code=status,
    )


class NotionState:
    """In-memory state of the emulator (skeleton: being written)."""

    def __init__(self) -> None:
        self.core = EmulatorCore("notion")

    def reset(self) -> None:
        """Back to the seeded state, with no requests logged and no faults."""
        self.core.reset()


def create_notion_app(state: NotionState) -> FastAPI:
    """Build the sub-app serving `state`."""
    app = FastAPI(title="moltbot sandbox: notion")
    install_emulator(app, state.core, error_response)
    return app

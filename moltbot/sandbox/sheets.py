"""Google Sheets v4 emulator (mounted at /sheets): spreadsheets, values, OAuth token, quotas."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from moltbot.sandbox.kit import EmulatorCore, install_emulator

SANDBOX_SHEETS_TOKEN = "sandbox-sheets-token"


def error_response(status: int, message: str) -> JSONResponse:
    """Google's error shape: ``{"error": {"code", "message", "status"}}``."""
    return JSONResponse(
        {"error": {"code": status, "message": message, "status": "UNKNOWN"}}, status_code=status
    )


class SheetsState:
    """In-memory state of the emulator (skeleton: being written)."""

    def __init__(self) -> None:
        self.core = EmulatorCore("sheets")

    def reset(self) -> None:
        """Back to the seeded state, with no requests logged and no faults."""
        self.core.reset()


def create_sheets_app(state: SheetsState) -> FastAPI:
    """Build the sub-app serving `state`."""
    app = FastAPI(title="moltbot sandbox: sheets")
    install_emulator(app, state.core, error_response)
    return app

"""Dooray! incoming-hook emulator: wire format, registered hooks, post log, faults, limit.

Dooray! publishes no specification of its incoming hook; the guide linked by public clients
(docs.toast.com/ko/Dooray/Messenger/ko/incoming-hook-guide/) could not be read. The emulator
follows what public clients send (``botName``, ``botIconImage``, ``text``, ``attachments[]``
with ``title``, ``titleLink``, ``text``, ``color``) and, for the rest, assumes (see
docs/sandbox.md):

- success: ``200`` with Dooray!'s API envelope ``{"header": {"resultCode": 0,
  "resultMessage": "", "isSuccessful": true}}``; errors carry the same envelope with
  ``isSuccessful: false``;
- a body that is not a JSON object, or has no non-empty string ``text``, or attachments that
  are not objects: ``400``;
- an unknown tenant/hook/token (a hook never made or removed): ``404``;
- at most `DEFAULT_POSTS_PER_MINUTE` posts a minute per hook, then ``429`` without a
  ``Retry-After``.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from moltbot.sandbox.jandi import (
    HookState,
    ReceivedPost,
    RefusedPost,
    decode_object,
    install_control_routes,
)
from moltbot.sandbox.kit import install_emulator

SANDBOX_TENANT_ID = "3000000000000000001"
SANDBOX_HOOK_ID = "3000000000000000002"
DEFAULT_POSTS_PER_MINUTE = 60
"""The emulator's per-hook limit (an assumption: Dooray! publishes none)."""

_HOOK_ROUTE = "/services/"
_RECORDED_HEADERS = ("content-type", "user-agent")
_ERROR_TEXTS = {
    400: "Bad Request",
    404: "Not Found: no such hook",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def hook_path(name: str) -> str:
    """The deterministic hook path of `name` below the ``/dooray`` mount."""
    token = hashlib.sha256(f"dooray:{name}".encode()).hexdigest()[:22]
    return f"/services/{SANDBOX_TENANT_ID}/{SANDBOX_HOOK_ID}/{token}"


class DoorayState(HookState):
    """In-memory state of the Dooray! emulator (see `HookState`)."""

    def __init__(self) -> None:
        super().__init__("dooray", "/dooray", _HOOK_ROUTE, _ERROR_TEXTS, DEFAULT_POSTS_PER_MINUTE)

    def register_hook(self, name: str) -> str:
        """Accept posts to hook `name` from now on; return its path below ``/dooray``."""
        return self.register(hook_path(name))


def _envelope(status: int, message: str) -> Response:
    header = {"resultCode": 0 if status < 400 else -status, "resultMessage": message}
    header["isSuccessful"] = status < 400
    return JSONResponse({"header": header, "result": None}, status_code=status)


def _body_problem(payload: dict[str, Any]) -> str | None:
    text = payload.get("text")
    if not isinstance(text, str) or not text.strip():
        return "text is required"
    for field in ("botName", "botIconImage"):
        if field in payload and not isinstance(payload[field], str):
            return f"{field} must be a string"
    attachments = payload.get("attachments")
    if "attachments" in payload and not (
        isinstance(attachments, list) and all(isinstance(a, dict) for a in attachments)
    ):
        return "attachments must be a list of objects"
    return None


def create_dooray_app(state: DoorayState) -> FastAPI:
    """Build the Dooray! sub-app (mounted under ``/dooray``) serving `state`."""
    app = FastAPI(title="moltbot sandbox: Dooray! incoming hooks")

    @app.post("/services/{tenant_id}/{hook_id}/{token}")
    async def incoming_hook(tenant_id: str, hook_id: str, token: str, request: Request) -> Response:
        path = f"/services/{tenant_id}/{hook_id}/{token}"
        raw = await request.body()
        now = datetime.now(UTC)

        def refuse(status: int, error: str) -> Response:
            state.record_refusal(RefusedPost(path, status, error, raw, now))
            return _envelope(status, error)

        if not state.is_known(path):
            return refuse(404, _ERROR_TEXTS[404])
        payload = decode_object(raw)
        if payload is None:
            return refuse(400, "the body must be a JSON object")
        problem = _body_problem(payload)
        if problem is not None:
            return refuse(400, problem)
        if state.limiter.acquire(path) is not None:
            return refuse(429, _ERROR_TEXTS[429])
        headers = {k: request.headers[k] for k in _RECORDED_HEADERS if k in request.headers}
        state.record_post(ReceivedPost(path, payload, now, headers))
        return _envelope(200, "")

    install_emulator(app, state.core, _envelope)
    install_control_routes(app, state)
    return app

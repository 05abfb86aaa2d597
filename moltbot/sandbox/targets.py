"""Switchable HTTP targets for health checks: each name answers up, down, slow or drops."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from moltbot.sandbox.kit import DroppedConnection, _quiet_dropped_connections

TargetMode = Literal["up", "down", "slow", "drop"]
TARGET_MODES: tuple[str, ...] = ("up", "down", "slow", "drop")
CONTROL_PATH = "/_control"
DEFAULT_UP_BODY = "OK"
DEFAULT_DOWN_STATUS = 503
DEFAULT_DOWN_BODY = "Service Unavailable"
DEFAULT_SLOW_DELAY_MS = 1000
# Letters, digits, '_', '.', '-'; not starting with '_' (that is the control path's).
_TARGET_NAME = re.compile(r"^[A-Za-z0-9][\w.\-]{0,99}$")

Sleep = Callable[[float], Awaitable[None]]
"""How a slow target waits: real time by default, a test's own clock when it sets one."""


@dataclass(frozen=True)
class Target:
    """How one target answers.

    Attributes:
        mode: ``up`` answers `status` (200) with `body`; ``down`` answers `status` (503);
            ``slow`` waits `delay_ms`, then answers as ``up``; ``drop`` closes the connection
            without an answer.
        status: the status answered (None: 200 up and slow, 503 down).
        delay_ms: how long ``slow`` waits.
        body: the text answered (None: ``OK`` up and slow, ``Service Unavailable`` down).
        required_headers: headers a request must carry with exactly these values, else it is
            answered ``401`` (so a test sees a secret header arrive whole).
    """

    mode: TargetMode = "up"
    status: int | None = None
    delay_ms: int = DEFAULT_SLOW_DELAY_MS
    body: str | None = None
    required_headers: dict[str, str] = field(default_factory=dict)

    def answer_status(self) -> int:
        """The status an answer has in this mode."""
        if self.status is not None:
            return self.status
        return DEFAULT_DOWN_STATUS if self.mode == "down" else 200

    def answer_body(self) -> str:
        """The text an answer carries in this mode."""
        if self.body is not None:
            return self.body
        return DEFAULT_DOWN_BODY if self.mode == "down" else DEFAULT_UP_BODY

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (required header values are not shown)."""
        data = asdict(self)
        data["required_headers"] = sorted(self.required_headers)
        return data


@dataclass(frozen=True)
class TargetRequest:
    """One request a target received.

    Attributes:
        target: the target's name.
        method: GET, HEAD or POST.
        header_names: the request's header names, lower case, sorted (never their values).
        status: the status answered; 0 when the connection was dropped.
        received_at: when it arrived (UTC).
    """

    target: str
    method: str
    header_names: tuple[str, ...]
    status: int
    received_at: datetime

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as served by ``GET /targets/_control``."""
        data = asdict(self)
        data["header_names"] = list(self.header_names)
        data["received_at"] = self.received_at.isoformat()
        return data


class TargetControl(BaseModel):
    """Body of ``POST /targets/_control/<name>``: the target's new behaviour."""

    model_config = ConfigDict(extra="forbid")

    mode: TargetMode = "up"
    status: int | None = Field(default=None, ge=100, le=599)
    delay_ms: int = Field(default=DEFAULT_SLOW_DELAY_MS, ge=0, le=600_000)
    body: str | None = None
    required_headers: dict[str, str] = Field(default_factory=dict)


class TargetsState:
    """The targets' modes and request log, shared by the HTTP handlers and Python callers.

    A target nobody switched answers ``up``, so any name is a healthy endpoint at first.

    Attributes:
        sleep: how ``slow`` waits; the default waits real time and is released by `reset`
            (and `release_delays`), a test may set its own.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._targets: dict[str, Target] = {}
        self._requests: list[TargetRequest] = []
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = set()
        self.sleep: Sleep = self._releasable_sleep

    def set(
        self,
        name: str,
        mode: TargetMode = "up",
        *,
        status: int | None = None,
        delay_ms: int = DEFAULT_SLOW_DELAY_MS,
        body: str | None = None,
        required_headers: dict[str, str] | None = None,
    ) -> Target:
        """Switch target `name` to `mode` (see `Target`); return its new behaviour.

        Raises:
            ValueError: a bad name, an unknown mode, a status outside 100-599 or a negative
                delay.
        """
        if not _TARGET_NAME.match(name):
            raise ValueError("a target name is letters, digits, '_', '.' and '-' (not first '_')")
        if mode not in TARGET_MODES:
            raise ValueError(f"mode must be one of {', '.join(TARGET_MODES)}")
        if status is not None and not 100 <= status <= 599:
            raise ValueError(f"status must be from 100 to 599, got {status}")
        if delay_ms < 0:
            raise ValueError(f"delay_ms must not be negative, got {delay_ms}")
        target = Target(mode, status, delay_ms, body, dict(required_headers or {}))
        with self._lock:
            self._targets[name] = target
        return target

    def get(self, name: str) -> Target:
        """Target `name`'s behaviour (``up`` when never switched)."""
        with self._lock:
            return self._targets.get(name, Target())

    @property
    def targets(self) -> dict[str, Target]:
        """The switched targets, by name."""
        with self._lock:
            return dict(self._targets)

    @property
    def requests(self) -> list[TargetRequest]:
        """Every request received, oldest first."""
        with self._lock:
            return list(self._requests)

    def requests_to(self, name: str) -> list[TargetRequest]:
        """The requests target `name` received."""
        return [logged for logged in self.requests if logged.target == name]

    def release_delays(self) -> None:
        """End every wait of a ``slow`` target now (its answer then goes out)."""
        with self._lock:
            waiters = list(self._waiters)
        for loop, waiter in waiters:
            loop.call_soon_threadsafe(_finish, waiter)

    def reset(self) -> None:
        """Every target back to ``up``, the log empty, pending waits released, real sleep."""
        self.release_delays()
        with self._lock:
            self._targets.clear()
            self._requests.clear()
        self.sleep = self._releasable_sleep

    def _record(self, logged: TargetRequest) -> None:
        with self._lock:
            self._requests.append(logged)

    async def _releasable_sleep(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        timer = loop.call_later(seconds, _finish, waiter)
        entry = (loop, waiter)
        with self._lock:
            self._waiters.add(entry)
        try:
            await waiter
        finally:
            timer.cancel()
            with self._lock:
                self._waiters.discard(entry)


def _finish(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class _DroppedResponse(Response):
    """Closes the connection without a byte of answer, as a crashed server does."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # uvicorn marks the answer as started, then fails on a status it has no phrase for,
        # before writing anything; an error after the start makes it close the connection.
        try:
            await send({"type": "http.response.start", "status": 999, "headers": []})
        except Exception as exc:
            raise DroppedConnection("targets: connection dropped on purpose") from exc
        raise DroppedConnection("targets: connection dropped on purpose")


def create_targets_app(state: TargetsState) -> FastAPI:
    """Build the targets sub-app (mounted under ``/targets``) serving `state`."""
    _quiet_dropped_connections()
    app = FastAPI(title="moltbot sandbox: switchable HTTP targets")

    @app.get(CONTROL_PATH)
    def listing() -> JSONResponse:
        return JSONResponse(
            {
                "targets": {name: t.to_dict() for name, t in state.targets.items()},
                "requests": [logged.to_dict() for logged in state.requests],
            }
        )

    @app.delete(CONTROL_PATH)
    def reset() -> JSONResponse:
        state.reset()
        return JSONResponse({"reset": True})

    @app.post(CONTROL_PATH + "/{name}")
    def switch(name: str, control: TargetControl) -> JSONResponse:
        try:
            target = state.set(name, **control.model_dump())
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"name": name, **target.to_dict()})

    @app.api_route("/{name}", methods=["GET", "HEAD", "POST"])
    async def answer(name: str, request: Request) -> Response:
        received_at = datetime.now(UTC)
        target = state.get(name)
        names = tuple(sorted(key.lower() for key in request.headers))

        def log(status: int) -> None:
            state._record(TargetRequest(name, request.method, names, status, received_at))

        if target.mode == "drop":
            log(0)
            return _DroppedResponse()
        if target.mode == "slow":
            await state.sleep(target.delay_ms / 1000.0)
        wanted = target.required_headers
        if any(request.headers.get(key) != value for key, value in wanted.items()):
            log(401)
            return PlainTextResponse("Unauthorized", status_code=401)
        status = target.answer_status()
        log(status)
        body = "" if request.method == "HEAD" else target.answer_body()
        return PlainTextResponse(body, status_code=status)

    return app

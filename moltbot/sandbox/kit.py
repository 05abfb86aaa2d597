"""What every HTTP emulator shares: request log, route faults, rate limiters, control routes."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal, NoReturn, Self

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

FaultKind = Literal["status", "hang", "slow", "drop"]
FAULT_KINDS: tuple[str, ...] = ("status", "hang", "slow", "drop")
# Every emulator keeps its own inspection and fault routes under this path; they are never
# logged, faulted or rate limited, so a test can always look at the state.
CONTROL_PREFIX = "/_sandbox"
# Longer than any client timeout the blocks use (30 s at most), so a hang is always a timeout.
DEFAULT_HANG_SECONDS = 60.0

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
# Builds the service's own error answer (Google, Notion or Jira shape) for a status and message.
ErrorResponder = Callable[[int, str], Response]
# Why a request body is not a JSON object: "malformed" (not JSON) or "not an object".
JsonBodyProblem = Literal["malformed", "not an object"]


@dataclass(frozen=True)
class LoggedRequest:
    """One request an emulator answered (or dropped).

    Attributes:
        method: HTTP method.
        path: decoded path relative to the emulator's mount point (``/v4/spreadsheets/…``).
        query: the raw query string.
        status: the status answered; 0 when the connection was dropped.
        received_at: when it arrived (UTC).
        fault: the kind of injected fault that answered it (``status_after_apply`` and
            ``drop_after_apply`` for one that answered after the handler ran), or None for a
            normal answer.
    """

    method: str
    path: str
    query: str
    status: int
    received_at: datetime
    fault: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as served by ``GET <prefix>/_sandbox/requests``."""
        data = asdict(self)
        data["received_at"] = self.received_at.isoformat()
        return data


@dataclass
class RouteFault:
    """An injected fault for the requests matching `method` and `path`.

    Attributes:
        kind: ``status`` answers `status`; ``hang`` waits `seconds` then answers 504 without
            doing anything; ``slow`` waits `seconds` then answers normally; ``drop`` closes the
            connection without answering.
        status: the status a ``status`` fault answers (429, 500, 503 …).
        method: only requests with this method (upper case); None for any.
        path: a regular expression searched in the request path; None for any.
        remaining: how many more requests it applies to; None for no limit.
        probability: the share of matching requests it applies to (1.0 for every one).
        retry_after: ``Retry-After`` seconds sent with the answer, if any.
        seconds: how long ``hang`` and ``slow`` wait.
        message: the error message in the service's error body.
        after_apply: ``status`` and ``drop`` only: the handler runs first (the change is
            made), then its success answer is replaced by the error or the dropped connection,
            like a request whose answer was lost on the way back.
    """

    kind: FaultKind = "status"
    status: int = 500
    method: str | None = None
    path: str | None = None
    remaining: int | None = 1
    probability: float = 1.0
    retry_after: int | None = None
    seconds: float = DEFAULT_HANG_SECONDS
    message: str | None = None
    after_apply: bool = False
    _pattern: re.Pattern[str] | None = field(default=None, repr=False, compare=False)

    def matches(self, method: str, path: str) -> bool:
        """True when the fault is meant for this request (before the probability draw)."""
        if self.method is not None and self.method != method:
            return False
        if self.path is None:
            return True
        if self._pattern is None:
            self._pattern = re.compile(self.path)
        return self._pattern.search(path) is not None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as served by ``GET <prefix>/_sandbox/faults``."""
        data = asdict(self)
        data.pop("_pattern")
        return data


class FaultRequest(BaseModel):
    """Body of ``POST <prefix>/_sandbox/faults`` (same meaning as `EmulatorCore.inject_fault`)."""

    kind: FaultKind = "status"
    status: int = 500
    method: str | None = None
    path: str | None = None
    count: int | None = Field(default=1, ge=1)
    probability: float = Field(default=1.0, gt=0, le=1)
    retry_after: int | None = Field(default=None, ge=0)
    seconds: float = Field(default=DEFAULT_HANG_SECONDS, ge=0)
    message: str | None = None
    after_apply: bool = False


class EmulatorCore:
    """The request log and fault queue of one emulator, shared by its handlers and by tests.

    The server thread records while a test thread reads, so every accessor takes one lock and
    returns a snapshot.

    Args:
        name: the service name used in messages (``sheets``).
        seed: seed of the random draws of probabilistic faults, for repeatable tests.
        messages: the service's own error text per status, for faults given no message.
    """

    def __init__(
        self, name: str, *, seed: int | None = None, messages: Mapping[int, str] | None = None
    ) -> None:
        self.name = name
        self._messages = dict(messages or {})
        self._lock = threading.Lock()
        self._requests: list[LoggedRequest] = []
        self._faults: deque[RouteFault] = deque()
        self._random = random.Random(seed)
        # Bumped by every clear of the log, so a request still held (a hang) when a test
        # resets the sandbox is not logged into the next test.
        self._generation = 0
        # Bumped by `release_held`: a hang or slow answer waiting when it changes ends at once.
        self._releases = 0

    def release_held(self) -> None:
        """End every hang and slow wait in progress now, so a test stops a hang instead of
        waiting it out (the held request then answers as its fault says)."""
        with self._lock:
            self._releases += 1

    async def hold(self, seconds: float) -> None:
        """Wait `seconds`, or until `release_held` is called."""
        with self._lock:
            started = self._releases
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with self._lock:
                if self._releases != started:
                    return
            await asyncio.sleep(min(0.01, max(deadline - time.monotonic(), 0)))

    def default_message(self, status: int) -> str:
        """The error text a fault with no message answers: the service's own, else generic."""
        return self._messages.get(status) or _default_message(status)

    @property
    def generation(self) -> int:
        """How many times the request log was cleared; stamps requests as they arrive."""
        with self._lock:
            return self._generation

    @property
    def requests(self) -> list[LoggedRequest]:
        """Every request answered so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def requests_to(
        self, method: str | None = None, path: str | None = None
    ) -> list[LoggedRequest]:
        """Requests with this method (None: any) whose path matches the regex `path`."""
        pattern = re.compile(path) if path is not None else None
        return [
            logged
            for logged in self.requests
            if (method is None or logged.method == method.upper())
            and (pattern is None or pattern.search(logged.path))
        ]

    def count(self, method: str | None = None, path: str | None = None) -> int:
        """How many requests `requests_to(method, path)` would list."""
        return len(self.requests_to(method, path))

    @property
    def pending_faults(self) -> list[RouteFault]:
        """Faults that can still apply, in the order they are tried."""
        with self._lock:
            return [replace(fault) for fault in self._faults]

    def inject_fault(
        self,
        status: int = 500,
        *,
        kind: FaultKind = "status",
        count: int | None = 1,
        probability: float = 1.0,
        method: str | None = None,
        path: str | None = None,
        retry_after: int | None = None,
        seconds: float = DEFAULT_HANG_SECONDS,
        message: str | None = None,
        after_apply: bool = False,
    ) -> RouteFault:
        """Make matching requests fail: the next `count` of them, or a random share of them.

        ``count=None`` keeps the fault until `clear_faults`; with ``probability`` below 1 only
        that share of matching requests is hit (each hit uses one of `count`). A 429 without
        `retry_after` sends ``Retry-After: 1``, as the real services always name a wait.
        With `after_apply` a ``status`` or ``drop`` fault lets the handler run first and
        replaces its success answer (a request the handler refuses keeps its own answer).

        Raises:
            ValueError: an unknown kind, a status outside 4xx/5xx, a count below 1, a
                probability outside (0, 1], a negative wait, or `after_apply` with a kind
                other than ``status`` and ``drop``.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {', '.join(FAULT_KINDS)}, got {kind!r}")
        if after_apply and kind not in ("status", "drop"):
            raise ValueError(f"after_apply goes with kind status or drop, not {kind!r}")
        if kind == "status" and not 400 <= status <= 599:
            raise ValueError(f"fault status must be 4xx or 5xx, got {status}")
        if count is not None and count < 1:
            raise ValueError(f"fault count must be at least 1, got {count}")
        if not 0 < probability <= 1:
            raise ValueError(f"fault probability must be in (0, 1], got {probability}")
        if seconds < 0:
            raise ValueError(f"fault seconds must not be negative, got {seconds}")
        if path is not None:
            re.compile(path)  # a bad pattern fails here, not inside a request
        if kind == "status" and status == 429 and retry_after is None:
            retry_after = 1
        fault = RouteFault(
            kind=kind,
            status=status if kind == "status" else (504 if kind == "hang" else 200),
            method=method.upper() if method else None,
            path=path,
            remaining=count,
            probability=probability,
            retry_after=retry_after,
            seconds=seconds,
            message=message,
            after_apply=after_apply,
        )
        with self._lock:
            self._faults.append(fault)
        return replace(fault)

    def reseed(self, seed: int | None) -> None:
        """Restart the random draws of probabilistic faults from `seed` (a long-lived sandbox
        gives each test the same draws)."""
        with self._lock:
            self._random = random.Random(seed)

    def take_fault(self, method: str, path: str) -> RouteFault | None:
        """The fault that answers this request, using up one of its uses; None to answer normally.

        Faults are tried in the order they were injected; the first that matches and wins its
        probability draw applies.
        """
        with self._lock:
            for fault in self._faults:
                if not fault.matches(method, path):
                    continue
                if fault.probability < 1 and self._random.random() >= fault.probability:
                    continue
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                return replace(fault)
        return None

    def record(self, logged: LoggedRequest, generation: int | None = None) -> None:
        """Append one answered request to the log, unless the log was cleared since it arrived.

        Args:
            logged: the request and its answer.
            generation: `generation` when the request arrived; None to log it in any case.
        """
        with self._lock:
            if generation is None or generation == self._generation:
                self._requests.append(logged)

    def clear_requests(self) -> None:
        """Forget the request log; faults stay."""
        with self._lock:
            self._requests.clear()
            self._generation += 1

    def clear_faults(self) -> None:
        """Drop every pending fault."""
        with self._lock:
            self._faults.clear()

    def reset(self) -> None:
        """Forget requests and faults."""
        with self._lock:
            self._requests.clear()
            self._faults.clear()
            self._generation += 1


class DroppedConnection(Exception):
    """Raised inside the app after the answer has started, so uvicorn closes the connection."""


class _DroppedConnectionFilter(logging.Filter):
    """Keeps uvicorn from logging a traceback for connections dropped on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, DroppedConnection)


_filter_installed = False


def _quiet_dropped_connections() -> None:
    global _filter_installed
    if not _filter_installed:
        logging.getLogger("uvicorn.error").addFilter(_DroppedConnectionFilter())
        _filter_installed = True


def relative_path(scope: Scope) -> str:
    """The request path below the mount point (`/x` for `/slack/x` mounted at `/slack`)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :] or "/"
    return path


class EmulatorMiddleware:
    """ASGI middleware logging every request with its status and applying injected faults.

    It wraps one sub-app; requests under `CONTROL_PREFIX` pass straight through.
    """

    def __init__(self, app: ASGIApp, core: EmulatorCore, error_response: ErrorResponder) -> None:
        self.app = app
        self.core = core
        self.error_response = error_response
        _quiet_dropped_connections()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = relative_path(scope)
        if path.startswith(CONTROL_PREFIX):
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]
        query = scope.get("query_string", b"").decode("latin-1")
        received_at = datetime.now(UTC)
        generation = self.core.generation

        def log(status: int, fault: str | None = None) -> None:
            logged = LoggedRequest(method, path, query, status, received_at, fault)
            self.core.record(logged, generation)

        fault = self.core.take_fault(method, path)
        if fault is not None and fault.after_apply:
            await self._answer_after_apply(fault, scope, receive, send, log)
            return
        if fault is not None and fault.kind in ("hang", "slow"):
            await self.core.hold(fault.seconds)
        if fault is not None and fault.kind == "drop":
            log(0, "drop")
            await self._drop(send)
        if fault is not None and fault.kind in ("status", "hang"):
            log(fault.status, fault.kind)
            await self._fault_response(fault)(scope, receive, send)
            return

        fault_kind = "slow" if fault is not None else None
        logged = False

        async def recording_send(message: Message) -> None:
            nonlocal logged
            if message["type"] == "http.response.start" and not logged:
                # Logged before the answer leaves, so a client that has its answer can already
                # find the request in the log.
                log(message["status"], fault_kind)
                logged = True
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            if not logged:
                log(500, fault_kind)

    def _fault_response(self, fault: RouteFault) -> Response:
        message = fault.message or self.core.default_message(fault.status)
        response = self.error_response(fault.status, message)
        if fault.retry_after is not None:
            response.headers["Retry-After"] = str(fault.retry_after)
        return response

    async def _drop(self, send: Send) -> NoReturn:
        # uvicorn marks the answer as started, then fails on a status it has no phrase for,
        # before writing a byte; an error after the start makes it close the connection.
        # The client sees a connection closed without any answer, as after a crash.
        try:
            await send({"type": "http.response.start", "status": 999, "headers": []})
        except Exception as exc:
            raise DroppedConnection(f"{self.core.name}: connection dropped on purpose") from exc
        raise DroppedConnection(f"{self.core.name}: connection dropped on purpose")

    async def _answer_after_apply(
        self,
        fault: RouteFault,
        scope: Scope,
        receive: Receive,
        send: Send,
        log: Callable[[int, str | None], None],
    ) -> None:
        """Run the handler (its change is made), then lose its success answer: answer the
        fault's error or drop the connection. A refusal (not 2xx) is answered as it is."""
        held: list[Message] = []

        async def hold(message: Message) -> None:
            held.append(message)

        try:
            await self.app(scope, receive, hold)
        except Exception:
            log(500, None)
            raise
        status = next((m["status"] for m in held if m["type"] == "http.response.start"), 500)
        if not 200 <= status < 300:
            log(status, None)
            for message in held:
                await send(message)
            return
        if fault.kind == "drop":
            log(0, "drop_after_apply")
            await self._drop(send)
        log(fault.status, "status_after_apply")
        await self._fault_response(fault)(scope, receive, send)


_DEFAULT_MESSAGES = {
    429: "Too many requests (injected by the moltbot sandbox).",
    500: "Internal error (injected by the moltbot sandbox).",
    502: "Bad gateway (injected by the moltbot sandbox).",
    503: "Service unavailable (injected by the moltbot sandbox).",
    504: "Gateway timeout: the sandbox held the request (injected hang).",
}


def _default_message(status: int) -> str:
    return _DEFAULT_MESSAGES.get(status, f"Error {status} (injected by the moltbot sandbox).")


async def read_json_object(
    request: Request, invalid: Callable[[JsonBodyProblem], Exception]
) -> dict[str, Any]:
    """The request's JSON object body; ``{}`` for an empty (or blank) body.

    Args:
        request: the request being handled.
        invalid: builds the service's own error for a body that is not a JSON object.

    Raises:
        Exception: what `invalid` builds, for a body that is not JSON or not an object.
    """
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise invalid("malformed") from None
    if not isinstance(body, dict):
        raise invalid("not an object")
    return body


def install_emulator(app: FastAPI, core: EmulatorCore, error_response: ErrorResponder) -> None:
    """Give `app` the shared request log, fault injection and control routes.

    Control routes, under ``/_sandbox`` of the app: ``GET/DELETE requests`` (the log),
    ``GET/POST/DELETE faults`` (body of POST: `FaultRequest`).
    """

    @app.get(f"{CONTROL_PREFIX}/requests")
    def list_requests() -> JSONResponse:
        return JSONResponse([logged.to_dict() for logged in core.requests])

    @app.delete(f"{CONTROL_PREFIX}/requests")
    def clear_requests() -> JSONResponse:
        core.clear_requests()
        return JSONResponse({"cleared": True})

    @app.get(f"{CONTROL_PREFIX}/faults")
    def list_faults() -> JSONResponse:
        return JSONResponse([fault.to_dict() for fault in core.pending_faults])

    @app.post(f"{CONTROL_PREFIX}/faults")
    def add_fault(request: FaultRequest) -> JSONResponse:
        try:
            fault = core.inject_fault(
                request.status,
                kind=request.kind,
                count=request.count,
                probability=request.probability,
                method=request.method,
                path=request.path,
                retry_after=request.retry_after,
                seconds=request.seconds,
                message=request.message,
                after_apply=request.after_apply,
            )
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=422)
        return JSONResponse(fault.to_dict(), status_code=201)

    @app.delete(f"{CONTROL_PREFIX}/faults")
    def clear_faults() -> JSONResponse:
        core.clear_faults()
        return JSONResponse({"cleared": True})

    app.add_middleware(EmulatorMiddleware, core=core, error_response=error_response)


class StartedWhileEntered:
    """`with server:` starts it and stops it again on the way out, whatever happened inside.

    For the sandbox's servers (the HTTP emulators, the SMTP sink), which define `start`
    (returning the running server) and `stop`.
    """

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class SlidingWindowLimiter:
    """At most `limit` requests per `window` seconds per key (Google's per-minute quotas).

    Args:
        limit: requests allowed in any window; None disables the limit.
        window: window length in seconds.
        clock: monotonic clock, replaceable in tests.
    """

    def __init__(
        self,
        limit: int | None,
        window: float = 60.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._lock = threading.Lock()
        self._hits: dict[str, deque[float]] = {}

    def acquire(self, key: str = "") -> float | None:
        """Count one request for `key`; None when allowed, else seconds until a slot frees."""
        if self.limit is None:
            return None
        now = self._clock()
        with self._lock:
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            if len(hits) >= self.limit:
                return max(hits[0] + self.window - now, 0.001)
            hits.append(now)
            return None

    def reset(self) -> None:
        """Forget every counted request."""
        with self._lock:
            self._hits.clear()


class TokenBucketLimiter:
    """An average of `rate` requests per second with bursts up to `burst` (Notion's limit).

    Args:
        rate: tokens added per second; None disables the limit.
        burst: bucket size, the most requests allowed at once.
        clock: monotonic clock, replaceable in tests.
    """

    def __init__(
        self,
        rate: float | None,
        burst: int = 10,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last refill)

    def acquire(self, key: str = "") -> float | None:
        """Take one token for `key`; None when allowed, else seconds until a token is back."""
        if self.rate is None:
            return None
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens < 1:
                self._buckets[key] = (tokens, now)
                return (1 - tokens) / self.rate
            self._buckets[key] = (tokens - 1, now)
            return None

    def reset(self) -> None:
        """Refill every bucket."""
        with self._lock:
            self._buckets.clear()

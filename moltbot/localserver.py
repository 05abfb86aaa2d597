"""The local Prefect server moltbot starts once in the background and every command reuses."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from moltbot.errors import MoltbotError

DEFAULT_PORT = 4200
# A cold `prefect server start` migrates its database and builds the UI on first use: 10-20 s on
# this class of machine, more under load. Prefect's own temporary server gives up after 20 s,
# which is what made commands die with a long traceback.
START_DEADLINE_SECONDS = 120.0
STOP_DEADLINE_SECONDS = 20.0
# Telemetry stays off for the server moltbot starts, whatever the shell says.
SERVER_ENVIRONMENT = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}
# Retention the local server gets unless the environment says otherwise: Prefect 3.9 keeps flow
# runs, their logs and artifacts forever by default (its vacuum only deletes events); these turn
# the flow-run vacuum on with Prefect's own 90-day period, so run parameters and logs age out.
RETENTION_DEFAULTS = {
    "PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED": "events,flow_runs",
    "PREFECT_SERVER_SERVICES_DB_VACUUM_RETENTION_PERIOD": "7776000",
}
# The local server's database is SQLite, one writer at a time. Prefect's task-run recorder
# writes each task-run event in a transaction of its own (batch size 1); a run's own API calls
# that collide with one get "database is locked", a 503, and Prefect's client waits 2 s before
# asking again. In batches of up to 200, flushed every second, the recorder writes far less
# often: a small flow's median run went from ~2.1 s to ~0.4 s (bench notes, issue 17). The
# environment may still say otherwise.
SQLITE_WRITE_DEFAULTS = {
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "200",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_READ_BATCH_SIZE": "200",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL": "1",
}


class ServerError(MoltbotError):
    """The local Prefect server cannot start or answer; the message says what to do."""


@dataclass(frozen=True)
class ServerRecord:
    """What `server.json` remembers about the running background server."""

    pid: int
    port: int
    started_at: float

    @property
    def ui_url(self) -> str:
        """The Prefect UI of this server."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        """The Prefect API of this server (what `PREFECT_API_URL` names)."""
        return f"{self.ui_url}/api"


@dataclass(frozen=True)
class ServerStatus:
    """Whether the background server runs, where, and where its files are."""

    running: bool
    record: ServerRecord | None
    directory: Path

    @property
    def database(self) -> Path:
        """The server's SQLite database: run history, artifacts, blocks."""
        return self.directory / "prefect.db"

    @property
    def log_file(self) -> Path:
        """Where the server writes its own output."""
        return self.directory / "server.log"


class LocalServer:
    """The background `prefect server start` of one moltbot home.

    Its files live in `<home>/prefect/`: Prefect's home (database, so the history lasts), the
    `server.json` record of the process and port, and `server.log`.

    Args:
        directory: the server's directory.
        python: the interpreter that runs `prefect` (this one by default).
    """

    def __init__(self, directory: Path, python: str | None = None) -> None:
        self.directory = directory
        self.python = python or sys.executable

    @property
    def record_file(self) -> Path:
        return self.directory / "server.json"

    def status(self) -> ServerStatus:
        """The server's status: running only when its process lives and its API answers."""
        record = self._read_record()
        running = record is not None and _alive(record.pid) and _healthy(record.api_url)
        return ServerStatus(running=running, record=record if running else None,
                            directory=self.directory)  # fmt: skip

    def ensure(self, on_start: Callable[[str], None] | None = None) -> ServerRecord:
        """The running server, started in the background first when it is not running.

        Args:
            on_start: told once, before a start, what is happening (for a progress line).

        Raises:
            ServerError: the server did not start; the message says why and what to do.
        """
        with self._lock():
            current = self.status()
            if current.record is not None:
                return current.record
            if on_start is not None:
                on_start(f"starting the local Prefect server (log: {self.log_file})")
            return self._start()

    def stop(self) -> ServerRecord | None:
        """Stop the background server; return what ran (None when nothing did)."""
        with self._lock():
            record = self._read_record()
            if record is None or not _alive(record.pid):
                self.record_file.unlink(missing_ok=True)
                return None
            _terminate(record.pid)
            self.record_file.unlink(missing_ok=True)
            return record

    @property
    def log_file(self) -> Path:
        return self.directory / "server.log"

    def _start(self) -> ServerRecord:
        self.directory.mkdir(parents=True, exist_ok=True)
        port = _free_port(DEFAULT_PORT)
        environment = {
            **RETENTION_DEFAULTS,
            **SQLITE_WRITE_DEFAULTS,
            **os.environ,
            **SERVER_ENVIRONMENT,
            "PREFECT_HOME": str(self.directory.resolve()),
            "PREFECT_SERVER_API_HOST": "127.0.0.1",
            "PREFECT_SERVER_API_PORT": str(port),
            "PREFECT_UI_API_URL": f"http://127.0.0.1:{port}/api",
        }
        # The server answers its own API; a URL inherited from the shell would point it elsewhere.
        environment.pop("PREFECT_API_URL", None)
        with self.log_file.open("ab") as log:
            process = subprocess.Popen(
                [self.python, "-m", "prefect", "server", "start",
                 "--host", "127.0.0.1", "--port", str(port)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=environment, cwd=self.directory, start_new_session=True,
            )  # fmt: skip
        record = ServerRecord(pid=process.pid, port=port, started_at=time.time())
        deadline = time.monotonic() + START_DEADLINE_SECONDS
        while not _healthy(record.api_url):
            if process.poll() is not None:
                raise ServerError(
                    f"the local Prefect server exited with code {process.returncode} while "
                    f"starting; see {self.log_file}, or point moltbot at a running server "
                    "with PREFECT_API_URL"
                )
            if time.monotonic() > deadline:
                _terminate(process.pid)
                raise ServerError(
                    f"the local Prefect server did not answer within "
                    f"{START_DEADLINE_SECONDS:g} s; see {self.log_file}, then try again "
                    "(`uv run moltbot server start`)"
                )
            time.sleep(0.25)
        self.record_file.write_text(json.dumps(asdict(record)), encoding="utf-8")
        return record

    def _read_record(self) -> ServerRecord | None:
        try:
            return ServerRecord(**json.loads(self.record_file.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            return None

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        # Two commands started together must not start two servers.
        self.directory.mkdir(parents=True, exist_ok=True)
        with (self.directory / "server.lock").open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of this process still answers kill(0): reap it if it is ours.
    with contextlib.suppress(ChildProcessError):
        finished, _ = os.waitpid(pid, os.WNOHANG)
        if finished == pid:
            return False
    return True


def _healthy(api_url: str) -> bool:
    try:
        return httpx.get(f"{api_url}/health", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def _free_port(preferred: int) -> int:
    for port in (preferred, 0):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return probe.getsockname()[1]
    raise ServerError("no free TCP port on 127.0.0.1 for the local Prefect server")


def _terminate(pid: int) -> None:
    """SIGTERM the server's process group, then SIGKILL what is left after the deadline."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_DEADLINE_SECONDS
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def connect(home: Path, on_start: Callable[[str], None] | None = None) -> str:
    """The Prefect API this process uses: the configured one, else the local background server.

    A configured API (`PREFECT_API_URL` in the environment, a Prefect profile, a test harness)
    is used as it is. Otherwise the server of `<home>/prefect` is started when it is not running
    and this process (and the processes it starts) are pointed at it, instead of Prefect
    starting a temporary server for every command.

    Raises:
        ServerError: the local server cannot start.
    """
    from prefect.settings import get_current_settings

    configured = get_current_settings().api.url
    if configured:
        return configured
    record = LocalServer(home / "prefect").ensure(on_start)
    os.environ["PREFECT_API_URL"] = record.api_url
    from prefect.context import refresh_global_settings_context

    # Prefect read its settings when it was imported; this makes it read the URL just set.
    refresh_global_settings_context()
    return record.api_url


def ui_url(api_url: str) -> str:
    """The Prefect UI address that goes with `api_url` (`PREFECT_UI_URL` when set)."""
    from prefect.settings import get_current_settings

    configured = get_current_settings().ui_url
    if configured:
        return configured.rstrip("/")
    return api_url.removesuffix("/").removesuffix("/api")

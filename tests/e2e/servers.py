"""Real processes for end-to-end tests: a `prefect server start`, and moltbot commands beside it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx

from moltbot.localserver import SQLITE_WRITE_DEFAULTS
from tests.prefect_database import copy_migrated_database

T = TypeVar("T")

BIN = Path(sys.executable).parent


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# How long a wait may last before the test is taken for hung: a guard, not a measure of speed
# (how fast things happen belongs in bench/).
HANG_GUARD_SECONDS = 600.0


def wait_for(
    check: Callable[[], T | None],
    *,
    timeout: float = HANG_GUARD_SECONDS,
    interval: float = 0.5,
    what: str,
) -> T:
    """Call `check` until it returns something truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def quiet_prefect_env(home: Path) -> dict[str, str]:
    """Environment for any Prefect process of a test: its own home, no telemetry, fast loops."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("PREFECT_", "MOLTBOT_"))
    }
    # The tests' one-certificate trust store (tests/conftest.py): Prefect parses it per client.
    if "PREFECT_API_SSL_CERT_FILE" in os.environ:
        env["PREFECT_API_SSL_CERT_FILE"] = os.environ["PREFECT_API_SSL_CERT_FILE"]
    env.update(
        PREFECT_HOME=str(home / "prefect-home"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        PREFECT_SERVER_UI_ENABLED="false",
        # Scheduled runs appear within seconds, and a runner or worker picks them up quickly.
        PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="2",
        PREFECT_RUNNER_POLL_FREQUENCY="1",
        PREFECT_WORKER_QUERY_SECONDS="1",
        PREFECT_WORKER_PREFETCH_SECONDS="5",
        PREFECT_LOGGING_LEVEL="WARNING",
        MOLTBOT_HOME=str(home / "moltbot-home"),
        MOLTBOT_RETRY_BASE_DELAY="0.01",
        MOLTBOT_RETRY_MAX_DELAY="0.05",
    )
    return env


class PrefectServer:
    """`prefect server start` as a subprocess on a fixed port, stoppable and restartable.

    Its database is a SQLite file in `home` unless `database_url` is given, so a restart keeps
    every deployment, run and block.
    """

    def __init__(self, home: Path, *, database_url: str | None = None) -> None:
        self.home = home
        self.port = free_port()
        self.database_url = database_url or f"sqlite+aiosqlite:///{home / 'prefect.db'}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = home / "prefect-server.log"
        self.ui = False

    @property
    def api_url(self) -> str:
        """The API URL clients use (`PREFECT_API_URL`)."""
        return f"http://127.0.0.1:{self.port}/api"

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for a client process of this server."""
        return {**quiet_prefect_env(self.home), "PREFECT_API_URL": self.api_url, **extra}

    def start(self, timeout: float = 120) -> None:
        """Start the server and wait until its API answers."""
        self.home.mkdir(parents=True, exist_ok=True)
        sqlite_file = self.home / "prefect.db"
        if self.database_url.endswith(f"///{sqlite_file}") and not sqlite_file.exists():
            copy_migrated_database(sqlite_file)  # a first start without ~4 s of migrations
        env = {
            **quiet_prefect_env(self.home),
            "PREFECT_API_DATABASE_CONNECTION_URL": self.database_url,
            "PREFECT_SERVER_LOGGING_LEVEL": os.environ.get("E2E_SERVER_LOG_LEVEL", "WARNING"),
            # Proactive automations (the crashed-run detector) are evaluated every second, not
            # every 5 s, so a test waits for the detector's window and hardly more.
            "PREFECT_SERVER_EVENTS_PROACTIVE_GRANULARITY": "PT1S",
            # Events (heartbeats, states) are stored within half a second, not 5 s, for the
            # tests that read them back.
            "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_FLUSH_INTERVAL": "0.5",
            # As moltbot's local server on SQLite: task runs recorded in batches, not one
            # write (and a client's 2 s wait on "database is locked") at a time.
            **(SQLITE_WRITE_DEFAULTS if self.database_url.startswith("sqlite") else {}),
            **self.extra_server_env(),
        }
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1",
                 "--port", str(self.port), "--ui" if self.ui else "--no-ui"],
                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        wait_for(self._healthy, timeout=timeout, what=f"the Prefect server ({self.log_tail()})")

    def extra_server_env(self) -> dict[str, str]:
        """Settings a kind of server adds to the server process's environment."""
        return {}

    def _healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"the Prefect server exited: {self.log_tail()}")
        try:
            return httpx.get(f"{self.api_url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        """Stop the server (SIGTERM to its process group, SIGKILL after 20 s)."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def log_tail(self, chars: int = 2000) -> str:
        """The end of the server's log, for failure messages."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    @contextmanager
    def as_current(self) -> Iterator[None]:
        """Point this test process's Prefect client at the server."""
        from prefect.settings import PREFECT_API_URL
        from prefect.settings.context import temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: self.api_url}):
            yield


def takes_ctrl_c() -> None:
    """`preexec_fn` for a child the test stops with Ctrl-C (SIGINT).

    A shell starts its background jobs (`pytest &`, `nohup`) with SIGINT ignored, every process
    they start inherits that, and Python then never raises KeyboardInterrupt: the child would
    sit out the test's SIGINT. The child gets the default disposition back before it starts.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextmanager
def background(
    args: list[str], *, env: dict[str, str], cwd: Path, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a command in its own process group for the block; stop it (and its children) after."""
    with log.open("ab") as output:
        process = subprocess.Popen(
            args, env=env, cwd=cwd, stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=takes_ctrl_c,
        )  # fmt: skip
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


def delete(url: str) -> None:
    """DELETE `url` until the server has done it (a 404 counts: it is gone).

    A SQLite-backed server answers 503 now and then ("database is locked") while it writes
    events; an unchecked DELETE then leaves the resource behind for the next test on the
    shared server (an automation left over made test_serve see "updated", not "created").
    """

    def deleted() -> bool:
        response = httpx.delete(url, timeout=10)
        if response.status_code == 503:
            return False
        assert response.status_code in (200, 204, 404), f"DELETE {url}: {response.text}"
        return True

    wait_for(deleted, interval=0.2, what=f"DELETE {url} to succeed")


def moltbot_command(*args: str) -> list[str]:
    """The `moltbot` console script of this environment with `args`."""
    return [str(BIN / "moltbot"), *args]


def flow_runs(api_url: str, *, deployment_id: str | None = None) -> list[dict[str, Any]]:
    """Every flow run (of one deployment), straight from the REST API."""
    body: dict[str, Any] = {"limit": 200}
    if deployment_id:
        body["deployments"] = {"id": {"any_": [deployment_id]}}
    response = httpx.post(f"{api_url}/flow_runs/filter", json=body, timeout=10)
    response.raise_for_status()
    return response.json()


def read_deployment(api_url: str, full_name: str) -> dict[str, Any]:
    """A deployment by `flow name/deployment name`, straight from the REST API."""
    response = httpx.get(f"{api_url}/deployments/name/{full_name}", timeout=10)
    response.raise_for_status()
    return response.json()


def runs_in_state(api_url: str, full_name: str, state_type: str) -> list[dict[str, Any]]:
    """The runs of a deployment whose state type is `state_type` (`COMPLETED`, `FAILED`…)."""
    try:
        deployment = read_deployment(api_url, full_name)
    except httpx.HTTPStatusError:
        return []
    return [
        run
        for run in flow_runs(api_url, deployment_id=deployment["id"])
        if run["state"] and run["state"]["type"] == state_type
    ]

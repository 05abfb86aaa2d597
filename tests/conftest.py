"""Shared fixtures: an isolated MOLTBOT_HOME per test, one Prefect test server, one sandbox."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest


def _one_certificate_trust_store() -> str:
    """A CA file holding one certificate of certifi's bundle (written once per machine); its path.

    Prefect builds a verifying TLS context for every API client it opens, even for the plain-http
    test servers, and parsing certifi's ~150 certificates costs ~15 ms of CPU each time: hundreds
    of times per test file. No test talks TLS to a Prefect server, so the tests' Prefect clients
    (and the processes they start, which inherit the variable) trust one certificate instead.
    """
    import re
    import tempfile

    import certifi

    path = Path(tempfile.gettempdir()) / "moltbot-tests-one-ca.pem"
    if not path.is_file():
        bundle = Path(certifi.where()).read_text(encoding="ascii")
        first = re.search(
            r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----\n", bundle, re.S
        )
        assert first is not None, f"no certificate in {certifi.where()}"
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(first.group(0), encoding="ascii")
        partial.replace(path)  # atomic: the other xdist worker may write it at the same time
    return str(path)


# Before Prefect is imported (by moltbot below): Prefect reads its settings from the environment.
os.environ.setdefault("PREFECT_API_SSL_CERT_FILE", _one_certificate_trust_store())
# Every new Prefect client asks the server for a CSRF token before its first write; the test
# servers do not protect against CSRF (Prefect's default) and answer each ask with a 422: about
# 1,400 wasted requests a run, one per client. Clients and the processes the tests start skip it.
os.environ.setdefault("PREFECT_CLIENT_CSRF_SUPPORT_ENABLED", "false")

# A shell with PYTHONDONTWRITEBYTECODE set (this machine's has) would make every process the
# suite starts (xdist workers, servers, ~50 moltbot commands) compile moltbot and rewrite the
# test modules' asserts from source again, and a fresh clone never get a cache: ~30 CPU-s a run.
# The suite writes bytecode beside the sources (`__pycache__/`, ignored by git) instead.
if os.environ.pop("PYTHONDONTWRITEBYTECODE", None) is not None:
    sys.dont_write_bytecode = False

import moltbot  # noqa: E402, F401  (Prefect telemetry defaults before Prefect starts a server)

# pytest-xdist hands its workers the controller's terminal width as COLUMNS; rich would pin the
# CLI's consoles to it when moltbot.cli is imported, and the tests that give their own COLUMNS
# (wide tables on one line) would get it wrapped. Without it, each test's COLUMNS counts.
os.environ.pop("COLUMNS", None)
os.environ.pop("LINES", None)

if TYPE_CHECKING:
    from blocks.jira import JiraCredentials
    from blocks.notion import NotionCredentials
    from blocks.sheets import GoogleSheetsCredentials
    from moltbot.sandbox import Sandbox


@pytest.fixture(autouse=True)
def prefect_events(request: pytest.FixtureRequest) -> Iterator[None]:
    """Prefect's own client-side events reach the server only in tests marked `prefect_events`.

    Every task run sends its state changes as events, every block load and artifact one more;
    the test server stores each and runs it past its triggers: about a tenth of the CPU of a
    flow test, for events no other test reads. Flow-run states are the server's own events and
    moltbot's webhook events go through the API, so both are stored either way. The tests that
    read the client's events back (heartbeats, task runs) take the mark.

    Prefect keeps one events worker per process, bound to the API current at its first event: a
    marked test's worker is stopped when the test ends, so it never sends a later test's events
    to a server that test is not using (or that is gone).
    """
    from prefect.events.clients import NullEventsClient
    from prefect.events.worker import EventsWorker

    if request.node.get_closest_marker("prefect_events"):
        try:
            yield
        finally:
            EventsWorker.drain_all(timeout=10, at_exit=False)
        return
    EventsWorker.set_client_override(NullEventsClient)
    try:
        yield
    finally:
        EventsWorker.set_client_override(None)


@pytest.fixture(autouse=True)
def moltbot_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own MOLTBOT_HOME and working directory, fast retry delays, and no
    client-side rate limits (tests/effects/test_rate_limits.py turns them on)."""
    for name in list(os.environ):
        if name.startswith("MOLTBOT_"):
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    monkeypatch.setenv("MOLTBOT_HOME", str(home))
    monkeypatch.setenv("MOLTBOT_RETRY_BASE_DELAY", "0.01")
    monkeypatch.setenv("MOLTBOT_RETRY_MAX_DELAY", "0.05")
    # One Slack post a second would make every test that posts twice sleep for real.
    monkeypatch.setenv("MOLTBOT_RATE_LIMITS", '{"enabled": false}')
    monkeypatch.chdir(tmp_path)
    return home


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[str]:
    """One temporary Prefect server for the whole session; yields its API URL."""
    import tempfile

    import prefect.testing.utilities
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        PREFECT_SERVER_SERVICES_EVENT_PERSISTER_FLUSH_INTERVAL,
        PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_ENABLED,
    )
    from prefect.settings.context import temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    from tests.prefect_database import copy_migrated_database

    # Heartbeats make every flow call wait ~1 s at exit; tests do not need crash detection.
    # The task-run recorder writes every task's events into the harness's SQLite file while
    # the next flow run is being created; the loser gets "database is locked", a 503, and the
    # client sleeps 2 s: flows took ~2 s instead of ~0.2 s. No test reads task runs back (the
    # end-to-end tests keep the recorder, on their own server).
    # The server stores the events it takes every 5 s; tests that read events back would wait
    # for that. Flushing every half second costs the server next to nothing when idle.
    updates = {
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None,
        PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_ENABLED: False,
        PREFECT_SERVER_SERVICES_EVENT_PERSISTER_FLUSH_INTERVAL: 0.5,
    }

    def folder_with_a_migrated_database() -> str:
        # The harness makes its folder with `mkdtemp()` and its database as prefect-test.db
        # there: seeded with a migrated copy, the server starts without ~4 s of migrations.
        folder = Path(tempfile.mkdtemp(prefix="moltbot-prefect-harness-"))
        copy_migrated_database(folder / "prefect-test.db")
        return str(folder)

    with (
        pytest.MonkeyPatch.context() as patch,
        temporary_settings(updates=updates),
    ):
        patch.setattr(prefect.testing.utilities, "mkdtemp", folder_with_a_migrated_database)
        with prefect_test_harness(server_startup_timeout=60):
            yield str(PREFECT_API_URL.value())


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[object]:
    """One sandbox (Sheets, Notion, Jira and Slack emulators, SMTP sink) on free ports."""
    from moltbot.sandbox import Sandbox

    with Sandbox() as running:
        yield running


@pytest.fixture
def sandbox(sandbox_server: object) -> Iterator[object]:
    """The session sandbox, with recorded posts, mails and pending faults cleared around a test."""
    sandbox_server.reset()
    yield sandbox_server
    sandbox_server.reset()


@pytest.fixture
def sheets_credentials(sandbox: Sandbox) -> GoogleSheetsCredentials:
    """A `GoogleSheetsCredentials` on the session sandbox's fixed service account."""
    from tests.sandbox.helpers import sheets_block

    return sheets_block(sandbox.base_url)


@pytest.fixture
def notion_credentials(sandbox: Sandbox) -> NotionCredentials:
    """A `NotionCredentials` with the sandbox token, pointing at the session sandbox."""
    from tests.sandbox.helpers import notion_block

    return notion_block(sandbox.base_url)


@pytest.fixture
def jira_credentials(sandbox: Sandbox) -> JiraCredentials:
    """A `JiraCredentials` with the sandbox account, pointing at the session sandbox."""
    from tests.sandbox.helpers import jira_block

    return jira_block(sandbox.base_url)


@pytest.fixture(scope="session")
def sandbox_blocks(prefect_api: str, sandbox_server: object) -> list[str]:
    """The `sandbox-*` block documents saved once, pointing at the session sandbox; their names."""
    from moltbot.sandbox.blocks import save_sandbox_blocks

    return [entry.name for entry in save_sandbox_blocks(sandbox_server)]


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A throwaway PostgreSQL 15 cluster on a free port; yields its server URL (no database)."""
    import glob
    import shutil
    import subprocess
    import tempfile

    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not candidates:
        pytest.skip("PostgreSQL server binaries not found under /usr/lib/postgresql")
    bin_dir = Path(candidates[-1]).parent
    # initdb refuses to run as root: run the cluster as the `postgres` system user then.
    as_user: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser: cannot start PostgreSQL")
        as_user = ["runuser", "-u", "postgres", "--"]
    # Not under pytest's tmp_path: its folders are private to root, and the server runs as postgres.
    base = Path(tempfile.mkdtemp(prefix="moltbot-postgres-"))
    base.chmod(0o777)
    data, socket_dir, port = base / "data", base / "socket", _free_port()
    socket_dir.mkdir()
    socket_dir.chmod(0o777)
    initialized = subprocess.run(
        [*as_user, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
         "-E", "UTF8", "--no-locale"],
        check=False, capture_output=True, timeout=120,
    )  # fmt: skip
    if initialized.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        reason = initialized.stderr.decode(errors="replace")[-300:]
        pytest.skip(f"PostgreSQL initdb failed: {reason}")
    options = f"-p {port} -k {socket_dir} -c listen_addresses=127.0.0.1 -c fsync=off"
    started = subprocess.run(
        [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-w", "-t", "60",
         "-l", str(base / "log"), "start"],
        capture_output=True, timeout=90, check=False,
    )  # fmt: skip
    if started.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        pytest.skip(f"PostgreSQL did not start: {started.stderr.decode(errors='replace')[-300:]}")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run(
            [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True, timeout=60, check=False,
        )  # fmt: skip
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def postgres_database_url(postgres_server: str) -> str:
    """A fresh, empty database on the session's PostgreSQL server."""
    import uuid

    import sqlalchemy

    name = f"test_{uuid.uuid4().hex[:12]}"
    engine = sqlalchemy.create_engine(f"{postgres_server}/postgres", isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return f"{postgres_server}/{name}"


# End-to-end tests that start Prefect servers of their own (module-scoped ones stay together on
# one worker): unlike the others they do not use the e2e worker's shared server, so they need not
# wait for it, and they run on whichever worker is free.
E2E_OWN_SERVERS = {
    "tests/e2e/test_browser.py": "module",
    "tests/e2e/test_workers.py": "test",
    "tests/e2e/test_webhooks.py::test_webhooks_taken_while_prefect_is_down": "test",
    "tests/e2e/test_webhooks.py::test_a_gateway_restarted_while_prefect_is_down": "test",
}


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto`: one worker per core, plus one for the end-to-end tests, which mostly wait on
    servers and timers (on this 2-core machine: 3)."""
    return (os.cpu_count() or 1) + 1


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The `slow` tests first, each part in its collected order.

    xdist hands tests out one scope at a time as workers free up. Long tests handed out last
    left one worker finishing `test_demo` while the others had nothing to do; started first,
    the short ones fill the gaps at the end. Every worker sorts the same way, so their
    collections stay identical.
    """
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """Under pytest-xdist (`--dist loadgroup`, the default here) the end-to-end tests that use
    the shared Prefect server run on one worker, one after another: that worker's server, and
    their waits on real servers do not compete with each other. Those with servers of their own
    (`E2E_OWN_SERVERS`) are spread like the rest.

    The group is decided here, from the node id, and not by an `xdist_group` mark: xdist 3.8
    carries a mark's group by appending "@group" to the node id, which pytest 9's structured
    node ids silently ignore (pytest-dev/pytest-xdist#1386), so the e2e tests were spread over
    both workers, each starting its own server.
    """
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class E2EGroupScheduling(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            for prefix, unit in E2E_OWN_SERVERS.items():
                if nodeid.startswith(prefix):
                    return prefix if unit == "module" else nodeid
            if nodeid.startswith("tests/e2e/"):
                return "e2e"
            return super()._split_scope(nodeid)

    return E2EGroupScheduling(config, log)

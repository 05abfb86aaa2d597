"""Shared fixtures: an isolated MOLTBOT_HOME per test, one Prefect test server, one sandbox."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import moltbot  # noqa: F401  (Prefect telemetry defaults before Prefect starts a server)


@pytest.fixture(autouse=True)
def moltbot_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own MOLTBOT_HOME and working directory, and fast retry delays."""
    for name in list(os.environ):
        if name.startswith("MOLTBOT_"):
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    monkeypatch.setenv("MOLTBOT_HOME", str(home))
    monkeypatch.setenv("MOLTBOT_RETRY_BASE_DELAY", "0.01")
    monkeypatch.setenv("MOLTBOT_RETRY_MAX_DELAY", "0.05")
    monkeypatch.chdir(tmp_path)
    return home


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[str]:
    """One temporary Prefect server for the whole session; yields its API URL."""
    from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY
    from prefect.settings.context import temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    # Heartbeats make every flow call wait ~1 s at exit; tests do not need crash detection.
    with (
        temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
        prefect_test_harness(server_startup_timeout=60),
    ):
        yield str(PREFECT_API_URL.value())


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[object]:
    """One sandbox (Slack emulator + SMTP sink) on free ports for the session."""
    from moltbot.sandbox import Sandbox

    with Sandbox() as running:
        yield running


@pytest.fixture
def sandbox(sandbox_server: object) -> object:
    """The session sandbox with its recorded posts, mails and pending faults cleared."""
    sandbox_server.reset()
    return sandbox_server

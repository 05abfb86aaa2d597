"""End-to-end fixtures: a real `prefect server start` subprocess shared by the e2e tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from deployments.alerts import (
    CRASH_DETECTOR_NAME,
    FAILURE_ALERT_NAME,
    ensure_crash_detector,
    ensure_failure_alerts,
)
from moltbot.sandbox import Sandbox
from moltbot.sandbox.blocks import save_sandbox_blocks
from tests.e2e.crash import WINDOW_SECONDS, delete_automation
from tests.e2e.servers import PrefectServer


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """A Prefect server process on a free port with SQLite in a temporary folder."""
    server = PrefectServer(tmp_path_factory.mktemp("prefect-server"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """The working directory of the moltbot processes a test starts (its moltbot.toml)."""
    return tmp_path


@pytest.fixture
def detector(prefect_server: PrefectServer, sandbox: Sandbox) -> Iterator[str]:
    """Failure alerts to the sandbox's ops channel and a 15 s detector; the detector's id.

    Afterwards it deletes the automations it created (test_serve expects its `moltbot serve` to
    create the failure alert on this shared server) and gives a detector that was already there
    its default window back.
    """
    with prefect_server.as_current():
        save_sandbox_blocks(sandbox)
        alerts = ensure_failure_alerts("sandbox-ops")
        setup = ensure_crash_detector(within_seconds=WINDOW_SECONDS)
    try:
        yield str(setup.automation_id)
    finally:
        with prefect_server.as_current():
            if alerts.created:
                delete_automation(FAILURE_ALERT_NAME)
            if setup.created:
                delete_automation(CRASH_DETECTOR_NAME)
            else:
                ensure_crash_detector()

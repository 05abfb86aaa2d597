"""`moltbot demo` twice as a real process: first it delivers everywhere, then nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def run_demo(prefect_api: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "moltbot.cli", "demo"],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=180,
        check=False,
    )


def test_demo_delivers_once_then_reports_everything_done(
    prefect_api: str, moltbot_home: Path, tmp_path: Path
) -> None:
    first = run_demo(prefect_api, tmp_path)
    second = run_demo(prefect_api, tmp_path)

    assert first.returncode == 0, first.stderr
    assert "sandbox-slack  sent  -> Slack emulator (1 post(s) received)" in first.stdout
    assert "sandbox-email  sent  -> SMTP sink (1 e-mail(s) received)" in first.stdout
    assert "Wrote sample orders" in first.stdout
    assert second.returncode == 0, second.stderr
    assert "Using sample orders" in second.stdout
    assert second.stdout.count("already done, skipped") == 3
    assert "Slack emulator (0 post(s) received)" in second.stdout
    assert "Every delivery was already done" in second.stdout
    assert f"{prefect_api.removesuffix('/api')}/runs/flow-run/" in second.stdout
    for output in (first.stdout + first.stderr, second.stdout + second.stderr):
        assert "Traceback" not in output
        assert "ERROR" not in output
        assert "error" not in output.lower().replace("no error", "")
    outbox = moltbot_home / "outbox"
    assert len(list(outbox.glob("daily-report-*.html"))) == 1
    assert len(list(outbox.glob("daily-report-*-revenue.png"))) == 1

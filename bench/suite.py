"""The test suite's duration: `uv run pytest` as the README runs it, timed as a whole process."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

from bench.measure import REPO, Figure, fresh_folder

TARGET_SECONDS = 240


def measure() -> list[Figure]:
    """One run of the whole suite (about five minutes, so one run, not a median of five).

    The environment is the caller's without its Prefect and moltbot settings, as in CI; the
    suite's own workers (`-n auto`) and servers are its own business.
    """
    folder = fresh_folder("suite")
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("PREFECT_", "MOLTBOT_"))
    }
    started = time.monotonic()
    with (folder / "pytest.log").open("wb") as log:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, check=False,
        )  # fmt: skip
    seconds = time.monotonic() - started
    summary = _summary((folder / "pytest.log").read_text(encoding="utf-8", errors="replace"))
    passed = done.returncode == 0
    minutes, rest = divmod(round(seconds), 60)
    return [
        Figure(
            "suite",
            f"uv run pytest, whole process ({summary})",
            f"{minutes} min {rest:02d} s" + ("" if passed else f" (exit {done.returncode})"),
            f"≤ {TARGET_SECONDS // 60} min, passing",
            passed and seconds <= TARGET_SECONDS,
            ratio=seconds / TARGET_SECONDS,
            target_ratio=1,
            note="one run (a run takes minutes); its log is in the bench cache's runs/suite/",
        )
    ]


def _summary(output: str) -> str:
    """pytest's last line without its time, e.g. "2,189 passed, 3 warnings"."""
    found = re.findall(r"^=*\s*(\d+ (?:passed|failed).*?) in [\d.]+s", output, re.M)
    if not found:
        return "no summary line"
    return re.sub(r"\d{4,}", lambda number: f"{int(number.group()):,}", found[-1])

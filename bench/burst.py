"""Burst drain time: bench/dispatch_burst.py (the dispatcher's own benchmark) run as it is.

The script accepts a burst of payment events into a fresh SQLite inbox and times the
dispatcher's passes until nothing is pending, against its own temporary Prefect server
(`prefect_test_harness`, SQLite), five rounds after a warm-up, and prints the median.
"""

from __future__ import annotations

import re
import sys

from bench.measure import REPO, Figure, bench_env, fresh_folder, timed

# 10,000 events reach their automations within 2 minutes.
TARGET_PER_SECOND = 10_000 / 120


def measure(*, entries: int, runs: int) -> list[Figure]:
    script = REPO / "bench" / "dispatch_burst.py"
    if not script.exists():
        return [Figure("burst", "burst drain", "not measured (bench/dispatch_burst.py is absent)")]
    folder = fresh_folder("burst")
    log = folder / "run.log"
    run = timed(
        [sys.executable, str(script), str(entries), "--repeat", str(runs)],
        env=bench_env(PREFECT_HOME=str(folder / "prefect-home"), MOLTBOT_HOME=str(folder)),
        log=log,
    )
    output = log.read_text(errors="replace")
    found = re.search(r"batched: median ([\d.]+) s for (\d+) entries", output)
    if run.returncode != 0 or not found:
        tail = output.strip().splitlines()[-1:] or ["no output"]
        return [
            Figure(
                "burst",
                "burst drain",
                f"not measured (dispatch_burst.py exited {run.returncode}: {tail[0][:120]})",
            )
        ]
    seconds, count = float(found.group(1)), int(found.group(2))
    rate = count / seconds
    return [
        Figure(
            "burst",
            f"burst of {count:,} inbox entries dispatched (batched runs)",
            f"{seconds:.1f} s ({rate:,.0f} entries/s; 10,000 would take {10_000 / rate:,.0f} s)",
            "10,000 in ≤ 120 s (≥ 83 entries/s)",
            rate >= TARGET_PER_SECOND,
            ratio=rate,
            target_ratio=TARGET_PER_SECOND,
            lower_is_better=False,
            note="Prefect on SQLite (prefect_test_harness), runs created, not executed; "
            "the target is stated for PostgreSQL",
        ),
        Figure("peak memory", "dispatch_burst.py process", f"{run.peak_mib:,.0f} MiB"),
    ]

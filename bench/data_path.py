"""The data path: daily-report and inventory-alert flows against plain pandas and DuckDB.

Reuses the scripts beside this module as they are (`daily_report.py` and `inventory_alert.py`:
`make`, `plain`, `flow`, `duckdb`), each run a fresh process under `/usr/bin/time -v`, the
commands taken in turn after a warm-up round so a drift of the machine's speed hits them all.
Each automation's flow is set against plain pandas and against DuckDB doing the same work.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.measure import REPO, Figure, Rounds, bench_env, fresh_folder, rounds

SCRIPTS = REPO / "bench"
# bench/daily_report.py writes 90 days of orders; an order has about 1.47 lines.
LINES_PER_ORDER_DAY = 90 * 1.469


def _make(script: str, folder: Path, size: int, env: dict[str, str], log: Path) -> None:
    with log.open("ab") as output:
        subprocess.run(
            [sys.executable, str(SCRIPTS / script), "make", str(folder), str(size)],
            env=env, cwd=REPO, stdout=output, stderr=subprocess.STDOUT, check=True,
        )  # fmt: skip


def daily_report(api_url: str, *, rows: int, runs: int) -> list[Figure]:
    """daily-report (dry run) on `rows` order lines: the flow, plain pandas, DuckDB."""
    folder = fresh_folder("daily-report")
    log = folder / "runs.log"
    env = bench_env(
        PREFECT_API_URL=api_url,
        PREFECT_HOME=str(folder / "prefect-home"),
        MOLTBOT_HOME=str(folder / "home"),
    )
    _make("daily_report.py", folder, round(rows / LINES_PER_ORDER_DAY), env, log)
    source = folder / "orders.csv"
    lines = sum(1 for _ in source.open("rb")) - 1
    script = [sys.executable, str(SCRIPTS / "daily_report.py")]
    taken = rounds(
        {name: [*script, name, str(source)] for name in ("flow", "plain", "duckdb")},
        runs=runs,
        env=env,
        log=log,
    )
    size = f"{lines:,} lines"
    vs_duckdb = taken.ratio("flow", "duckdb")
    return [
        Figure(
            "data path",
            f"daily-report flow / DuckDB, {size}",
            f"{vs_duckdb:.2f}× ({taken.wall('flow'):.2f} s / {taken.wall('duckdb'):.2f} s)",
            "≤ 2× (at 2.6 M lines)",
            vs_duckdb <= 2,
            ratio=vs_duckdb,
            target_ratio=2,
        ),
        _versus_plain("daily-report", size, taken),
        _peaks("daily-report", size, taken),
    ]


def inventory_alert(api_url: str, *, skus: int, runs: int) -> list[Figure]:
    """inventory-alert on `skus` items (2% change state): the flow, plain pandas, DuckDB."""
    folder = fresh_folder("inventory-alert")
    log = folder / "runs.log"
    env = bench_env(
        PREFECT_API_URL=api_url,
        PREFECT_HOME=str(folder / "prefect-home"),
        MOLTBOT_HOME=str(folder / "home"),
    )
    _make("inventory_alert.py", folder, skus, env, log)
    script = [sys.executable, str(SCRIPTS / "inventory_alert.py")]
    taken = rounds(
        {name: [*script, name, str(folder)] for name in ("flow", "plain", "duckdb")},
        runs=runs,
        env=env,
        log=log,
    )
    size = f"{skus:,} SKUs"
    vs_duckdb = taken.ratio("flow", "duckdb")
    return [
        Figure(
            "data path",
            f"inventory-alert flow / DuckDB, {size}",
            f"{vs_duckdb:.2f}× ({taken.wall('flow'):.2f} s / {taken.wall('duckdb'):.2f} s)",
            note="DuckDB SQL on the file and the stored states (read with sqlite3): the floor",
            ratio=vs_duckdb,
        ),
        _versus_plain("inventory-alert", size, taken),
        _peaks("inventory-alert", size, taken),
    ]


def _versus_plain(automation: str, size: str, taken: Rounds) -> Figure:
    ratio = taken.ratio("flow", "plain")
    return Figure(
        "data path",
        f"{automation} flow / plain pandas, {size}",
        f"{ratio:.2f}× ({taken.wall('flow'):.2f} s / {taken.wall('plain'):.2f} s)",
        note="whole processes; the difference is Prefect's fixed cost plus imports",
        ratio=ratio,
    )


def _peaks(automation: str, size: str, taken: Rounds) -> Figure:
    peaks = " / ".join(f"{taken.peak(name):,.0f}" for name in taken.runs)
    return Figure(
        "peak memory",
        f"{automation} {' / '.join(taken.runs)}, {size}",
        f"{peaks} MiB",
        note="largest resident set of each process (/usr/bin/time -v), median of the runs",
    )

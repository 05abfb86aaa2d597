"""`python -m bench [--quick]`: every benchmark, a table, bench/RESULTS.md and bench/results.png.

One Prefect server (`prefect server start` on a free port, on a throwaway PostgreSQL) serves
every benchmark that runs flows and is stopped at the end. A benchmark that fails is reported as
a row saying so, and the others still run.
"""

from __future__ import annotations

import argparse
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from bench import api_calls, burst, data_path, fixed_cost, gateway_load, suite
from bench.measure import (
    CACHE,
    Figure,
    create_databases,
    machine,
    postgres_cluster,
    prefect_server,
)
from bench.results import print_table, write_chart, write_markdown

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Sizes:
    """How much each benchmark does: the full run, or the smaller `--quick` one."""

    mode: str
    runs: int
    order_lines: int
    skus: int
    gateway: bool
    jira_tickets: int
    fixed_cost_runs: int
    burst_entries: int
    # daily-report again at the size the target names (2.6 M lines); None: not run.
    target_order_lines: int | None = None
    # The whole test suite timed once (minutes: the full run only).
    suite: bool = False


FULL = Sizes(
    "full",
    runs=5,
    order_lines=1_000_000,
    skus=1_000_000,
    gateway=True,
    jira_tickets=120,
    fixed_cost_runs=9,
    burst_entries=10_000,
    target_order_lines=2_600_000,
    suite=True,
)
QUICK = Sizes(
    "quick",
    runs=5,
    order_lines=100_000,
    skus=100_000,
    gateway=False,
    jira_tickets=60,
    fixed_cost_runs=5,
    burst_entries=1_000,
)


def benchmarks(sizes: Sizes, api_url: str) -> list[tuple[str, Callable[[], list[Figure]]]]:
    """Every benchmark of this run, by name, in the order they run."""
    chosen: list[tuple[str, Callable[[], list[Figure]]]] = [
        ("fixed cost", lambda: fixed_cost.measure(api_url, runs=sizes.fixed_cost_runs)),
        ("CLI start", lambda: fixed_cost.cli_start(runs=sizes.runs)),
        ("API calls", lambda: api_calls.measure(api_url, tickets=sizes.jira_tickets)),
        (
            "daily-report",
            lambda: data_path.daily_report(api_url, rows=sizes.order_lines, runs=sizes.runs),
        ),
        (
            "inventory-alert",
            lambda: data_path.inventory_alert(api_url, skus=sizes.skus, runs=sizes.runs),
        ),
    ]
    if sizes.target_order_lines:
        lines = sizes.target_order_lines
        chosen.append(
            (
                "daily-report at the target size",
                lambda: data_path.daily_report(api_url, rows=lines, runs=sizes.runs),
            )
        )
    chosen.append(("burst", lambda: burst.measure(entries=sizes.burst_entries, runs=sizes.runs)))
    if sizes.gateway:
        chosen.append(("gateway", lambda: gateway_load.measure(api_url, runs=sizes.runs)))
    if sizes.suite:
        chosen.append(("test suite", suite.measure))
    return chosen


def _prefect_database(server: str) -> str:
    create_databases(server, "prefect")
    return f"postgresql+asyncpg://{server}/prefect"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smaller inputs (100 k rows), no gateway load, no test suite: minutes instead of ~15",
    )
    options = parser.parse_args()
    sizes = QUICK if options.quick else FULL
    # Wide enough for the table when the output goes to a file or a pipe.
    console = Console() if Console().is_terminal else Console(width=170)
    started = time.monotonic()
    where = machine()
    figures: list[Figure] = []
    # The Prefect server on PostgreSQL, as in production: on SQLite its own services' writes
    # (events, task runs) make some API calls answer 503, and the client waits 2 s to retry.
    with (
        postgres_cluster(log_to=CACHE / "runs" / "prefect-postgres.log") as database,
        prefect_server(CACHE / "runs" / "prefect-server", _prefect_database(database)) as api_url,
    ):
        for name, run in benchmarks(sizes, api_url):
            console.log(f"{name} …")
            began = time.monotonic()
            try:
                figures.extend(run())
            except Exception as exc:  # one broken benchmark must not hide the others' figures
                console.log(traceback.format_exc(limit=3))
                figures.append(Figure(name, name, f"not measured ({type(exc).__name__}: {exc})"))
            console.log(f"{name}: {time.monotonic() - began:.0f} s")
    if not sizes.gateway:
        figures.append(
            Figure("gateway", "gateway vs n8n at 1, 10, 50 connections", "not measured (--quick)")
        )
    if not sizes.suite:
        figures.append(Figure("suite", "uv run pytest, whole process", "not measured (--quick)"))
    elapsed = time.monotonic() - started
    print_table(figures, console)
    chart = HERE / "results.png"
    write_chart(figures, chart)
    write_markdown(
        figures,
        machine=where,
        mode=sizes.mode,
        elapsed_s=elapsed,
        path=HERE / "RESULTS.md",
        chart=chart,
    )
    console.log(f"wrote {HERE / 'RESULTS.md'} and {chart} in {elapsed / 60:.1f} min")


if __name__ == "__main__":
    main()

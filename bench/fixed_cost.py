"""Fixed cost of one automation run in a warm process: the flow against its plain functions.

Run by `python -m bench` as a worker process (one per automation) against a Prefect server the
benchmark started:

    python -m bench.fixed_cost daily-report DIR OUT.json --runs 7

With Prefect's flow-run heartbeat off, then every 30 s: it runs the flow once to warm up
(imports, first client, flow and task registration), then `--runs` times, timing each call;
then the same computation without Prefect (the plain functions the flow's tasks call), warmed
up and timed the same way. It counts the HTTP requests
each run sends to the Prefect API (every httpx transport in the process) and writes medians, the
per-run figures and the process's peak memory to OUT.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

from bench.measure import BIN, REPO, Figure, bench_env, fresh_folder, rounds

REPORT_DATE = date(2026, 11, 23)
TIMEZONE = "Asia/Seoul"


class RequestCounter:
    """Counts the HTTP requests this process sends to one base URL, by method and path."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.seen: Counter[str] = Counter()

    def install(self) -> None:
        """Wrap httpx's sync and async transports: every client Prefect builds goes through them."""
        import httpx

        counter = self

        sync_send = httpx.HTTPTransport.handle_request
        async_send = httpx.AsyncHTTPTransport.handle_async_request

        def handle_request(transport: Any, request: Any) -> Any:
            counter.note(request)
            return sync_send(transport, request)

        async def handle_async_request(transport: Any, request: Any) -> Any:
            counter.note(request)
            return await async_send(transport, request)

        httpx.HTTPTransport.handle_request = handle_request  # type: ignore[method-assign]
        httpx.AsyncHTTPTransport.handle_async_request = handle_async_request  # type: ignore[method-assign]

    def note(self, request: Any) -> None:
        url = str(request.url)
        if url.startswith(self.base_url):
            self.seen[f"{request.method} {url[len(self.base_url) :].split('?')[0]}"] += 1

    def total(self) -> int:
        return sum(self.seen.values())


# The flows are called as `moltbot run` calls them: with the run's tags given at its creation
# (`run_tags`), so no run spends a request adding them afterwards (`label_current_run`).


def _daily_report(folder: Path) -> tuple[Callable[[], Any], Callable[[], Any]]:
    from prefect import tags

    from flows.daily_report.flow import compute_report, daily_report
    from moltbot.config.settings import get_settings
    from moltbot.runlabels import run_tags
    from tasks.sources import read_table

    source = str(folder / "orders.csv")
    settings = get_settings()

    def flow() -> Any:
        with tags(*run_tags("daily-report", dry_run=True, origin="cli")):
            return daily_report(source=source, report_date=REPORT_DATE, dry_run=True)

    def plain() -> Any:
        # The computation the flow's tasks do (read, validate, KPIs, chart, message, artifact
        # Markdown), called as plain functions: no flow or task runs, no API.
        return compute_report.fn(
            read_table(source),
            source=source,
            report_date=REPORT_DATE,
            timezone=TIMEZONE,
            columns=None,
            currency=settings.currency,
            locale=settings.locale,
        )

    return flow, plain


def _inventory_alert(folder: Path) -> tuple[Callable[[], Any], Callable[[], Any]]:
    # The two snapshots in turn, so every run finds state changes to alert on and store.
    from prefect import tags

    from bench.inventory_alert import _run_plain
    from flows.inventory_alert.flow import inventory_alert
    from moltbot.runlabels import run_tags

    snapshots = [folder / "stock-1.csv", folder / "stock-0.csv"]
    turns = {"flow": 0, "plain": 0}

    def next_snapshot(side: str) -> Path:
        turns[side] += 1
        return snapshots[turns[side] % 2]

    def flow() -> Any:
        with tags(*run_tags("inventory-alert", origin="cli")):
            return inventory_alert(source=str(next_snapshot("flow")))

    def plain() -> Any:
        return _run_plain(next_snapshot("plain"), f"sqlite:///{folder / 'plain.sqlite3'}")

    return flow, plain


AUTOMATIONS = {"daily-report": _daily_report, "inventory-alert": _inventory_alert}


def _timed_runs(call: Callable[[], Any], runs: int, counter: RequestCounter) -> dict[str, Any]:
    call()  # warm-up
    walls: list[float] = []
    requests: list[int] = []
    seen_before = Counter(counter.seen)
    for _ in range(runs):
        before = counter.total()
        start = time.perf_counter()
        call()
        walls.append(time.perf_counter() - start)
        requests.append(counter.total() - before)
    return {
        "median_s": statistics.median(walls),
        "runs_s": walls,
        "median_requests": statistics.median(requests),
        "requests": requests,
        "requests_per_run_by_path": _per_run_paths(counter.seen - seen_before, runs),
    }


def _per_run_paths(seen: Counter[str], runs: int) -> dict[str, float]:
    """Requests per run by method and path, with run ids folded into `{id}`."""
    folded: Counter[str] = Counter()
    for key, count in seen.items():
        folded[re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}", "{id}", key)] += count
    return {key: count / runs for key, count in sorted(folded.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("automation", choices=sorted(AUTOMATIONS))
    parser.add_argument("folder", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--runs", type=int, default=7)
    options = parser.parse_args()

    counter = RequestCounter(os.environ["PREFECT_API_URL"])
    counter.install()
    from prefect.settings.context import temporary_settings

    from moltbot.runtime import one_prefect_client

    flow, plain = AUTOMATIONS[options.automation](options.folder)
    taken: dict[str, Any] = {}
    # Prefect 3.9 sends a flow-run heartbeat by default (every 180 s); "off" turns it off, "30"
    # is what `moltbot serve` and `moltbot deploy` give their runs. Each setting is warmed up.
    # A warm process keeps its Prefect client (`one_prefect_client`): without it Prefect builds
    # one per run, and that is a cost of the process's start, not of the run.
    for heartbeat in ("off", "30"):
        frequency = None if heartbeat == "off" else int(heartbeat)
        with (
            temporary_settings(updates={"flows.heartbeat_frequency": frequency}),
            one_prefect_client(),
        ):
            taken[heartbeat] = {
                "flow": _timed_runs(flow, options.runs, counter),
                "plain": _timed_runs(plain, options.runs, counter),
            }
    taken["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    options.out.write_text(json.dumps(taken, indent=1))


def measure(api_url: str, *, runs: int) -> list[Figure]:
    """Both automations, each in its own warm worker process, heartbeat off then at 30 s."""
    folder = fresh_folder("fixed-cost")
    log = folder / "runs.log"
    env = bench_env(
        PREFECT_API_URL=api_url,
        PREFECT_HOME=str(folder / "prefect-home"),
        MOLTBOT_HOME=str(folder / "home"),
        MOLTBOT_LEDGER_URL=f"sqlite:///{folder / 'ledger.sqlite3'}",
    )
    with log.open("ab") as output:
        for script, size in (("daily_report.py", "20"), ("inventory_alert.py", "200")):
            subprocess.run(
                [sys.executable, str(REPO / "bench" / script), "make", str(folder), size],
                env=env, cwd=REPO, stdout=output, stderr=subprocess.STDOUT, check=True,
            )  # fmt: skip
    figures: list[Figure] = []
    for automation, what in (
        ("daily-report", "daily-report dry run, 2,600 order lines"),
        ("inventory-alert", "inventory-alert, 200 SKUs, outbox delivery"),
    ):
        out = folder / f"{automation}.json"
        with log.open("ab") as output:
            subprocess.run(
                [sys.executable, "-m", "bench.fixed_cost", automation, str(folder), str(out),
                 "--runs", str(runs)],
                env=env, cwd=REPO, stdout=output, stderr=subprocess.STDOUT, check=True,
            )  # fmt: skip
        taken = json.loads(out.read_text())
        figures.extend(_figures(automation, what, taken))
    return figures


def cli_start(*, runs: int) -> list[Figure]:
    """`moltbot --help` against a bare Python start, whole processes in turn."""
    folder = fresh_folder("cli-start")
    taken = rounds(
        {"moltbot": [str(BIN / "moltbot"), "--help"], "python": [sys.executable, "-c", "pass"]},
        runs=runs,
        env=bench_env(MOLTBOT_HOME=str(folder / "home"), COLUMNS="100"),
        log=folder / "runs.log",
    )
    ratio = taken.ratio("moltbot", "python")
    return [
        Figure(
            "fixed cost",
            "moltbot --help / bare python start",
            f"{ratio:.1f}× ({taken.wall('moltbot'):.2f} s / {taken.wall('python'):.2f} s)",
            note="whole processes; the imports a command pays before it does anything "
            "(kept off the chart: a ratio to ~10 ms says little)",
        ),
        Figure("peak memory", "moltbot --help process", f"{taken.peak('moltbot'):,.0f} MiB"),
    ]


def _figures(automation: str, what: str, taken: dict[str, Any]) -> list[Figure]:
    target_ms = 150
    off, on = taken["off"], taken["30"]
    plain_ms = off["plain"]["median_s"] * 1000
    figures = []
    for label, figures_of in (("heartbeat off", off), ("heartbeat every 30 s", on)):
        flow_ms = figures_of["flow"]["median_s"] * 1000
        cost_ms = flow_ms - figures_of["plain"]["median_s"] * 1000
        figures.append(
            Figure(
                "fixed cost",
                f"{automation} run in a warm process, {label}",
                f"{cost_ms:,.0f} ms (flow {flow_ms:,.0f} ms − plain "
                f"{figures_of['plain']['median_s'] * 1000:,.0f} ms)",
                f"≤ {target_ms} ms",
                cost_ms <= target_ms,
                ratio=cost_ms / target_ms,
                target_ratio=1,
                note=what,
            )
        )
    exit_wait_ms = (on["flow"]["median_s"] - off["flow"]["median_s"]) * 1000
    requests = off["flow"]["median_requests"]
    figures += [
        Figure(
            "fixed cost",
            f"{automation} heartbeat cost (30 s − off)",
            f"{exit_wait_ms:,.0f} ms per run",
            note="the heartbeat thread is joined at the run's end; it sleeps in 1 s steps",
        ),
        Figure(
            "fixed cost",
            f"{automation} flow / plain in a warm process",
            f"{off['flow']['median_s'] * 1000 / plain_ms:.2f}×",
            ratio=off["flow"]["median_s"] * 1000 / plain_ms,
            note=what,
        ),
        Figure(
            "API calls",
            f"{automation} Prefect API requests per run",
            f"{requests:g} HTTP requests",
            note="; ".join(
                f"{path} {count:g}"
                for path, count in off["flow"]["requests_per_run_by_path"].items()
            )
            + " (task runs and logs go over the events websocket and log batches)",
        ),
        Figure(
            "peak memory",
            f"{automation} warm worker process (flow + plain runs)",
            f"{taken['peak_mib']:,.0f} MiB",
        ),
    ]
    return figures


if __name__ == "__main__":
    main()

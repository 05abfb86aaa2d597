"""Benchmark: how long the webhook dispatcher takes to turn a burst of pending inbox entries into
flow runs, batched (one run per 100 entries) against one run per entry.

Usage:
    uv run python bench/dispatch_burst.py [ENTRIES] [--repeat N] [--per-entry]

Each round accepts ENTRIES (default 1,000) payment events into a fresh SQLite inbox, then times
`Dispatcher.dispatch_pending` passes until none is pending, against a temporary Prefect server
(`prefect_test_harness`, SQLite), with a real deployment of a sink flow that takes `inbox_ids`.
`--per-entry` also times the same burst through a route with custom parameters (one run per
entry), the dispatch before batching. Prints each round and the median after a warm-up round.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def sink(inbox_ids: list[str], note: str = "") -> int:
    """The flow the runs are for (never executed here: runs are only created)."""
    return len(inbox_ids)


def one_round(entries: int, route: dict[str, Any], folder: Path) -> tuple[float, int, int]:
    """(seconds to dispatch, runs created, passes) for one burst of `entries`."""
    from moltbot.state.inbox import Inbox
    from moltbot.state.ledger import Ledger
    from moltbot.webhooks.config import GatewayConfig
    from moltbot.webhooks.dispatcher import Dispatcher

    config = GatewayConfig.from_table({"routes": {"payment.failed": route}})
    with Ledger(f"sqlite:///{folder / f'{uuid.uuid4().hex}.sqlite3'}") as ledger:
        inbox = Inbox(ledger)
        now = datetime.now(UTC)
        for number in range(entries):
            event = {
                "id": f"evt_{number:06d}",
                "type": "payment.failed",
                "occurred_at": now.isoformat(),
                "payload": {"amount": 45000, "order_id": f"A-{number:06d}"},
            }
            inbox.accept("stripe", event, received_at=now)
        dispatcher = Dispatcher(inbox, config)
        passes = 0
        started = time.perf_counter()
        while inbox.counts()["pending"]:
            counts = dispatcher.dispatch_pending()
            passes += 1
            if counts.retrying or counts.failed:
                raise SystemExit(f"dispatch failed: {counts}")
        elapsed = time.perf_counter() - started
        runs = len({entry.flow_run_id for entry in inbox.entries()})
    return elapsed, runs, passes


def measure(label: str, entries: int, route: dict[str, Any], repeat: int, folder: Path) -> float:
    one_round(min(entries, 100), route, folder)  # warm-up: imports, clients, the deployment
    seconds = []
    for number in range(repeat):
        elapsed, runs, passes = one_round(entries, route, folder)
        seconds.append(elapsed)
        print(
            f"{label} round {number + 1}: {entries} entries -> {runs} runs in {elapsed:.2f} s "
            f"({passes} passes, {entries / elapsed:.0f} entries/s)"
        )
    median = statistics.median(seconds)
    print(f"{label}: median {median:.2f} s for {entries} entries ({entries / median:.0f}/s)")
    return median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("entries", nargs="?", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--per-entry", action="store_true", help="also time one run per entry")
    args = parser.parse_args()

    import logging

    from prefect import flow
    from prefect.testing.utilities import prefect_test_harness

    logging.getLogger("prefect").setLevel(logging.WARNING)
    with prefect_test_harness(server_startup_timeout=60), tempfile.TemporaryDirectory() as tmp:
        sink_flow = flow(name="bench-dispatch-sink")(sink)
        name = f"d-{uuid.uuid4().hex[:8]}"
        sink_flow.to_deployment(name=name).apply()
        deployment = f"bench-dispatch-sink/{name}"
        batched = measure(
            "batched", args.entries, {"deployment": deployment}, args.repeat, Path(tmp)
        )
        if args.per_entry:
            route = {
                "deployment": deployment,
                "parameters": {"inbox_ids": ["{{ inbox_id }}"], "note": "one run per entry"},
            }
            alone = measure("per-entry", args.entries, route, args.repeat, Path(tmp))
            print(f"per-entry / batched: {alone / batched:.1f}x")


if __name__ == "__main__":
    main()

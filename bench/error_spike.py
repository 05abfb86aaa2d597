"""Benchmark: error-spike's reading and counting step on a large JSON-lines log, first and next run.

Usage (see bench/README.md):
    uv run python bench/error_spike.py make FILE [MEGABYTES]   # default 1024: a ~1 GB log
    uv run python bench/error_spike.py run FILE                # first run, +1 MB, next run
    uv run python bench/error_spike.py flow FILE               # the whole flow, first and next

`run` times `tasks.logs.count_log_errors` (the flow's reading and counting step: scan, count,
commit offsets and counts in one transaction) without Prefect runs, against a fresh ledger in a
temporary MOLTBOT_HOME; then it appends ~1 MB of lines and times the incremental run. It also
times a plain read of the file in the same chunks, the disk/page-cache floor.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

MESSAGES_INFO = (
    "GET /api/orders/{n} 200 in {ms} ms",
    "user {n} signed in",
    "cache refreshed: {n} keys",
    "retrying after error on attempt {k}, succeeded",  # holds "error": a pre-filter candidate
)
MESSAGES_ERROR = (
    "payment failed for user{n}@example.com after {ms} ms",
    "order {n} not found",
    "upstream 502 from payments-{k}",
    "timeout talking to db-{k} after {ms} ms",
)


def _lines(count: int, start: datetime, seconds: float, seed: int) -> list[str]:
    """`count` log lines spread over `seconds` from `start`: ~2% ERROR, 0.1% CRITICAL."""
    import numpy as np

    rng = np.random.default_rng(seed)
    offsets = np.sort(rng.uniform(0, seconds, count))
    draw = rng.random(count)
    numbers = rng.integers(1, 10**6, count)
    millis = rng.integers(5, 5000, count)
    base = start.timestamp()
    out = []
    for offset, roll, n, ms in zip(offsets, draw, numbers, millis, strict=True):
        stamp = datetime.fromtimestamp(base + offset, UTC).isoformat(timespec="milliseconds")
        if roll < 0.001:
            level, text = "CRITICAL", MESSAGES_ERROR[n % 4]
        elif roll < 0.021:
            level, text = "ERROR", MESSAGES_ERROR[n % 4]
        else:
            level, text = ("WARN" if roll > 0.99 else "INFO"), MESSAGES_INFO[n % 4]
        message = text.format(n=n, ms=ms, k=n % 7)
        out.append(
            f'{{"timestamp":"{stamp}","level":"{level}","logger":"shop.api",'
            f'"message":{json.dumps(message)},"request_id":"req-{n:08x}","host":"web-{n % 5}"}}\n'
        )
    return out


def make(path: str, megabytes: str = "1024") -> None:
    """Write a JSON-lines log of about `megabytes` MB spanning the last 7 days."""
    target = int(megabytes) * 1024 * 1024
    file = Path(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    # Lines are ~200 bytes; each batch covers its share of the 7 days.
    batch = 200_000
    batches = max(target // (batch * 200), 1)
    span = timedelta(days=7).total_seconds()
    start = datetime.now(UTC) - timedelta(days=7)
    written = 0
    with file.open("w", encoding="utf-8") as handle:
        index = 0
        while written < target:
            lines = _lines(
                batch, start + timedelta(seconds=span * index / batches), span / batches, index
            )
            text = "".join(lines)
            handle.write(text)
            written += len(text)
            index += 1
    print(f"wrote {written / 1e6:,.0f} MB to {file}")


def _plain_read(path: Path) -> float:
    from moltbot.logscan import CHUNK_BYTES

    began = time.perf_counter()
    with path.open("rb") as handle:
        while handle.read(CHUNK_BYTES):
            pass
    return time.perf_counter() - began


def _count(path: Path, now: datetime) -> tuple[float, object]:
    from tasks.logs import count_log_errors, parse_sources

    [source] = parse_sources({"app": {"paths": str(path)}}, timezone="UTC")
    began = time.perf_counter()
    result = count_log_errors.fn(
        "error-spike", source, window_minutes=5, now=now, keep_days=8, commit=True
    )
    return time.perf_counter() - began, result


def run(path: str) -> None:
    """Time the first (full) and the next (incremental, +1 MB) reading and counting run."""
    file = Path(path)
    with tempfile.TemporaryDirectory() as home:
        os.environ["MOLTBOT_HOME"] = home
        size = file.stat().st_size
        plain = _plain_read(file)
        first, result = _count(file, datetime.now(UTC))
        stats = result.stats
        print(
            f"plain read {size / 1e6:,.0f} MB: {plain:.2f} s ({size / 1e6 / plain:,.0f} MB/s)\n"
            f"first run: {first:.2f} s ({size / 1e6 / first:,.0f} MB/s), {stats.lines:,} lines, "
            f"{stats.error_lines:,} error lines in {len(result.tally.counts):,} windows"
        )
        appended = "".join(_lines(5000, datetime.now(UTC) - timedelta(minutes=2), 60, 99))
        with file.open("a", encoding="utf-8") as handle:
            handle.write(appended)
        second, result = _count(file, datetime.now(UTC))
        stats = result.stats
        print(
            f"next run after appending {len(appended) / 1e6:.2f} MB: {second * 1000:.0f} ms, "
            f"{stats.bytes_read / 1e6:.2f} MB read, {stats.error_lines:,} error lines"
        )


def flow(path: str) -> None:
    """Time the whole flow (outbox delivery) on the file: the first run, then +1 MB."""
    file = Path(path)
    with tempfile.TemporaryDirectory() as home:
        os.environ["MOLTBOT_HOME"] = home
        from flows.error_spike.flow import error_spike

        sources = {"app": {"paths": str(file)}}
        for label in ("first", "next"):
            if label == "next":
                appended = "".join(_lines(5000, datetime.now(UTC) - timedelta(minutes=2), 60, 7))
                with file.open("a", encoding="utf-8") as handle:
                    handle.write(appended)
            began = time.perf_counter()
            result = error_spike(sources=sources)
            megabytes = result["read"]["bytes_read"] / 1e6
            print(
                f"flow {label} run: {time.perf_counter() - began:.2f} s, read {megabytes:,.1f} MB"
            )


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    commands = {"make": make, "run": run, "flow": flow}
    if len(sys.argv) < 3 or sys.argv[1] not in commands:
        raise SystemExit(__doc__)
    commands[sys.argv[1]](*sys.argv[2:])

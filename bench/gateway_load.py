"""Webhook acknowledgements under load: the moltbot gateway, and n8n when it installs.

The gateway (`moltbot webhook serve`) runs as its own process with a stripe-scheme source whose
secret comes from `MOLTBOT_WEBHOOK_SECRET_BENCH`, routing every event type to a Prefect event,
so its dispatcher works against the benchmark's Prefect server while the load runs. One load
generator (this process: asyncio, `c` senders each posting signed events back to back on a
keep-alive connection of its own, `KeepAliveConnection`) drives 1, 10 and 50 connections, each
for a few seconds, five times after a warm-up. Every answer is counted; at the end the number of
202s must equal the inbox's entries (`GET /healthz`): nothing acknowledged and lost.

n8n is installed from the npm registry into ~/.cache/moltbot-bench/n8n by the benchmark itself
(`npm install n8n`); when that fails or n8n does not start, the row says why.

For quick iterations on the gateway alone (no n8n), at chosen connection counts, on a SQLite
or a PostgreSQL ledger (a throwaway cluster started from /usr/lib/postgresql's binaries):

    uv run python -m bench.gateway_load --ledger sqlite --ledger postgres --connections 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.measure import (
    BIN,
    CACHE,
    Figure,
    bench_env,
    free_port,
    fresh_folder,
    postgres_cluster,
    prefect_server,
    stop,
    wait_until,
)

SECRET = "whsec_bench_secret"
CONNECTIONS = (1, 10, 50)
SECONDS_PER_RUN = 4.0
N8N_FOLDER = CACHE / "n8n"
GATEWAY_CONFIG = """
[webhooks]
max_connections_per_client = 100

[webhooks.sources.bench]
block = "webhook-bench"
scheme = "stripe"

[webhooks.routes]
default = { event = "moltbot.bench.{type}" }
"""


@dataclass
class Load:
    """What one load run saw: answers by status and each acknowledgement's latency."""

    seconds: float = 0.0
    statuses: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    errors: int = 0

    @property
    def acknowledged(self) -> int:
        return self.statuses.get(202, 0) + self.statuses.get(200, 0)

    def per_second(self) -> float:
        return self.acknowledged / self.seconds if self.seconds else 0.0

    def quantile(self, q: float) -> float:
        if len(self.latencies) < 2:
            return self.latencies[0] if self.latencies else float("nan")
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[round(q * 100) - 1]


class EventNumbers:
    """Unique event ids across every run, so each request is a new webhook."""

    def __init__(self) -> None:
        self.next = 0

    def take(self) -> int:
        self.next += 1
        return self.next


class KeepAliveConnection:
    """One HTTP/1.1 keep-alive connection that posts a body and reads back the answer's status.

    The load generator shares this 2-core machine with the server it measures. httpx spends
    about 1 ms of CPU per request here, half a core at 600 requests/s, taken from the server
    under test, and more from the faster server. This writes each request in one piece and
    reads the answer's status line, headers and body (by Content-Length, or chunked): about
    a tenth of that. An answer with `Connection: close`, or a broken connection, reconnects.
    """

    def __init__(self, url: str) -> None:
        parts = httpx.URL(url)
        self.host = parts.host
        self.port = parts.port or 80
        self.target = parts.raw_path.decode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, body: bytes, headers: dict[str, str]) -> int:
        """Send one POST and return its status code (after reading the whole answer)."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        self.writer.write(
            f"POST {self.target} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Length: {len(body)}\r\n{head}\r\n".encode("latin-1")
            + body
        )
        # On an error the caller closes the connection (a half-read answer leaves it unusable).
        status, closes = await self._read_answer(self.reader)
        if closes:
            await self.close()
        return status

    @staticmethod
    async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bool]:
        lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        fields = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines[1:] if line)
        }
        if fields.get("transfer-encoding", "").lower() == "chunked":
            while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                await reader.readexactly(size + 2)
            while await reader.readuntil(b"\r\n") != b"\r\n":  # trailer fields, then the end
                pass
        else:
            await reader.readexactly(int(fields.get("content-length", "0")))
        return status, fields.get("connection", "").lower() == "close"

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None


async def _load(
    url: str, connections: int, seconds: float, sign: bool, numbers: EventNumbers
) -> Load:
    from moltbot.webhooks.signatures import sign_stripe

    seen = Load()
    deadline = time.perf_counter() + seconds

    async def sender() -> None:
        connection = KeepAliveConnection(url)
        try:
            while time.perf_counter() < deadline:
                number = numbers.take()
                body = json.dumps(
                    {
                        "id": f"evt_bench_{number}",
                        "type": "bench.event",
                        "created": int(time.time()),
                        "data": {"order_id": f"B-{number}", "amount": 45000},
                    }
                ).encode()
                headers = {"Content-Type": "application/json"}
                if sign:
                    headers["Stripe-Signature"] = sign_stripe(body, SECRET, int(time.time()))
                start = time.perf_counter()
                try:
                    status = await asyncio.wait_for(connection.post(body, headers), timeout=30)
                except (OSError, asyncio.IncompleteReadError, ValueError, TimeoutError):
                    await connection.close()  # the next post reconnects
                    seen.errors += 1
                    continue
                seen.statuses[status] = seen.statuses.get(status, 0) + 1
                if status in (200, 202):
                    seen.latencies.append(time.perf_counter() - start)
        finally:
            await connection.close()

    began = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(connections)))
    seen.seconds = time.perf_counter() - began
    return seen


def _levels(
    url: str,
    *,
    runs: int,
    sign: bool,
    numbers: EventNumbers,
    every: list[Load] | None = None,
    levels: Sequence[int] = CONNECTIONS,
    seconds: float = SECONDS_PER_RUN,
) -> dict[int, list[Load]]:
    """A warm-up, then `runs` runs of every connection count in turn (all kept in `every`)."""
    every = [] if every is None else every
    taken: dict[int, list[Load]] = {c: [] for c in levels}
    every.append(asyncio.run(_load(url, 10, 2.0, sign, numbers)))
    for _ in range(runs):
        for connections in levels:
            load = asyncio.run(_load(url, connections, seconds, sign, numbers))
            taken[connections].append(load)
            every.append(load)
    return taken


def _gateway(
    api_url: str,
    runs: int,
    *,
    ledger_url: str | None = None,
    levels: Sequence[int] = CONNECTIONS,
    seconds: float = SECONDS_PER_RUN,
    profile: Path | None = None,
    code: Path | None = None,
) -> tuple[dict[int, list[Load]], dict[str, Any], int]:
    folder = fresh_folder("gateway")
    (folder / "moltbot.toml").write_text(GATEWAY_CONFIG, encoding="utf-8")
    port = free_port()
    env = bench_env(
        PREFECT_API_URL=api_url,
        PREFECT_HOME=str(folder / "prefect-home"),
        MOLTBOT_HOME=str(folder / "home"),
        MOLTBOT_WEBHOOK_SECRET_BENCH=SECRET,
        **({"MOLTBOT_LEDGER_URL": ledger_url} if ledger_url else {}),
        # Another checkout's code (e.g. `git archive` of the commit to compare with).
        **({"PYTHONPATH": str(code)} if code else {}),
    )
    with (folder / "gateway.log").open("ab") as log:
        process = subprocess.Popen(
            [str(BIN / "moltbot"), "webhook", "serve", "--port", str(port)],
            env=env, cwd=folder, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _health(base, process), timeout=120, what="the webhook gateway")
        if profile is not None:
            # Non-blocking sampling: pausing the gateway to read its stacks would add to the
            # latencies being measured.
            spy = subprocess.Popen(
                ["py-spy", "record", "--pid", str(process.pid), "--threads", "--nonblocking",
                 "--format", "raw", "--rate", "200", "-o", str(profile)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        every: list[Load] = []
        cpu_before = _cpu_seconds(process.pid)
        taken = _levels(
            f"{base}/hooks/bench",
            runs=runs,
            sign=True,
            numbers=EventNumbers(),
            every=every,
            levels=levels,
            seconds=seconds,
        )
        cpu = _cpu_seconds(process.pid) - cpu_before
        health = _health(base, process) or {}
        health["cpu_seconds"] = cpu
    finally:
        if profile is not None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
            spy.wait(timeout=60)
        stop(process)
    accepted = sum(load.statuses.get(202, 0) for load in every)
    return taken, health, accepted


def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system) the process used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _health(base: str, process: subprocess.Popen[bytes]) -> dict[str, Any] | None:
    if process.poll() is not None:
        raise RuntimeError(f"the process at {base} exited with {process.returncode}")
    try:
        answer = httpx.get(f"{base}/healthz", timeout=2)
    except httpx.HTTPError:
        return None
    return answer.json() if answer.status_code == 200 else None


def _n8n(runs: int) -> tuple[dict[int, list[Load]] | None, str]:
    """n8n's webhook node on the same load, or None and why not."""
    n8n = N8N_FOLDER / "node_modules" / ".bin" / "n8n"
    if not n8n.exists():
        if not shutil.which("npm"):
            return None, "npm is not installed"
        N8N_FOLDER.mkdir(parents=True, exist_ok=True)
        # n8n depends on xlsx as a tarball on cdn.sheetjs.com, outside the npm registry (not
        # reachable from every machine); the registry's last xlsx release stands in for it,
        # which only the spreadsheet nodes use, not the webhook node measured here.
        (N8N_FOLDER / "package.json").write_text(
            json.dumps({"name": "moltbot-bench-n8n", "private": True,
                        "overrides": {"xlsx": "0.18.5"}}),
            encoding="utf-8",
        )  # fmt: skip
        installed = subprocess.run(
            ["npm", "install", "--prefix", str(N8N_FOLDER), "n8n", "--no-audit", "--no-fund"],
            capture_output=True, text=True, timeout=900, check=False,
        )  # fmt: skip
        if installed.returncode != 0 or not n8n.exists():
            reason = next(
                (line for line in installed.stderr.splitlines() if "npm error network" in line
                 or "ENOTFOUND" in line or "npm error" in line),
                f"npm exited {installed.returncode}",
            )  # fmt: skip
            return None, f"npm install n8n failed: {reason.removeprefix('npm error ').strip()}"
    folder = fresh_folder("n8n")
    workflow = {
        "id": "benchWebhook01",
        "name": "bench webhook",
        "active": True,
        "nodes": [
            {
                "id": "6b4f2c1e-0000-4000-8000-000000000001",
                "name": "Webhook",
                "type": "n8n-nodes-base.webhook",
                "typeVersion": 2,
                "position": [0, 0],
                "webhookId": "6b4f2c1e-0000-4000-8000-0000000000aa",
                "parameters": {"httpMethod": "POST", "path": "bench", "responseMode": "onReceived"},
            }
        ],
        "connections": {},
        "settings": {"saveDataSuccessExecution": "all"},
    }
    (folder / "workflow.json").write_text(json.dumps([workflow]), encoding="utf-8")
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("N8N_", "PREFECT_"))},
        "N8N_USER_FOLDER": str(folder),
        "N8N_PORT": str(port),
        "N8N_LISTEN_ADDRESS": "127.0.0.1",
        "N8N_DIAGNOSTICS_ENABLED": "false",
        "N8N_PERSONALIZATION_ENABLED": "false",
        "N8N_RUNNERS_ENABLED": "false",
        "DB_SQLITE_POOL_SIZE": "2",
    }
    with (folder / "n8n.log").open("ab") as log:
        for command in (
            ["import:workflow", f"--input={folder / 'workflow.json'}"],
            ["publish:workflow", "--id=benchWebhook01"],
        ):
            done = subprocess.run(
                [str(n8n), *command], env=env, cwd=folder, stdout=log, stderr=subprocess.STDOUT,
                timeout=300, check=False,
            )  # fmt: skip
            if done.returncode != 0:
                return None, f"n8n {command[0]} exited {done.returncode} (see {folder / 'n8n.log'})"
        process = subprocess.Popen(
            [str(n8n), "start"], env=env, cwd=folder, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_until(lambda: _n8n_ready(base, process), timeout=240, what="n8n's webhook")
        except RuntimeError as exc:
            return None, f"n8n did not start: {exc}"
        return _levels(f"{base}/webhook/bench", runs=runs, sign=False, numbers=EventNumbers()), ""
    finally:
        stop(process)


def _n8n_ready(base: str, process: subprocess.Popen[bytes]) -> bool:
    if process.poll() is not None:
        raise RuntimeError(f"n8n exited with {process.returncode}")
    try:
        answer = httpx.post(f"{base}/webhook/bench", json={"id": "ready"}, timeout=5)
    except httpx.HTTPError:
        return False
    return answer.status_code == 200


def measure(api_url: str, *, runs: int) -> list[Figure]:
    """Gateway and n8n at 1, 10, 50 connections; the 10-connection row carries the targets."""
    gateway, health, accepted = _gateway(api_url, runs)
    n8n, why_not = _n8n(runs)
    inbox = health.get("inbox", {})
    stored = sum(inbox.get(state, 0) for state in ("pending", "dispatched", "failed", "ignored"))
    figures: list[Figure] = []
    for connections in CONNECTIONS:
        plural = "s" if connections > 1 else ""
        ours = gateway[connections]
        rate = statistics.median(load.per_second() for load in ours)
        p50 = statistics.median(load.quantile(0.5) for load in ours) * 1000
        p99 = statistics.median(load.quantile(0.99) for load in ours) * 1000
        refused = sum(n for load in ours for s, n in load.statuses.items() if s not in (200, 202))
        errors = sum(load.errors for load in ours)
        figures.append(
            Figure(
                "gateway",
                f"gateway at {connections} connection{plural}",
                f"{rate:,.0f} ack/s, p50 {p50:,.0f} ms, p99 {p99:,.0f} ms",
                "p99 ≤ 50 ms" if connections == 10 else "—",
                p99 <= 50 if connections == 10 else None,
                ratio=p99 / 50 if connections == 10 else None,
                target_ratio=1 if connections == 10 else None,
                note=f"{refused} non-2xx answers, {errors} transport errors",
            )
        )
        if n8n is not None:
            theirs = n8n[connections]
            their_rate = statistics.median(load.per_second() for load in theirs)
            versus = statistics.median(
                a.per_second() / b.per_second()
                for a, b in zip(ours, theirs, strict=True)
                if b.per_second()
            )
            figures.append(
                Figure(
                    "gateway",
                    f"gateway / n8n ack/s at {connections} connection{plural}",
                    f"{versus:.2f}× (n8n {their_rate:,.0f} ack/s, p99 "
                    f"{statistics.median(load.quantile(0.99) for load in theirs) * 1000:,.0f} ms)",
                    "≥ 5×" if connections == 10 else "—",
                    versus >= 5 if connections == 10 else None,
                    ratio=versus,
                    target_ratio=5 if connections == 10 else None,
                    lower_is_better=False,
                    note="n8n's webhook node answers on receipt and checks no signature",
                )
            )
    if n8n is None:
        figures.append(Figure("gateway", "gateway / n8n ack/s", f"n8n: not measured ({why_not})"))
    figures.append(
        Figure(
            "gateway",
            "acknowledged (202) and lost",
            f"{accepted:,} accepted, {accepted - stored:,} lost (inbox holds {stored:,})",
            "0 lost",
            accepted == stored,
            note=f"inbox at the end: {inbox}",
        )
    )
    return figures


def _report(
    ledger: str, taken: dict[int, list[Load]], health: dict[str, Any], accepted: int
) -> None:
    inbox = health.get("inbox", {})
    stored = sum(inbox.get(state, 0) for state in ("pending", "dispatched", "failed", "ignored"))
    for connections, loads in taken.items():
        rate = statistics.median(load.per_second() for load in loads)
        p50 = statistics.median(load.quantile(0.5) for load in loads) * 1000
        p99 = statistics.median(load.quantile(0.99) for load in loads) * 1000
        worst = max(max(load.latencies, default=0.0) for load in loads) * 1000
        refused = sum(n for load in loads for s, n in load.statuses.items() if s not in (200, 202))
        errors = sum(load.errors for load in loads)
        print(
            f"{ledger:8} c={connections:<3} {rate:7,.0f} ack/s  p50 {p50:6.1f} ms  "
            f"p99 {p99:6.1f} ms  max {worst:7.1f} ms  non-2xx {refused}  errors {errors}  "
            f"(per run p99: {', '.join(f'{load.quantile(0.99) * 1000:.0f}' for load in loads)})"
        )
    print(
        f"{ledger:8} {accepted:,} accepted (202), inbox holds {stored:,}: "
        f"{accepted - stored:,} lost; inbox {inbox}; gateway CPU "
        f"{health.get('cpu_seconds', 0) * 1000 / max(accepted, 1):.1f} ms per accepted request "
        f"(dispatching included); load average {os.getloadavg()}"
    )


def main() -> None:
    """The gateway alone at chosen connection counts, on each chosen ledger, back to back."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--ledger", action="append", choices=("sqlite", "postgres"))
    parser.add_argument("--connections", type=int, action="append")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=SECONDS_PER_RUN)
    parser.add_argument(
        "--py-spy",
        metavar="FOLDER",
        help="sample the gateway with py-spy (on PATH) into FOLDER/<ledger>.txt (collapsed stacks)",
    )
    options = parser.parse_args()
    ledgers = options.ledger or ["sqlite", "postgres"]
    levels = options.connections or [10]
    with prefect_server(CACHE / "runs" / "gateway-prefect") as api_url:
        for ledger in ledgers:
            profile = None
            if options.py_spy:
                Path(options.py_spy).mkdir(parents=True, exist_ok=True)
                profile = Path(options.py_spy) / f"{ledger}.txt"
            if ledger == "postgres":
                with postgres_cluster() as server:
                    url = f"postgresql+psycopg://{server}/postgres"
                    found = _gateway(
                        api_url, options.runs, ledger_url=url, levels=levels,
                        seconds=options.seconds, profile=profile,
                    )  # fmt: skip
            else:
                found = _gateway(
                    api_url, options.runs, levels=levels, seconds=options.seconds, profile=profile
                )
            _report(ledger, *found)


if __name__ == "__main__":
    main()

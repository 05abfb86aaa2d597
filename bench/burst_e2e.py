"""End-to-end burst: signed webhooks through the gateway until every event's automation did it.

Usage:
    uv run python bench/burst_e2e.py [ENTRIES] [--backend postgres|sqlite] [--json]

One round, in a scratch folder: a Prefect server (`prefect server start`) on PostgreSQL 15 (a
throwaway cluster started here from the installed binaries; the ledger, which holds the inbox,
is a second database on it) or on SQLite (the ledger a SQLite file too); the local emulators
(Jira) in this process; `moltbot serve` serving payment-failures and ticket-creation; and
`moltbot webhook serve` (the gateway, with its dispatcher). Then ENTRIES signed Stripe-style
events are posted to the gateway at once (a burst over 16 connections): 90 % payment failures
(`charge.failed`, routed to payment-failures by its registry entry, 20 customers failing three
times so it opens 20 tickets through ticket-creation) and 10 % `payment.failed`, routed to
ticket-creation, one Jira issue each.

The clock starts at the first request and stops when every accepted event has its automation's
effect: a `payment_events` row with its inbox id (payment-failures), an issue labelled for it in
the Jira emulator (ticket-creation). Then: lost = accepted events without their effect, doubled
= events in more than one flow run, issues beyond one per event or repeated customer, and
"database is locked" lines in every process's log. Prints a JSON document with the figures and
a profile of the drain (runs, batch sizes, run durations, queueing).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.measure import (
    BIN,
    REPO,
    bench_env,
    create_databases,
    free_port,
    postgres_cluster,
    wait_until,
)

SECRET = "whsec_bench_burst_secret"
CONNECTIONS = 16
# Share of the burst routed to ticket-creation (`payment.failed`), one Jira issue each.
TICKET_SHARE = 0.1
# Customers failing three times (payment-failures' default threshold): one ticket each.
REPEATED_CUSTOMERS = 20
LOCKED = "database is locked"


# --------------------------------------------------------------------------- processes


@contextmanager
def process(args: list[str], *, env: dict[str, str], cwd: Path, log: Path) -> Iterator[Any]:
    """A command in its own process group for the block; SIGINT, then SIGKILL, after."""
    with log.open("ab") as output:
        child = subprocess.Popen(
            args, env=env, cwd=cwd, stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        yield child
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGINT)
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait(timeout=10)


def healthy(url: str, child: Any, log: Path) -> bool:
    if child.poll() is not None:
        tail = log.read_text(errors="replace")[-1500:]
        raise RuntimeError(f"{log.name}: the process exited ({child.returncode}): {tail}")
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


# --------------------------------------------------------------------------- the burst


def events(entries: int, run: str) -> list[dict[str, Any]]:
    """The burst's event bodies: every tenth `payment.failed` (to ticket-creation), the others
    `charge.failed` (to payment-failures), the first 3 × REPEATED_CUSTOMERS of those from
    customers failing three times each."""
    created = int(time.time())
    bodies = []
    every = round(1 / TICKET_SHARE)
    payments = 0
    for number in range(entries):
        if number % every == every - 1:
            bodies.append(
                {
                    "id": f"evt_{run}_t{number:06d}",
                    "type": "payment.failed",
                    "created": created,
                    "data": {
                        "order_id": f"B-{number:06d}",
                        "amount": 45000,
                        "provider": "toss",
                        "error_code": "CARD_DECLINED",
                        "severity": "high",
                        "customer_email": f"c{number}@example.com",
                    },
                }
            )
            continue
        repeated = payments < 3 * REPEATED_CUSTOMERS
        customer = f"cus_{number:06d}"
        if repeated:
            customer = f"cus_rep{payments % REPEATED_CUSTOMERS:03d}"
        payments += 1
        bodies.append(
            {
                "id": f"evt_{run}_p{number:06d}",
                "type": "charge.failed",
                "created": created,
                "data": {
                    "object": {
                        "id": f"ch_{run}_{number:06d}",
                        "amount": 45000,
                        "currency": "krw",
                        "customer": customer,
                        "failure_code": "card_declined",
                        "billing_details": {"email": None},
                    }
                },
            }
        )
    return bodies


async def post_burst(gateway: str, bodies: list[dict[str, Any]]) -> list[tuple[int, str]]:
    """Post every body signed, over CONNECTIONS connections; (status, inbox id) for each."""
    from moltbot.webhooks.signatures import sign_stripe

    queue: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()
    for index, body in enumerate(bodies):
        queue.put_nowait((index, json.dumps(body).encode()))
    answers: list[tuple[int, str]] = [(0, "")] * len(bodies)
    limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
    async with httpx.AsyncClient(base_url=gateway, limits=limits, timeout=60) as client:

        async def sender() -> None:
            while not queue.empty():
                index, body = queue.get_nowait()
                signature = sign_stripe(body, SECRET, int(time.time()))
                for attempt in range(5):
                    try:
                        response = await client.post(
                            "/hooks/stripe",
                            content=body,
                            headers={
                                "Stripe-Signature": signature,
                                "Content-Type": "application/json",
                            },
                        )
                    except httpx.TransportError:
                        await asyncio.sleep(0.2 * (attempt + 1))
                        continue
                    if response.status_code in (429, 503):
                        await asyncio.sleep(0.2 * (attempt + 1))
                        continue
                    inbox_id = response.json().get("id", "") if response.content else ""
                    answers[index] = (response.status_code, inbox_id)
                    break

        await asyncio.gather(*(sender() for _ in range(CONNECTIONS)))
    return answers


# --------------------------------------------------------------------------- checks


class Effects:
    """What the automations did, read from the ledger and the Jira emulator."""

    def __init__(self, ledger_url: str, sandbox: Any) -> None:
        import sqlalchemy

        from moltbot.state.inbox import inbox_table
        from moltbot.state.ledger import ensure_table
        from moltbot.state.payments import payments_table

        self.engine = sqlalchemy.create_engine(ledger_url)
        for table in (inbox_table, payments_table):
            ensure_table(self.engine, table)
        self.sandbox = sandbox

    def recorded(self) -> set[str]:
        """Inbox ids of the payment events payment-failures recorded."""
        import sqlalchemy

        with self.engine.connect() as connection:
            rows = connection.execute(
                sqlalchemy.text("SELECT inbox_id FROM payment_events WHERE inbox_id IS NOT NULL")
            )
            return {row[0] for row in rows}

    def recorded_count(self) -> int:
        """How many payment events payment-failures recorded (the ledger is this round's)."""
        import sqlalchemy

        with self.engine.connect() as connection:
            return connection.execute(
                sqlalchemy.text("SELECT count(*) FROM payment_events WHERE inbox_id IS NOT NULL")
            ).scalar_one()

    def issues(self) -> list[Any]:
        return self.sandbox.state.jira.issues()

    def inbox(self) -> Counter[str]:
        import sqlalchemy

        with self.engine.connect() as connection:
            rows = connection.execute(
                sqlalchemy.text("SELECT status, count(*) FROM webhook_inbox GROUP BY status")
            )
            return Counter({row[0]: row[1] for row in rows})

    def close(self) -> None:
        self.engine.dispose()


def ticket_orders(issues: list[Any]) -> Counter[str]:
    """Issues per order of a `payment.failed` event (its summary names the order)."""
    found: Counter[str] = Counter()
    for issue in issues:
        found.update(set(re.findall(r"B-\d{6}", issue.summary)))
    return found


def all_flow_runs(api_url: str) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    with httpx.Client(timeout=30) as client:
        while True:
            response = client.post(
                f"{api_url}/flow_runs/filter",
                json={"limit": 200, "offset": len(runs), "sort": "EXPECTED_START_TIME_ASC"},
            )
            response.raise_for_status()
            page = response.json()
            runs.extend(page)
            if len(page) < 200:
                return runs


def flow_names(api_url: str) -> dict[str, str]:
    response = httpx.post(f"{api_url}/flows/filter", json={"limit": 200}, timeout=30)
    response.raise_for_status()
    return {flow["id"]: flow["name"] for flow in response.json()}


def run_profile(api_url: str, started: float, wall_started: datetime) -> dict[str, Any]:
    """Runs per automation, batch sizes, run durations and waits, from the Prefect API."""
    runs = all_flow_runs(api_url)
    names = flow_names(api_url)
    profile: dict[str, Any] = {}
    seen: Counter[str] = Counter()
    for run in runs:
        # A failed run's entries run again (in halves): only completed runs count twice.
        if (run.get("state") or {}).get("type") == "COMPLETED":
            seen.update((run.get("parameters") or {}).get("inbox_ids") or [])
    by_flow: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        webhook = "inbox_ids" in (run.get("parameters") or {})
        if run.get("deployment_id") and webhook:
            by_flow.setdefault(names.get(run["flow_id"], "?"), []).append(run)
    for name, mine in by_flow.items():
        sizes = [len((r.get("parameters") or {}).get("inbox_ids") or []) for r in mine]
        durations = [r["total_run_time"] for r in mine if r.get("total_run_time")]
        waits = [
            (_time(r["start_time"]) - _time(r["created"])).total_seconds()
            for r in mine
            if r.get("start_time")
        ]
        states = Counter((r.get("state") or {}).get("type", "?") for r in mine)
        steps = [_steps(api_url, run) for run in mine if run.get("start_time")]
        profile[name] = {
            "runs": len(mine),
            "states": dict(states),
            "batch_median": statistics.median(sizes) if sizes else 0,
            "batch_max": max(sizes, default=0),
            "run_seconds_median": round(statistics.median(durations), 2) if durations else None,
            "run_seconds_total": round(sum(durations), 1),
            "wait_seconds_median": round(statistics.median(waits), 1) if waits else None,
            "wait_seconds_max": round(max(waits), 1) if waits else None,
            # Created -> Pending: the runner's poll; Pending -> Running: the run's process
            # starting (a fresh interpreter importing Prefect and the flow).
            "pickup_seconds_median": _median(step[0] for step in steps),
            "start_seconds_median": _median(step[1] for step in steps),
        }
        ends = sorted(
            (_time(r["start_time"]), _time(r["end_time"])) for r in mine if r.get("end_time")
        )
        # From one run's end to the next one's start: the dispatcher's look, the runner's
        # poll, the process start.
        gaps = [(b[0] - a[1]).total_seconds() for a, b in pairwise(ends)]
        profile[name]["gap_seconds_median"] = _median(gaps)
    profile["runs_awaiting_slot"] = sum(
        1 for r in runs if (r.get("state") or {}).get("name") == "AwaitingConcurrencySlot"
    )
    profile["entries_in_several_runs"] = sum(1 for count in seen.values() if count > 1)
    return profile


def _steps(api_url: str, run: dict[str, Any]) -> tuple[float, float]:
    """(created -> Pending, Pending -> Running) seconds of a run, from its state history."""
    response = httpx.get(f"{api_url}/flow_run_states/", params={"flow_run_id": run["id"]})
    response.raise_for_status()
    at = {state["type"]: _time(state["timestamp"]) for state in response.json()}
    if "PENDING" not in at or "RUNNING" not in at:
        return float("nan"), float("nan")
    pickup = (at["PENDING"] - _time(run["created"])).total_seconds()
    return pickup, (at["RUNNING"] - at["PENDING"]).total_seconds()


def _median(values: Any) -> float | None:
    found = [value for value in values if value == value]  # not NaN
    return round(statistics.median(found), 2) if found else None


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def locked_lines(folder: Path) -> dict[str, int]:
    return {
        log.name: log.read_text(errors="replace").count(LOCKED)
        for log in sorted(folder.glob("*.log"))
    }


# --------------------------------------------------------------------------- one round


def write_config(folder: Path, batch_size: int | None) -> None:
    """The shipped mappings, both deployments with the sandbox's Jira block, and
    `payment.failed` routed to ticket-creation, `charge.failed` to payment-failures (routes in
    moltbot.toml replace the registry's)."""
    batch = f", batch_size = {batch_size}" if batch_size else ""
    (folder / "moltbot.toml").write_text(
        (REPO / "moltbot.toml").read_text(encoding="utf-8")
        + '\n[deployments.ticket-creation]\nparameters = { jira_block = "sandbox-jira" }\n'
        + '\n[deployments.payment-failures]\nparameters = { jira_block = "sandbox-jira" }\n'
        + "\n[webhooks.routes]\n"
        + f'"payment.failed" = [{{ deployment = "ticket-creation/default"{batch} }}]\n'
        + f'"charge.failed" = [{{ deployment = "payment-failures/default"{batch} }}]\n',
        encoding="utf-8",
    )


def one_round(
    entries: int,
    backend: str,
    folder: Path,
    timeout: float,
    *,
    batch_size: int | None = None,
    prefect_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    from blocks import WebhookSource
    from moltbot.sandbox import Sandbox
    from moltbot.sandbox.blocks import save_sandbox_blocks

    write_config(folder, batch_size)
    with ExitStack() as stack:
        if backend == "postgres":
            server = stack.enter_context(
                postgres_cluster(fsync=False, log_to=folder / "postgres.log")
            )
            create_databases(server, "prefect", "moltbot")
            prefect_db = f"postgresql+asyncpg://{server}/prefect"
            ledger_url = f"postgresql+psycopg://{server}/moltbot"
        else:
            prefect_db = f"sqlite+aiosqlite:///{folder / 'prefect.db'}"
            ledger_url = f"sqlite:///{folder / 'ledger.sqlite3'}"
        port = free_port()
        api_url = f"http://127.0.0.1:{port}/api"
        env = bench_env(
            PREFECT_HOME=str(folder / "prefect-home"),
            PREFECT_API_URL=api_url,
            MOLTBOT_HOME=str(folder / "home"),
            MOLTBOT_LEDGER_URL=ledger_url,
            **(prefect_env or {}),
        )
        server_env = {
            **env,
            "PREFECT_API_DATABASE_CONNECTION_URL": prefect_db,
            "PREFECT_SERVER_UI_ENABLED": "false",
        }
        prefect = stack.enter_context(
            process(
                [
                    str(BIN / "prefect"),
                    "server",
                    "start",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--no-ui",
                ],
                env=server_env,
                cwd=folder,
                log=folder / "prefect-server.log",
            )
        )
        wait_until(
            lambda: healthy(f"{api_url}/health", prefect, folder / "prefect-server.log"),
            timeout=180,
            what="the Prefect server",
        )
        from prefect.settings import PREFECT_API_URL
        from prefect.settings.context import temporary_settings

        stack.enter_context(temporary_settings(updates={PREFECT_API_URL: api_url}))
        sandbox = stack.enter_context(Sandbox())
        save_sandbox_blocks(sandbox)
        WebhookSource(signing_secret=SECRET, scheme="stripe").save("webhook-stripe", overwrite=True)
        WebhookSource(signing_secret="gh-secret", scheme="github").save(
            "webhook-github", overwrite=True
        )
        serve = stack.enter_context(
            process(
                [
                    str(BIN / "moltbot"),
                    "serve",
                    "--only",
                    "payment-failures",
                    "--only",
                    "ticket-creation",
                ],
                env=env,
                cwd=folder,
                log=folder / "serve.log",
            )
        )
        for name in ("payment-failures/default", "ticket-creation/default"):
            wait_until(
                lambda name=name: healthy(
                    f"{api_url}/deployments/name/{name}", serve, folder / "serve.log"
                ),
                timeout=180,
                what=f"the deployment {name}",
            )
        gateway_port = free_port()
        gateway = f"http://127.0.0.1:{gateway_port}"
        gateway_process = stack.enter_context(
            process(
                [str(BIN / "moltbot"), "webhook", "serve", "--port", str(gateway_port)],
                env=env,
                cwd=folder,
                log=folder / "gateway.log",
            )
        )
        wait_until(
            lambda: healthy(f"{gateway}/healthz", gateway_process, folder / "gateway.log"),
            timeout=120,
            what="the gateway",
        )
        effects = Effects(ledger_url, sandbox)
        stack.callback(effects.close)

        bodies = events(entries, datetime.now(UTC).strftime("%H%M%S"))
        tickets_wanted = {b["data"]["order_id"] for b in bodies if b["type"] == "payment.failed"}
        load = os.getloadavg()[0]
        wall_started = datetime.now(UTC)
        started = time.monotonic()
        answers = asyncio.run(post_burst(gateway, bodies))
        accepted_s = time.monotonic() - started
        accepted = {
            inbox_id: body
            for (status, inbox_id), body in zip(answers, bodies, strict=True)
            if status == 202 and inbox_id
        }
        payments = {i for i, b in accepted.items() if b["type"] == "charge.failed"}
        orders = {b["data"]["order_id"] for b in accepted.values() if b["type"] == "payment.failed"}

        def done() -> tuple[int, int]:
            # Exact: each accepted event's own effect.
            recorded = len(payments & effects.recorded())
            ticketed = len(orders & set(ticket_orders(effects.issues())))
            return recorded, ticketed

        drained_s: float | None = None
        progress: list[tuple[float, int]] = []
        deadline = started + timeout
        ticketed = 0
        polls = 0
        while time.monotonic() < deadline:
            # Cheap counts while it drains (a snapshot of every emulated issue holds the Jira
            # emulator's lock), the exact check once they add up.
            recorded = effects.recorded_count()
            if polls % 4 == 0 or recorded >= len(payments):
                ticketed = len(orders & set(ticket_orders(effects.issues())))
            polls += 1
            progress.append((round(time.monotonic() - started, 1), recorded + ticketed))
            if recorded + ticketed >= len(payments) + len(orders) and sum(done()) == len(
                payments
            ) + len(orders):
                drained_s = time.monotonic() - started
                break
            time.sleep(0.5)
        recorded, ticketed = done()
        # Let the runs still going finish their work, so a late doubled effect shows.
        time.sleep(3)
        issues = effects.issues()
        per_order = ticket_orders(issues)
        repeat_issues = len(issues) - sum(per_order.values())
        profile = run_profile(api_url, started, wall_started)
        inbox = effects.inbox()
        load_end = os.getloadavg()[0]

    lost = len(payments) + len(orders) - recorded - ticketed
    doubled = (
        profile["entries_in_several_runs"]
        + sum(count - 1 for count in per_order.values() if count > 1)
        + max(repeat_issues - REPEATED_CUSTOMERS, 0)
    )
    return {
        "backend": backend,
        "entries": entries,
        "accepted": len(accepted),
        "refused": Counter(status for status, _ in answers if status != 202),
        "accepted_seconds": round(accepted_s, 2),
        "drained_seconds": round(drained_s, 2) if drained_s is not None else None,
        "timeout_seconds": timeout,
        "lost": lost,
        "doubled": doubled,
        "tickets_for_orders": len(per_order),
        "tickets_wanted": len(tickets_wanted),
        "repeat_tickets": repeat_issues,
        "repeat_tickets_wanted": REPEATED_CUSTOMERS,
        "inbox": dict(inbox),
        "locked": locked_lines(folder),
        "profile": profile,
        "progress": progress[:: max(len(progress) // 40, 1)],
        "load_start": round(load, 2),
        "load_end": round(load_end, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("entries", nargs="?", type=int, default=10_000)
    parser.add_argument("--backend", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--folder", type=Path, default=None)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--batch-size", type=int, default=None, help="the routes' batch_size")
    parser.add_argument(
        "--env", action="append", default=[], help="NAME=VALUE for every Prefect process"
    )
    args = parser.parse_args()
    folder = args.folder or Path(tempfile.mkdtemp(prefix="moltbot-burst-"))
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    extra = dict(item.split("=", 1) for item in args.env)
    result = one_round(
        args.entries,
        args.backend,
        folder,
        args.timeout,
        batch_size=args.batch_size,
        prefect_env=extra,
    )
    result["settings"] = {"batch_size": args.batch_size, **extra}
    print("RESULT " + json.dumps(result, default=str))


if __name__ == "__main__":
    main()

"""The production shape: Prefect server and ledger on PostgreSQL, two process workers, one pool."""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from datetime import date
from pathlib import Path

import pytest
from prefect.deployments import run_deployment
from prefect.deployments.runner import EntrypointType

from demo.sample_orders import write_sample_orders
from moltbot.state.ledger import EffectStatus, Ledger
from tests.e2e.probe import probe
from tests.e2e.servers import BIN, PrefectServer, background, flow_runs, moltbot_command, wait_for

pytestmark = pytest.mark.slow

POOL = "moltbot-e2e"
RUNS = 8
LAST_DAY = date(2026, 11, 23)


def test_two_workers_on_one_process_pool_run_eight_flow_runs_each_exactly_once(
    postgres_database_url: str, tmp_path: Path
) -> None:
    # One PostgreSQL cluster, two databases: Prefect's (asyncpg) and the ledger (psycopg).
    prefect_database = postgres_database_url.replace("+psycopg", "+asyncpg")
    ledger_url = _second_database(postgres_database_url)
    server = PrefectServer(tmp_path / "server", database_url=prefect_database)
    server.start()
    try:
        orders = write_sample_orders(
            tmp_path / "주문.csv", end_date=LAST_DAY, timezone="Asia/Seoul"
        )
        (tmp_path / "moltbot.toml").write_text(
            "[deployments.daily-report]\n"
            # Several at once, so both workers have work; the ledger keeps each report single.
            "concurrency_limit = 4\n"
            f'parameters = {{ source = "{orders}", channels = ["outbox"] }}\n',
            encoding="utf-8",
        )
        env = server.env(
            MOLTBOT_LEDGER_URL=ledger_url,
            MOLTBOT_HOME=str(tmp_path / "home"),
            # The probe flow lives in the tests package, importable from the repository root.
            PYTHONPATH=str(Path(__file__).resolve().parents[2]),
        )
        deployed = subprocess.run(
            moltbot_command("deploy", "--pool", POOL, "--only", "daily-report", "--json"),
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180, check=False,
        )  # fmt: skip
        assert deployed.returncode == 0, deployed.stderr
        [deployment] = json.loads(deployed.stdout)
        assert deployment["name"] == "daily-report/default"

        with server.as_current():
            # The probe runs are of a tiny flow: a moltbot flow's subprocess spends ~7 s importing
            # pandas, Prefect and the clients, which would make this test minutes long on 2
            # cores. One real daily-report run proves moltbot's own deployment runs there too.
            probe.to_deployment(
                name="probe", work_pool_name=POOL, entrypoint_type=EntrypointType.MODULE_PATH
            ).apply()
            for number in range(RUNS):
                run_deployment(
                    "e2e-probe/probe", parameters={"number": number}, timeout=0, as_subflow=False
                )
            run_deployment(
                "daily-report/default",
                parameters={"report_date": LAST_DAY.isoformat()},
                timeout=0,
                as_subflow=False,
            )
        worker = [str(BIN / "prefect"), "worker", "start", "--pool", POOL]
        with (
            background([*worker, "--name", "worker-a"], env=env, cwd=tmp_path,
                       log=tmp_path / "worker-a.log") as worker_a,
            background([*worker, "--name", "worker-b"], env=env, cwd=tmp_path,
                       log=tmp_path / "worker-b.log") as worker_b,
        ):  # fmt: skip
            runs = wait_for(
                lambda: _all_final(server.api_url),
                timeout=400,
                interval=2,
                what=f"{RUNS} finished runs",
            )
    finally:
        server.stop()

    states = Counter(run["state"]["type"] for run in runs)
    assert states == {"COMPLETED": RUNS + 1}, _logs(tmp_path)
    assert all(run["run_count"] == 1 for run in runs)
    with Ledger(ledger_url) as ledger:
        probes = ledger.effects(automation="e2e-probe")
        reports = ledger.effects(automation="daily-report")
    assert sorted(effect.key for effect in probes) == sorted(
        f"e2e-probe:{number}" for number in range(RUNS)
    )
    assert all(effect.status == EffectStatus.DONE and effect.attempts == 1 for effect in probes)
    # Both workers took runs (each run's process is a child of the worker that started it).
    ran_by = Counter(effect.remote_id for effect in probes)
    assert set(ran_by) <= {str(worker_a.pid), str(worker_b.pid)}, ran_by
    assert [(effect.key, effect.status, effect.attempts) for effect in reports] == [
        (f"daily-report:{LAST_DAY.isoformat()}:outbox", EffectStatus.DONE, 1)
    ]
    assert len(list((tmp_path / "home" / "outbox").glob("*.md"))) == 1


def _all_final(api_url: str) -> list[dict] | None:
    # The deployment's own daily schedule adds future runs: only the ones this test made count.
    runs = [run for run in flow_runs(api_url) if "auto-scheduled" not in run["tags"]]
    if len(runs) == RUNS + 1 and all(run["state"]["type"] in _FINAL for run in runs):
        return runs
    return None


_FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def _second_database(url: str) -> str:
    import uuid

    import sqlalchemy

    server, _, _ = url.rpartition("/")
    name = f"ledger_{uuid.uuid4().hex[:12]}"
    engine = sqlalchemy.create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return f"{server}/{name}"


def _logs(folder: Path) -> str:
    return "\n".join(
        f"--- {path.name}\n{path.read_text(errors='replace')[-1500:]}"
        for path in sorted(folder.glob("worker-*.log"))
    )

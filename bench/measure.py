"""What every benchmark shares: figures, medians, timed processes, a Prefect server, the machine."""

from __future__ import annotations

import glob
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CACHE = Path.home() / ".cache" / "moltbot-bench"
TIME = Path("/usr/bin/time")


@dataclass
class Figure:
    """One row of the results: what was measured, against which target, and whether it is met.

    `ratio` and `target_ratio` place the figure on the chart (measured / target, lower is
    better when `lower_is_better`); a figure without a target has `met` None.
    """

    group: str
    name: str
    measured: str
    target: str = "—"
    met: bool | None = None
    ratio: float | None = None
    target_ratio: float | None = None
    lower_is_better: bool = True
    note: str = ""


@dataclass
class Run:
    """One finished process: wall seconds, peak resident memory (MiB), exit code."""

    wall: float
    peak_mib: float
    returncode: int


@dataclass
class Rounds:
    """Runs of several commands taken in turn (A B C A B C …) after a warm-up round."""

    runs: dict[str, list[Run]]

    def wall(self, name: str) -> float:
        return median(run.wall for run in self.runs[name])

    def peak(self, name: str) -> float:
        return median(run.peak_mib for run in self.runs[name])

    def ratio(self, a: str, b: str) -> float:
        """Median of the round-by-round wall ratios a/b (robust to the machine's speed drifting)."""
        return median(x.wall / y.wall for x, y in zip(self.runs[a], self.runs[b], strict=True))


def median(values: Iterator[float] | Sequence[float]) -> float:
    return statistics.median(list(values))


def bench_env(**extra: str) -> dict[str, str]:
    """Environment for a measured process: quiet Prefect, cached bytecode, no inherited state.

    This machine's shell sets PYTHONDONTWRITEBYTECODE; an installed package has its .pyc files,
    so the project's own modules get a bytecode cache too (otherwise every process recompiles).
    """
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("PREFECT_", "MOLTBOT_"))
    }
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(
        PYTHONPYCACHEPREFIX=str(CACHE / "pycache"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        PREFECT_LOGGING_LEVEL="WARNING",
        **extra,
    )
    return env


def timed(args: Sequence[str], *, env: dict[str, str], log: Path, cwd: Path = REPO) -> Run:
    """Run `args` to completion under `/usr/bin/time -v`: wall time and peak memory."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as report, log.open("ab") as output:
        start = time.perf_counter()
        finished = subprocess.run(
            [str(TIME), "-v", "-o", report.name, *args],
            env=env, cwd=cwd, stdout=output, stderr=subprocess.STDOUT, check=False,
        )  # fmt: skip
        wall = time.perf_counter() - start
        found = re.search(r"Maximum resident set size \(kbytes\): (\d+)", report.read())
    peak = int(found.group(1)) / 1024 if found else float("nan")
    return Run(wall, peak, finished.returncode)


def rounds(
    commands: dict[str, Sequence[str]],
    *,
    runs: int,
    env: dict[str, str],
    log: Path,
    warmup: int = 1,
) -> Rounds:
    """Warm up every command, then run them in turn `runs` times; a failed run raises."""
    result = Rounds({name: [] for name in commands})
    for index in range(warmup + runs):
        for name, command in commands.items():
            run = timed(command, env=env, log=log)
            if run.returncode != 0:
                raise RuntimeError(f"{name} exited {run.returncode}; see {log}")
            if index >= warmup:
                result.runs[name].append(run)
    return result


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(check: Callable[[], object], *, timeout: float, what: str) -> None:
    """Poll `check` until it is truthy; raise after `timeout` seconds (a hang guard)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.2)


@contextmanager
def prefect_server(home: Path, database_url: str | None = None) -> Iterator[str]:
    """`prefect server start` on a free port with its database at `database_url` (default:
    SQLite under `home`); yields its API URL."""
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = bench_env(
        PREFECT_HOME=str(home / "prefect-home"),
        PREFECT_API_DATABASE_CONNECTION_URL=database_url
        or f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        PREFECT_SERVER_UI_ENABLED="false",
    )
    with (home / "prefect-server.log").open("ab") as log:
        process = subprocess.Popen(
            [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port),
             "--no-ui"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    def healthy() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"the Prefect server exited; see {home / 'prefect-server.log'}")
        try:
            return httpx.get(f"{api_url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(healthy, timeout=180, what="the Prefect server")
        yield api_url
    finally:
        stop(process)


@contextmanager
def postgres_cluster(*, fsync: bool = True, log_to: Path | None = None) -> Iterator[str]:
    """A throwaway PostgreSQL cluster (the newest installed) on a free port, with production's
    settings unless `fsync` is off; yields its server as ``postgres@127.0.0.1:<port>``.

    Its log is copied to `log_to` when it stops.
    """
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not candidates:
        raise RuntimeError("PostgreSQL server binaries not found under /usr/lib/postgresql")
    bin_dir = Path(candidates[-1]).parent
    # initdb refuses to run as root: the cluster runs as the `postgres` system user then.
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    # Not under the scratch folder: it may be private to root, and the server runs as postgres.
    home = Path(tempfile.mkdtemp(prefix="moltbot-bench-postgres-"))
    home.chmod(0o777)
    data, sockets, port = home / "data", home / "socket", free_port()
    sockets.mkdir()
    sockets.chmod(0o777)
    try:
        subprocess.run(
            [*as_user, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
             "-E", "UTF8", "--no-locale"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c max_connections=200"
        if not fsync:
            options += " -c fsync=off"
        subprocess.run(
            [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-w", "-t", "60",
             "-l", str(home / "log"), "start"],
            check=True, capture_output=True, timeout=90,
        )  # fmt: skip
        yield f"postgres@127.0.0.1:{port}"
    finally:
        subprocess.run(
            [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
            capture_output=True, timeout=60, check=False,
        )  # fmt: skip
        if log_to is not None and (home / "log").exists():
            shutil.copy(home / "log", log_to)
        shutil.rmtree(home, ignore_errors=True)


def create_databases(server: str, *names: str) -> None:
    """Create the databases `names` on the PostgreSQL `server` (see `postgres_cluster`)."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(
        f"postgresql+psycopg://{server}/postgres", isolation_level="AUTOCOMMIT"
    )
    with engine.connect() as connection:
        for name in names:
            connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process's group, SIGKILL if it has not exited after 20 s."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def machine() -> dict[str, str]:
    """Where the figures were taken: CPUs, RAM, Python, Prefect, the moltbot commit, the load."""
    cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    meminfo = Path("/proc/meminfo").read_text()
    total_kib = int(re.search(r"MemTotal:\s+(\d+)", meminfo).group(1))  # type: ignore[union-attr]
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=REPO, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    load = os.getloadavg()
    return {
        "CPUs": f"{os.cpu_count()} × {model.group(1).strip() if model else platform.machine()}",
        "RAM": f"{total_kib / 1024 / 1024:.1f} GiB",
        "Python": platform.python_version(),
        "Prefect": metadata.version("prefect"),
        "moltbot commit": commit + (" (with uncommitted changes)" if dirty else ""),
        "load average at start": f"{load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f}",
    }


def fresh_folder(name: str) -> Path:
    """An empty scratch folder under the cache for one benchmark."""
    folder = CACHE / "runs" / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder

"""Process-wide runtime setup for moltbot commands: log masking, quiet consoles, a log file."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from moltbot import heartbeat
from moltbot.errors import MoltbotError
from moltbot.masking import install_log_masking


def _run_results() -> dict[str, Any]:
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH

    # A storage named here is one Prefect does not ask the server about: left unnamed, each run
    # asks twice (GET /admin/storage) for a server default it would not write to anyway.
    return {"persist_result": False, "result_storage": Path(PREFECT_LOCAL_STORAGE_PATH.value())}


RUN_RESULTS: dict[str, Any] = _run_results()
"""`@flow(..., **RUN_RESULTS)`: a run's result stays in the process that ran it.

Its caller reads it there (`moltbot run` prints it); nothing reads it back from result storage,
so no result is written, and the storage named is Prefect's local default, never used.
"""

# Every automation imports this module (flows/shared/runs.py), so every process that runs one
# has moltbot's heartbeat loop before its run.
heartbeat.install()


class KnownErrorTracebackFilter(logging.Filter):
    """Drops the traceback from console records about moltbot's own, already explained errors.

    Prefect logs every failed flow or task run with its traceback; for bad input or a refused
    delivery the one-line reason says everything, and a traceback reads like a crash. Only
    console handlers get this filter: the Prefect API (the run page) keeps the traceback.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], MoltbotError):
            record.exc_info = None
            record.exc_text = None
        return True


@contextlib.contextmanager
def one_prefect_client() -> Iterator[None]:
    """Let every flow run this process starts inside the block share one Prefect API client.

    Prefect builds a new client for each flow run that no caller's client is open around: its
    TLS context (the CA bundle read and parsed, ~20-40 ms of CPU even for a plain-HTTP server),
    a CSRF-token request and a new connection, each time. A process that runs several flows
    (the demo, a benchmark's warm worker) opens one here and pays that once.
    """
    from prefect.context import SyncClientContext

    with SyncClientContext.get_or_create():
        yield


def prepare_process_logging() -> None:
    """Mask secrets and personal data in every log handler; keep console failures to one line.

    Call after Prefect is imported (it configures its handlers on import). Idempotent.
    """
    import prefect.logging  # noqa: F401  (Prefect configures its handlers on import)

    install_log_masking()
    for logger in (logging.getLogger(), logging.getLogger("prefect")):
        for handler in logger.handlers:
            is_console = isinstance(handler, logging.StreamHandler) and not isinstance(
                handler, logging.FileHandler
            )
            if is_console and not any(
                isinstance(existing, KnownErrorTracebackFilter) for existing in handler.filters
            ):
                handler.addFilter(KnownErrorTracebackFilter())


# "compute-report-a1b" -> "compute-report": Prefect suffixes task run names with a random tag.
_RUN_SUFFIX = re.compile(r"-[0-9a-z]{3}$")


class ProgressHandler(logging.Handler):
    """Tells `on_step` which flow and task a run is in, from Prefect's own run loggers."""

    def __init__(self, on_step: Callable[[str], None]) -> None:
        super().__init__(level=logging.INFO)
        self.on_step = on_step

    def emit(self, record: logging.LogRecord) -> None:
        task = getattr(record, "task_name", None) or getattr(record, "task_run_name", None)
        flow = getattr(record, "flow_name", None) or getattr(record, "flow_run_name", None)
        if task:
            self.on_step(f"{flow + ': ' if flow else ''}{_RUN_SUFFIX.sub('', str(task))}")
        elif flow:
            self.on_step(str(flow))


def quiet_console(
    log_file: Path, *, verbose: bool = False, on_step: Callable[[str], None] | None = None
) -> None:
    """Send Prefect's logs to `log_file`; the console shows them only when `verbose`.

    Args:
        log_file: appended to, every record at INFO and above (masked like every handler).
        verbose: keep the console showing INFO as well.
        on_step: told the current flow and task as the run goes (a progress line).
    """
    prepare_process_logging()
    log_file.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    if not verbose:
        # The command prints the run's outcome itself (its warnings and its one-line error);
        # Prefect's own lines, errors included, go to the log file and the run page.
        for handler in root.handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(
                handler, logging.FileHandler
            ):
                handler.setLevel(logging.CRITICAL)
    if not any(
        isinstance(handler, logging.FileHandler)
        and Path(handler.baseFilename) == log_file.resolve()
        for handler in root.handlers
    ):
        file_handler = logging.FileHandler(log_file, encoding="utf-8")
        file_handler.setLevel(logging.INFO)
        file_handler.setFormatter(
            logging.Formatter("%(asctime)s | %(levelname)-7s | %(name)s - %(message)s")
        )
        root.addHandler(file_handler)
    if on_step is not None:
        progress = ProgressHandler(on_step)
        for name in ("prefect.flow_runs", "prefect.task_runs"):
            logging.getLogger(name).addHandler(progress)
    install_log_masking()

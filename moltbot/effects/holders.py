"""Who holds a claim, and whether that holder is gone (its process died or its flow run ended)."""

from __future__ import annotations

import logging
import os
import socket
from functools import cache
from pathlib import Path

from moltbot.state.ledger import Effect

logger = logging.getLogger("moltbot.effects")


def _start_ticks(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), which a reused pid changes."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ")".
    fields = stat.rsplit(")", 1)[1].split()
    return fields[19] if len(fields) > 19 else None


@cache
def current_holder() -> str:
    """This process: ``<host>/<pid>/<start ticks>``."""
    pid = os.getpid()
    return f"{socket.gethostname()}/{pid}/{_start_ticks(pid) or '-'}"


def process_is_gone(holder: str) -> bool | None:
    """Whether the process named by `holder` has ended: None when it ran on another host."""
    host, _, rest = holder.partition("/")
    pid_text, _, ticks = rest.partition("/")
    if host != socket.gethostname() or not pid_text.isdigit():
        return None
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # it exists, under another user
    now_ticks = _start_ticks(pid)
    # A different start time means the pid was reused by a new process: the holder is gone.
    return ticks not in ("-", "") and now_ticks is not None and now_ticks != ticks


def flow_run_is_over(flow_run_id: str) -> bool | None:
    """Whether Prefect says the flow run reached a final state (crashed, failed, cancelled,
    completed); None when that cannot be told (no API, unknown run)."""
    from uuid import UUID

    try:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            run = client.read_flow_run(UUID(flow_run_id))
    except Exception as exc:  # an unreachable API must not decide that a holder is dead
        logger.debug("cannot read flow run %s: %s", flow_run_id, type(exc).__name__)
        return None
    return bool(run.state is not None and run.state.is_final())


def holder_is_dead(effect: Effect) -> bool:
    """True when the claim's holder is known to be gone: its process ended (same host), or its
    Prefect flow run is over. Unknown means alive: the lease decides then."""
    if effect.holder:
        gone = process_is_gone(effect.holder)
        if gone is not None:
            return gone
    if effect.flow_run_id:
        return bool(flow_run_is_over(effect.flow_run_id))
    return False

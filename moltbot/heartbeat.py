"""Prefect's flow-run heartbeat, stopped the moment its run ends instead of up to a second later.

Crash detection needs the heartbeat (`deployments/serving.py`), so moltbot keeps it on. Prefect
3.9's heartbeat thread sleeps in one-second steps and the run's end waits for it (`join`), which
held every run 0.71-0.73 s after its last task (`python -m bench`). The loop here sends the same
event on the same schedule and waits on the stop signal itself, so the run ends when its work
does.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

logger = logging.getLogger("moltbot.heartbeat")

# The Prefect minor version whose `_send_heartbeats` this module replaces, read line by line: a
# different version keeps Prefect's own loop (slower, still correct) until someone re-reads it.
PREFECT_VERSION = "3.9."


@contextmanager
def send_heartbeats(engine: Any, join_on_exit: bool = True) -> Iterator[None]:
    """Prefect's `_send_heartbeats`, with a loop that wakes at once when the run ends.

    Same contract as Prefect's: no thread when the heartbeat is off; at most one heartbeat per
    interval (at least Prefect's minimum); none once the run is in a final state; the thread sees
    the caller's context (its API URL); `join_on_exit=False` for the async engine.
    """
    from prefect.flow_engine import MINIMUM_HEARTBEAT_INTERVAL

    seconds = engine.heartbeat_seconds
    if seconds is None:
        yield
        return
    seconds = max(seconds, MINIMUM_HEARTBEAT_INTERVAL)
    resource, related = engine._build_heartbeat_event_template()
    stopped = threading.Event()

    def beat() -> None:
        try:
            engine._emit_flow_run_heartbeat(resource, related)
        except Exception:
            engine.logger.debug("Failed to emit heartbeat", exc_info=True)

    def beat_until_stopped() -> None:
        while not stopped.wait(seconds):
            state = engine.flow_run.state if engine.flow_run else None
            if state is not None and state.is_final():
                return
            beat()

    # The first heartbeat is queued here, as the run starts: a thread's first one could be queued
    # as a short run ends, and the process would then exit with an event still being sent.
    beat()
    context = contextvars.copy_context()
    thread = threading.Thread(
        target=context.run, args=(beat_until_stopped,), daemon=True, name="moltbot-heartbeat"
    )
    thread.start()
    try:
        yield
    finally:
        stopped.set()
        if join_on_exit:
            thread.join(timeout=2)


def install() -> bool:
    """Make Prefect's flow engine use `send_heartbeats`; True when it does (idempotent).

    Only on the Prefect version it was written against: elsewhere Prefect's loop stays, and
    `tests/moltbot/test_heartbeat.py` fails until this module is checked against the new one.
    """
    import prefect
    import prefect.flow_engine

    if prefect.flow_engine._send_heartbeats is send_heartbeats:
        return True
    if not prefect.__version__.startswith(PREFECT_VERSION):
        logger.debug("Prefect %s: its own heartbeat loop is kept", prefect.__version__)
        return False
    prefect.flow_engine._send_heartbeats = send_heartbeats
    return True

"""A flow for the crash-detection test: records its run id, then ends or waits to be killed.

Run it as `python -m tests.e2e.heartbeat_probe end|block ID_FILE TAG`: the run is tagged TAG, as a
moltbot deployment's runs are, and sends heartbeats like any flow run.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

from prefect import flow, tags
from prefect.runtime import flow_run


@flow(name="e2e-heartbeat")
def heartbeat_probe(mode: str, id_file: str) -> None:
    """Write this run's id to `id_file`, then end (`end`) or wait for a signal (`block`)."""
    target = Path(id_file)
    partial = target.with_suffix(".partial")
    partial.write_text(flow_run.get_id() or "", encoding="utf-8")
    # Renamed into place so the test never reads half an id.
    partial.replace(target)
    if mode == "block":
        signal.pause()  # until the test kills the process


if __name__ == "__main__":
    mode, id_file, tag = sys.argv[1:]
    with tags(tag):
        heartbeat_probe(mode, id_file)

"""A flow for the crash-detection test: records its run id, then runs for as long as it is told.

Run it as `python -m tests.e2e.heartbeat_probe SECONDS ID_FILE TAG`: the run is tagged TAG, as a
moltbot deployment's runs are, and sends heartbeats like any flow run.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from prefect import flow, tags
from prefect.runtime import flow_run


@flow(name="e2e-heartbeat")
def heartbeat_probe(seconds: float, id_file: str) -> None:
    """Write this run's id to `id_file`, then sleep `seconds` (a run to kill, or one that ends)."""
    target = Path(id_file)
    partial = target.with_suffix(".partial")
    partial.write_text(flow_run.get_id() or "", encoding="utf-8")
    # Renamed into place so the test never reads half an id.
    partial.replace(target)
    time.sleep(seconds)


if __name__ == "__main__":
    seconds, id_file, tag = sys.argv[1:]
    with tags(tag):
        heartbeat_probe(float(seconds), id_file)

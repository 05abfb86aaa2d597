"""Set the working directory of a Prefect process work pool, so flow runs start in the checkout.

A process worker starts each flow run in a new temporary directory unless the pool's
`working_dir` job variable is set. moltbot reads `moltbot.toml` (ticket mappings, routes,
settings) from the working directory, so on a worker it must be the checkout.

Usage (after `moltbot deploy --pool NAME` created the pool, with PREFECT_API_URL set):

    uv run python docs/deploy/pool_working_dir.py NAME /opt/moltbot
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    """Set the pool's default `working_dir`; return the exit code."""
    if len(argv) != 2:
        print("usage: pool_working_dir.py POOL DIRECTORY", file=sys.stderr)
        return 2
    pool, directory = argv[0], str(Path(argv[1]).resolve())

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolUpdate
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            current = client.read_work_pool(pool)
        except ObjectNotFound:
            hint = f"run `moltbot deploy --pool {pool}` first"
            print(f"no work pool {pool!r} ({hint})", file=sys.stderr)
            return 1
        if current.type != "process":
            kind = current.type
            print(f"work pool {pool!r} is a {kind!r} pool, not a process pool", file=sys.stderr)
            return 1
        template = copy.deepcopy(current.base_job_template)
        template["variables"]["properties"]["working_dir"]["default"] = directory
        client.update_work_pool(pool, WorkPoolUpdate(base_job_template=template))
    print(f"work pool {pool!r}: flow runs start in {directory}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""A minimal flow for worker tests: records its run in the ledger, so duplicates would show."""

from __future__ import annotations

import os

from prefect import flow
from prefect.runtime import flow_run

from moltbot.state.ledger import Ledger


@flow(name="e2e-probe")
def probe(number: int) -> str:
    """Claim and complete the ledger key of `number`; return which process ran it."""
    key = f"e2e-probe:{number}"
    runner = f"{os.getppid()}"
    with Ledger.from_settings() as ledger:
        claim = ledger.claim(
            key,
            automation="e2e-probe",
            kind="probe",
            target="worker",
            flow_run_id=flow_run.get_id(),
        )
        if claim.acquired:
            ledger.complete(key, remote_id=runner)
    return runner

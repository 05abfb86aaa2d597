"""The task that records a real run's input snapshot for shadow mode (`moltbot shadow`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext

from moltbot.shadow import ShadowEffect
from moltbot.state.ledger import Ledger
from moltbot.state.recorded_inputs import RecordedInputs


@task(name="record-run-input", cache_policy=NO_CACHE)
def record_run_input(
    automation: str, kind: str, payload: dict[str, Any], effects: list[ShadowEffect]
) -> bool:
    """Keep what this flow run read and meant to send, once per flow run (a retry keeps the
    first), so `moltbot shadow` can replay it through later code.

    Args:
        automation: the automation's name.
        kind: what the snapshot holds (`stock`, `events`).
        payload: the input as the plan functions consumed it (JSON types).
        effects: what the run hands the effects layer, texts masked.

    Returns:
        True when recorded now; False when this run had a snapshot, or there is no flow run.
    """
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return False
    with Ledger.from_settings() as ledger:
        return RecordedInputs(ledger).record(
            automation=automation,
            flow_run_id=str(context.flow_run.id),
            kind=kind,
            payload=payload,
            effects=[effect.as_dict() for effect in effects],
            now=datetime.now(UTC),
        )

"""Recording a real run's input snapshot for shadow mode (`moltbot shadow`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect.context import FlowRunContext

from moltbot.shadow import ShadowEffect
from moltbot.state.ledger import Ledger
from moltbot.state.recorded_inputs import RecordedInputs


def record_run_input(
    automation: str, kind: str, payload: dict[str, Any], effects: list[ShadowEffect]
) -> bool:
    """Keep what this flow run read and meant to send, once per flow run (a retry keeps the
    first), so `moltbot shadow` can replay it through later code.

    A plain call, not a task: Prefect walks every parameter of a task call looking for
    upstream futures, and a form digest's window can hold 100,000 rows (that walk tripled the
    run's time). It writes moltbot's own ledger, as the watermark and state stores do.

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

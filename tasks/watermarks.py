"""Tasks that read, hold and advance an automation's watermark on a stream (kept in the ledger)."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from moltbot.state.ledger import Ledger
from moltbot.state.watermarks import Watermark, WatermarkStore


@task(name="read-watermark", cache_policy=NO_CACHE)
def read_watermark(automation: str, stream: str) -> Watermark:
    """The committed position of `automation` on `stream`, and the window a run holds, if any."""
    with Ledger.from_settings() as ledger:
        return WatermarkStore(ledger, automation).get(stream)


@task(name="hold-watermark", cache_policy=NO_CACHE)
def hold_watermark(automation: str, stream: str, pending: dict[str, Any]) -> Watermark:
    """Record the window this run is about to deliver, so a retry re-plans exactly that window."""
    with Ledger.from_settings() as ledger:
        return WatermarkStore(ledger, automation).hold(
            stream, pending, flow_run_id=flow_run.get_id()
        )


@task(name="advance-watermark", cache_policy=NO_CACHE)
def advance_watermark(
    automation: str, stream: str, position: dict[str, Any], expected: dict[str, Any] | None
) -> Watermark:
    """Commit `position` after the window was delivered (compare-and-set on `expected`).

    Raises:
        WatermarkMoved: another run committed first; this run's window is not committed twice.
    """
    with Ledger.from_settings() as ledger:
        return WatermarkStore(ledger, automation).advance(
            stream, position, expected=expected, flow_run_id=flow_run.get_id()
        )

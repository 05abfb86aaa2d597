"""The flow-run heartbeat moltbot puts in Prefect's engine: the same events, no wait at the end."""

from __future__ import annotations

import threading

import httpx
import prefect
import prefect.flow_engine
import pytest
from prefect import flow
from prefect.context import get_run_context
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY
from prefect.settings.context import temporary_settings

from moltbot import heartbeat
from moltbot.runtime import RUN_RESULTS
from tests.e2e.servers import wait_for

beating_threads: list[threading.Thread] = []


@flow(name="heartbeat-check", **RUN_RESULTS)
def heartbeat_check() -> str:
    """Notes the heartbeat threads alive while it runs; returns its flow run's id."""
    beating_threads.extend(t for t in threading.enumerate() if t.name == "moltbot-heartbeat")
    return str(get_run_context().flow_run.id)


def stored_heartbeats(prefect_api: str, run_id: str) -> list[dict]:
    answer = httpx.post(
        f"{prefect_api}/events/filter",
        json={
            "filter": {
                "event": {"name": ["prefect.flow-run.heartbeat"]},
                "resource": {"id": [f"prefect.flow-run.{run_id}"]},
            },
            "limit": 10,
        },
        timeout=30,
    )
    answer.raise_for_status()
    return answer.json()["events"]


def test_every_flow_module_puts_the_prompt_heartbeat_in_prefects_engine() -> None:
    import flows.health.flow  # noqa: F401  (any automation's module, as a run's process imports it)

    # Fails on a Prefect upgrade until moltbot/heartbeat.py is checked against the new engine.
    assert prefect.__version__.startswith(heartbeat.PREFECT_VERSION)
    assert prefect.flow_engine._send_heartbeats is heartbeat.send_heartbeats


@pytest.mark.prefect_events
def test_a_run_sends_its_heartbeat_and_its_thread_has_ended_when_the_run_returns(
    prefect_api: str,
) -> None:
    beating_threads.clear()
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: 30}):
        run_id = heartbeat_check()

    assert len(beating_threads) == 1
    assert not beating_threads[0].is_alive()
    # The first heartbeat goes out as the run starts, the next one 30 s later: exactly one.
    stored = wait_for(
        lambda: stored_heartbeats(prefect_api, run_id),
        interval=0.2,
        what="the run's heartbeat stored (the server writes events in batches)",
    )
    assert len(stored) == 1
    related = {resource["prefect.resource.role"] for resource in stored[0]["related"]}
    assert "flow" in related


def test_a_run_without_heartbeats_starts_no_thread(prefect_api: str) -> None:
    beating_threads.clear()
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        heartbeat_check()

    assert beating_threads == []


def test_another_prefect_version_keeps_its_own_heartbeat_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def prefects_own(engine: object, join_on_exit: bool = True) -> None:
        raise AssertionError("not called here")

    monkeypatch.setattr(prefect.flow_engine, "_send_heartbeats", prefects_own)
    monkeypatch.setattr(prefect, "__version__", "3.10.0")

    assert heartbeat.install() is False
    assert prefect.flow_engine._send_heartbeats is prefects_own

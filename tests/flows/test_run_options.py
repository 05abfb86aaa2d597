"""Every automation's flow takes the shared run options: result kept in process, audit hooks."""

from __future__ import annotations

import pytest

from moltbot.audit import audit_flow_run
from moltbot.registry import automations


@pytest.mark.parametrize("automation", automations(), ids=lambda automation: automation.name)
def test_every_automation_keeps_its_result_in_process_and_audits_each_final_state(
    automation,
) -> None:
    flow = automation.load_flow()

    # A named storage and no persisting: Prefect asks the server for no default storage.
    assert flow.persist_result is False
    assert flow.result_storage is not None
    for hooks in (
        flow.on_completion_hooks,
        flow.on_failure_hooks,
        flow.on_crashed_hooks,
        flow.on_cancellation_hooks,
    ):
        assert audit_flow_run in hooks

"""What every automation's `@flow` takes besides its name: result kept in process, audit hooks."""

from __future__ import annotations

from typing import Any

from moltbot.audit import AUDIT_HOOKS
from moltbot.runtime import RUN_RESULTS

AUTOMATION_FLOW: dict[str, Any] = {**RUN_RESULTS, **AUDIT_HOOKS}
"""`@flow(name=..., **AUTOMATION_FLOW)`: the result kept in the run's process (no storage asked
of the server), an audit entry at every final state; importing it also puts moltbot's heartbeat
loop in Prefect's engine (`moltbot.runtime`)."""

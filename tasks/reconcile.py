"""Tasks that load, in bulk, what reconcile compares: ledger rows, watermarks, alerted item states,
webhook inbox entries and their Prefect flow runs, and the omissions already alerted.

They return plain rows (dicts of JSON-like values and datetimes); the flow types them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import select

from moltbot.state.inbox import Inbox, InboxEntry, InboxStatus
from moltbot.state.item_state import ItemStateStore, item_states_table
from moltbot.state.ledger import Ledger, effects_table, ensure_table
from moltbot.state.watermarks import watermarks_table

# Flow runs per API request: well under the server's page limit.
_RUNS_PER_REQUEST = 200
_DEPLOYMENT_PREFIX = "deployment "

OPEN, RESOLVED = "open", "resolved"
"""States of an omission reconcile keeps: alerted and still found, or no longer found."""

_EFFECT_COLUMNS = (
    effects_table.c.key,
    effects_table.c.automation,
    effects_table.c.status,
    effects_table.c.created_at,
    effects_table.c.updated_at,
    effects_table.c.flow_run_id,
    effects_table.c.route,
    effects_table.c.due_at,
)


@task(name="load-recorded-effects", cache_policy=NO_CACHE)
def load_recorded(
    since: datetime, *, watermarked: str, alerting: str
) -> dict[str, list[dict[str, Any]]]:
    """The ledger's side, in four queries.

    Args:
        since: the start of the period looked at.
        watermarked: the automation whose watermarks and effects give sheet-row coverage.
        alerting: the automation whose item states record alerts.

    Returns:
        `effects`: the rows updated since `since` (key, automation, status, created_at,
        updated_at, flow_run_id, route); `form_effects`: every row of `watermarked` (digest
        windows cover sheet rows whatever their age); `marks`: its watermarks (stream,
        position_row, pending_row, updated_at); `alerted`: the items of `alerting` alerted since
        `since` (sku, state, since, last_alerted_at).
    """
    with Ledger.from_settings() as ledger:
        engine = ledger.engine
        for table in (watermarks_table, item_states_table):
            ensure_table(engine, table)
        with engine.connect() as conn:
            recent = conn.execute(
                select(*_EFFECT_COLUMNS).where(effects_table.c.updated_at >= since)
            ).all()
            forms = conn.execute(
                select(*_EFFECT_COLUMNS).where(effects_table.c.automation == watermarked)
            ).all()
            marks = conn.execute(
                select(watermarks_table).where(watermarks_table.c.automation == watermarked)
            ).all()
            states = item_states_table
            items = conn.execute(
                select(
                    states.c.item_key.label("sku"),
                    states.c.state,
                    states.c.since,
                    states.c.last_alerted_at,
                ).where(states.c.automation == alerting, states.c.last_alerted_at >= since)
            ).all()
    return {
        "effects": [row._asdict() for row in recent],
        "form_effects": [row._asdict() for row in forms],
        "marks": [_stream_mark(row) for row in marks],
        "alerted": [row._asdict() for row in items],
    }


def _stream_mark(row: Any) -> dict[str, Any]:
    position = json.loads(row.position) if row.position else None
    pending = json.loads(row.pending) if row.pending else None
    return {
        "stream": row.stream,
        "position_row": int(position["row"]) if position else None,
        "pending_row": int(pending["row"]) if pending else None,
        "updated_at": row.updated_at,
    }


@task(name="load-routed-inbox", cache_policy=NO_CACHE)
def load_routed_entries(since: datetime) -> list[dict[str, Any]]:
    """The webhook inbox entries routed to a deployment: those changed since `since`, and every
    one still pending, one row per deployment (entry_id, automation, deployment, status,
    received_at, updated_at, flow_run_id).

    A dispatched entry names its deployments and runs in its results; a pending or failed one
    has none yet, so its type's route in the `[webhooks]` config says where it goes. Entries
    routed only to Prefect events, and ignored ones, are not expected to produce an effect.

    Raises:
        InputError: the `[webhooks]` config is malformed (only read when it is needed).
    """
    with Ledger.from_settings() as ledger:
        entries = Inbox(ledger).entries_since(since)
    config = None
    routed: list[dict[str, Any]] = []
    for entry in entries:
        if entry.status == InboxStatus.DISPATCHED:
            targets = [
                (result["target"][len(_DEPLOYMENT_PREFIX) :], result["id"])
                for result in entry.results
                if result.get("target", "").startswith(_DEPLOYMENT_PREFIX)
                and not result.get("crashed")
            ]
        else:
            if config is None:
                from moltbot.webhooks.config import DeploymentTarget, GatewayConfig

                config = GatewayConfig.from_project()
            targets = [
                (target.deployment, None)
                for target in config.targets_for(entry.type)
                if isinstance(target, DeploymentTarget)
            ]
        routed.extend(_routed(entry, deployment, run_id) for deployment, run_id in targets)
    return routed


def _routed(entry: InboxEntry, deployment: str, run_id: str | None) -> dict[str, Any]:
    return {
        "entry_id": entry.id,
        # The registry's contract: a deployment's flow is named after its automation.
        "automation": deployment.split("/", 1)[0],
        "deployment": deployment,
        "status": entry.status.value,
        "received_at": entry.received_at,
        "updated_at": entry.updated_at,
        "flow_run_id": run_id,
    }


@task(name="read-flow-runs", cache_policy=NO_CACHE)
def read_flow_runs(flow_run_ids: Sequence[str]) -> list[dict[str, Any]]:
    """What the Prefect API says about each flow run (id, state_type, state_name, started), in
    a few requests; ids it does not know are left out.

    Args:
        flow_run_ids: flow run ids as the inbox records them.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    wanted: list[UUID] = []
    for text in dict.fromkeys(flow_run_ids):
        try:
            wanted.append(UUID(text))
        except ValueError:
            continue  # not a run id at all: no run has it
    found: list[dict[str, Any]] = []
    with get_client(sync_client=True) as client:
        for start in range(0, len(wanted), _RUNS_PER_REQUEST):
            chunk = wanted[start : start + _RUNS_PER_REQUEST]
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=chunk)), limit=len(chunk)
            )
            for run in runs:
                state = run.state
                found.append(
                    {
                        "id": str(run.id),
                        "state_type": state.type.value if state is not None else "PENDING",
                        "state_name": state.name if state is not None else "Pending",
                        "started": run.start_time is not None,
                    }
                )
    return found


@task(name="read-known-omissions", cache_policy=NO_CACHE)
def read_known_omissions(automation: str) -> set[str]:
    """The ids of the omissions `automation` alerted before and still finds open."""
    with Ledger.from_settings() as ledger:
        states = ItemStateStore(ledger, automation).read()
    return set(states.loc[states["state"] == OPEN, "item_key"])


@task(name="save-omission-states", cache_policy=NO_CACHE)
def save_omission_states(
    automation: str, opened: Sequence[str], resolved: Sequence[str], now: datetime
) -> int:
    """Record omissions as alerted (`opened`) or no longer found (`resolved`), in one
    transaction; how many rows were written."""
    ids = [*opened, *resolved]
    if not ids:
        return 0
    stamp = pd.Timestamp(now).tz_convert("UTC")
    alerted = [stamp] * len(opened) + [pd.NaT] * len(resolved)
    writes = pd.DataFrame(
        {
            "item_key": ids,
            "state": [OPEN] * len(opened) + [RESOLVED] * len(resolved),
            "since": pd.to_datetime([stamp] * len(ids), utc=True),
            "episode_since": pd.to_datetime([pd.NaT] * len(ids), utc=True),
            "last_alerted_at": pd.to_datetime(alerted, utc=True),
        }
    )
    with Ledger.from_settings() as ledger:
        return ItemStateStore(ledger, automation).write(writes, now=now)


@task(name="load-effects-by-prefix", cache_policy=NO_CACHE)
def load_effects_by_prefix(prefixes: Sequence[str]) -> list[dict[str, Any]]:
    """The ledger rows whose key starts with one of `prefixes`, whatever their age (rows as
    `load_recorded`'s `effects`)."""
    rows: list[dict[str, Any]] = []
    with Ledger.from_settings() as ledger, ledger.engine.connect() as conn:
        for prefix in dict.fromkeys(prefixes):
            escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            statement = select(*_EFFECT_COLUMNS).where(
                effects_table.c.key.like(f"{escaped}%", escape="\\")
            )
            rows.extend(row._asdict() for row in conn.execute(statement))
    return rows


@task(name="load-stored-entries", cache_policy=NO_CACHE)
def load_stored_entries(entry_ids: Sequence[str]) -> frozenset[str]:
    """The inbox entries among `entry_ids` whose event payment-failures stored (its record of a
    webhook run, in the `payment_events` table)."""
    from moltbot.state.payments import payments_table

    found: set[str] = set()
    ids = list(dict.fromkeys(entry_ids))
    with Ledger.from_settings() as ledger, ledger.engine.connect() as conn:
        ensure_table(ledger.engine, payments_table)
        # In chunks: well under SQLite's and PostgreSQL's bind-parameter limits.
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            statement = select(payments_table.c.inbox_id).where(
                payments_table.c.inbox_id.in_(chunk)
            )
            found.update(row[0] for row in conn.execute(statement))
    return frozenset(found)

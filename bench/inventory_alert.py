"""Benchmark: the inventory-alert flow against a plain pandas script doing the same state work.

Usage (see bench/README.md):
    uv run python bench/inventory_alert.py make DIR [SKUS]   # DIR/stock-0.csv, stock-1.csv, seed
    uv run python bench/inventory_alert.py plain DIR         # pandas + the store, no Prefect
    uv run python bench/inventory_alert.py flow DIR          # the flow (outbox delivery)

Both `plain` and `flow` start from a copy of DIR/seed.sqlite3 (the states after a run on
stock-0.csv) and process stock-1.csv, in which about 2% of the items changed state, so each
run reads every stored state, finds the same transitions and writes the same changed rows.
"""

from __future__ import annotations

import os
import shutil
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

AUTOMATION = "inventory-alert"


def _ledger_url(folder: Path, name: str) -> str:
    return f"sqlite:///{(folder / name).resolve()}"


def _fresh_copy(folder: Path, name: str) -> str:
    """A copy of the seeded ledger for one run, so every run finds the same stored states."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{folder / name}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(folder / "seed.sqlite3", folder / name)
    return _ledger_url(folder, name)


def make(folder: str, skus: str = "1000000") -> None:
    """Write two stock snapshots of `skus` items and the ledger seeded with the first."""
    import numpy as np
    import pandas as pd

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    count = int(skus)
    rng = np.random.default_rng(11)
    reorder_point = rng.integers(10, 200, size=count)
    draw = rng.random(count)
    # 85% ok, 10% low, 5% out.
    factor = np.where(draw < 0.05, 0.0, np.where(draw < 0.15, rng.uniform(0.2, 1.0, count), 0))
    factor = np.where(draw >= 0.15, rng.uniform(1.1, 4.0, count), factor)
    stock = pd.DataFrame(
        {
            "sku": [f"SKU-{i:07d}" for i in range(count)],
            "name": [f"상품 {i}" for i in range(count)],
            "on_hand": np.floor(reorder_point * factor).astype(np.int64),
            "reorder_point": reorder_point,
            "safety_stock": reorder_point // 4,
            "lead_time_days": rng.integers(2, 15, size=count),
            "daily_demand": np.round(rng.uniform(0.5, 20.0, size=count), 2),
            "location": rng.choice(["서울 물류센터", "부산 창고", "Incheon DC"], size=count),
        }
    )
    stock.to_csv(out / "stock-0.csv", index=False, lineterminator="\n")
    later = stock.copy()
    change = rng.random(count)
    # About 2% of the items change state: some fall low or run out, some are restocked.
    later.loc[change < 0.01, "on_hand"] = later["reorder_point"] // 2
    later.loc[(change >= 0.01) & (change < 0.015), "on_hand"] = 0
    later.loc[(change >= 0.015) & (change < 0.02), "on_hand"] = later["reorder_point"] * 3
    later.to_csv(out / "stock-1.csv", index=False, lineterminator="\n")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{out / 'seed.sqlite3'}{suffix}").unlink(missing_ok=True)
    _run_plain(out / "stock-0.csv", _ledger_url(out, "seed.sqlite3"))
    print(out)


def _run_plain(source: Path, ledger_url: str) -> dict[str, int]:
    """What a hand-written cron job would do with the same functions: no Prefect at all."""
    from flows.inventory_alert.render import build_alert_message
    from flows.inventory_alert.states import (
        compute_states,
        normalize_inventory,
        plan_alerts,
        state_counts,
    )
    from moltbot.state.item_state import STATE_COLUMNS, ItemStateStore
    from moltbot.state.ledger import Ledger
    from tasks.sources import read_table

    now = datetime.now(UTC)
    inventory = normalize_inventory(read_table(str(source)), source_label=source.name)
    states = compute_states(inventory.items, today=now.date())
    counts = state_counts(states)
    with Ledger(ledger_url) as ledger:
        store = ItemStateStore(ledger, AUTOMATION)
        plan = plan_alerts(states, store.read(), now=now, cooldown=timedelta(hours=24))
        for severity, items in plan.alerts.items():
            build_alert_message(
                severity,
                items,
                counts=counts,
                bad_rows=[],
                bad_rows_total=len(inventory.bad_rows),
                now=now,
                timezone="Asia/Seoul",
                locale="en",
                top_n=20,
            )
        store.write(plan.writes[list(STATE_COLUMNS)], now=now)
    return {name: len(items) for name, items in plan.alerts.items()}


def plain(folder: str) -> None:
    out = Path(folder)
    print(_run_plain(out / "stock-1.csv", _fresh_copy(out, "plain.sqlite3")))


def flow(folder: str) -> None:
    out = Path(folder)
    os.environ["MOLTBOT_LEDGER_URL"] = _fresh_copy(out, "flow.sqlite3")
    os.environ.setdefault("MOLTBOT_HOME", str(out / "home"))
    from flows.inventory_alert.flow import inventory_alert

    result = inventory_alert(source=str(out / "stock-1.csv"))
    print(result["transitions_total"], result["states_saved"])


if __name__ == "__main__":
    command, *arguments = sys.argv[1:]
    {"make": make, "plain": plain, "flow": flow}[command](*arguments)

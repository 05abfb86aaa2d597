"""Benchmark: the inventory-alert flow against a plain pandas script doing the same state work.

Usage (see bench/README.md):
    uv run python bench/inventory_alert.py make DIR [SKUS]   # DIR/stock-0.csv, stock-1.csv, seed
    uv run python bench/inventory_alert.py plain DIR         # pandas + the store, no Prefect
    uv run python bench/inventory_alert.py flow DIR          # the flow (outbox delivery)
    uv run python bench/inventory_alert.py duckdb DIR        # DuckDB SQL + sqlite3, no pandas
    uv run python bench/inventory_alert.py compare DIR       # plain's changes == DuckDB's?

`plain`, `flow` and `duckdb` start from a copy of DIR/seed.sqlite3 (the states after a run on
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
COOLDOWN = timedelta(hours=24)


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
    return {severity: len(items) for severity, items in _plain_changes(source, ledger_url)[0]}


def _plain_changes(source: Path, ledger_url: str) -> tuple[list[tuple[str, list]], list]:
    """The plain run's alerts (severity, sorted (sku, from, to)) and its written (sku, state)."""
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
        plan = plan_alerts(states, store.read(), now=now, cooldown=COOLDOWN)
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
    alerts = [
        (name, sorted(zip(items["sku"], items["from"], items["to"], strict=True)))
        for name, items in plan.alerts.items()
    ]
    written = sorted(zip(plan.writes["item_key"], plan.writes["state"], strict=True))
    return alerts, written


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


# --------------------------------------------------------------------------- DuckDB

# The states and what changed, in DuckDB SQL: the stock file through DuckDB's typed CSV reader
# (only the columns a state needs; no cleaning, the generated file is clean), the stored states
# as an Arrow table, the rules of `flows.inventory_alert.states` (`compute_states`,
# `plan_alerts`: an item without a stored state was ok; reminders once per cooldown).
_DUCKDB_CHANGES = """
CREATE TEMP TABLE changes AS
WITH stock AS (
    SELECT sku, CASE WHEN on_hand <= 0 THEN 'out' WHEN on_hand <= reorder_point THEN 'low'
                     ELSE 'ok' END AS state
    FROM read_csv($path, header = true, columns = {
        'sku': 'VARCHAR', 'name': 'VARCHAR', 'on_hand': 'DOUBLE', 'reorder_point': 'DOUBLE',
        'safety_stock': 'DOUBLE', 'lead_time_days': 'DOUBLE', 'daily_demand': 'DOUBLE',
        'location': 'VARCHAR'})
), joined AS (
    SELECT s.sku, s.state, p.state IS NULL AS is_new, coalesce(p.state, 'ok') AS before,
           p.since, p.episode_since, p.last_alerted_at,
           floor((epoch_us($now) - epoch_us(p.since::TIMESTAMP)) / $cooldown) AS period,
           floor((epoch_us(coalesce(p.last_alerted_at, p.since)::TIMESTAMP)
                  - epoch_us(p.since::TIMESTAMP)) / $cooldown) AS last_period
    FROM stock s LEFT JOIN stored p ON p.item_key = s.sku
), judged AS (
    SELECT *, before <> state AS changed,
           CASE WHEN before = 'ok' AND state = 'low' THEN 'low'
                WHEN before IN ('ok', 'low') AND state = 'out' THEN 'out'
                WHEN before IN ('low', 'out') AND state = 'ok' THEN 'recovered'
                WHEN before = state AND NOT is_new AND state = 'out' AND period >= 1
                     AND period > last_period THEN 'reminder' END AS severity
    FROM joined
)
SELECT sku, before, state, severity,
       CASE WHEN changed OR is_new THEN $stamp ELSE since END AS since,
       CASE WHEN state = 'ok' THEN NULL WHEN before = 'ok' THEN $stamp
            ELSE coalesce(episode_since, since) END AS episode_since,
       CASE WHEN severity IS NOT NULL THEN $stamp ELSE last_alerted_at END AS last_alerted_at
FROM judged WHERE changed OR is_new OR severity IS NOT NULL
"""
_UPSERT = """
INSERT INTO item_states (automation, item_key, state, since, episode_since, last_alerted_at,
                         alert_key, updated_at)
VALUES (?, ?, ?, ?, ?, ?, NULL, ?)
ON CONFLICT (automation, item_key) DO UPDATE SET state = excluded.state,
    since = excluded.since, episode_since = excluded.episode_since,
    last_alerted_at = excluded.last_alerted_at, alert_key = excluded.alert_key,
    updated_at = excluded.updated_at
"""


def _duckdb_changes(source: Path, ledger: Path) -> tuple[list[tuple[str, list]], list]:
    """The same alerts and written rows as `_plain_changes`, by DuckDB and the sqlite3 module."""
    import sqlite3

    import duckdb
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    now = datetime.now(UTC).replace(tzinfo=None)
    stamp = now.strftime("%Y-%m-%d %H:%M:%S.%f")
    names = ("item_key", "state", "since", "episode_since", "last_alerted_at")
    with sqlite3.connect(ledger) as database:
        # A million stored rows as one text of SQL literals, parsed by Arrow's CSV reader: half
        # the time of a million Python tuples. The times stay text, as SQLAlchemy wrote them.
        [(text,)] = database.execute(
            "SELECT group_concat("
            + " || ',' || ".join(f"quote({name})" for name in names)
            + ", char(10)) FROM item_states WHERE automation = ?",
            (AUTOMATION,),
        ).fetchall()
        stored = pa_csv.read_csv(
            pa.py_buffer((text or "").encode()),
            read_options=pa_csv.ReadOptions(column_names=names),
            parse_options=pa_csv.ParseOptions(
                quote_char="'", double_quote=True, newlines_in_values=True
            ),
            convert_options=pa_csv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()),
                null_values=["NULL"],
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
            ),
        )
        connection = duckdb.connect()
        connection.from_arrow(stored).create_view("stored")
        connection.execute(
            _DUCKDB_CHANGES.replace("$path", _quoted(str(source)))
            .replace("$now", f"TIMESTAMP {_quoted(now.isoformat())}")
            .replace("$cooldown", str(int(COOLDOWN.total_seconds() * 1_000_000)))
            .replace("$stamp", _quoted(stamp))
        )
        written = connection.execute(
            "SELECT sku, state, since, episode_since, last_alerted_at FROM changes"
        ).fetchall()
        database.executemany(_UPSERT, [(AUTOMATION, *row, stamp) for row in written])
    alerts = []
    for severity in ("out", "low", "recovered", "reminder"):
        found = connection.execute(
            "SELECT sku, before, state FROM changes WHERE severity = ? ORDER BY ALL", [severity]
        ).fetchall()
        if found:
            alerts.append((severity, found))
    return alerts, sorted((sku, state) for sku, state, *_ in written)


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def duckdb(folder: str) -> None:
    out = Path(folder)
    _fresh_copy(out, "duckdb.sqlite3")
    alerts, _ = _duckdb_changes(out / "stock-1.csv", out / "duckdb.sqlite3")
    print({severity: len(items) for severity, items in alerts})


def compare(folder: str) -> None:
    """Exit 1 unless plain and DuckDB find the same transitions and write the same rows."""
    out = Path(folder)
    ours = _plain_changes(out / "stock-1.csv", _fresh_copy(out, "plain.sqlite3"))
    _fresh_copy(out, "duckdb.sqlite3")
    theirs = _duckdb_changes(out / "stock-1.csv", out / "duckdb.sqlite3")
    for name, (alerts, written) in (("plain", ours), ("duckdb", theirs)):
        counts = {severity: len(items) for severity, items in alerts}
        print(f"{name}: {counts}, {len(written):,} rows written")
    same = ours == theirs
    print("same changes" if same else "changes differ")
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    command, *arguments = sys.argv[1:]
    commands = {"make": make, "plain": plain, "flow": flow, "duckdb": duckdb, "compare": compare}
    commands[command](*arguments)

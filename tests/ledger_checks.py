"""What a run that refused its input may leave in the ledger: its audit entry, nothing else."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import inspect, text

from moltbot.state.ledger import Ledger

# Tables that record who did what, not effects or state a later run would act on.
AUDIT_TABLES = {"audit", "audit_anchor", "audit_published"}


def assert_only_the_failed_run_is_audited(home: Path) -> None:
    """No effect, watermark, item state or review was written; the run is audited as failed."""
    path = home / "ledger.sqlite3"
    assert path.exists(), "the failed run left no audit entry"
    with Ledger(f"sqlite:///{path}") as ledger, ledger.engine.connect() as conn:
        for table in set(inspect(conn).get_table_names()) - AUDIT_TABLES:
            count = conn.execute(text(f'SELECT COUNT(*) FROM "{table}"')).scalar()
            assert count == 0, f"{table} holds {count} row(s)"
        runs = conn.execute(text("SELECT outcome FROM audit WHERE action = 'run'")).all()
    assert [row.outcome for row in runs] == ["failed"]

"""Secrets the ledger makes once and every process sharing it reads (pseudonyms, link signing)."""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import Column, String, Table, insert, select
from sqlalchemy.exc import IntegrityError

from moltbot.state.ledger import Ledger, UTCDateTime, ensure_table, metadata

# The table keeps its first name: ledgers made before it held other secrets have it already.
ledger_keys_table = Table(
    "pseudonym_keys",
    metadata,
    Column("name", String(64), primary_key=True),
    # Random bytes (hex), made once per ledger: every process sharing the ledger keys alike.
    Column("secret", String(128), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)


def ledger_secret(ledger: Ledger, name: str, *, now: datetime) -> bytes:
    """The ledger's secret called `name` (32 random bytes), made on first use.

    Two processes making it at once both read back the one that was inserted first.
    """
    engine = ledger.engine
    ensure_table(engine, ledger_keys_table)
    table = ledger_keys_table
    with engine.begin() as conn:
        found = conn.execute(select(table.c.secret).where(table.c.name == name)).scalar()
        if found is None:
            try:
                with conn.begin_nested():
                    values = {"name": name, "secret": secrets.token_hex(32), "created_at": now}
                    conn.execute(insert(table).values(**values))
            except IntegrityError:
                pass
            found = conn.execute(select(table.c.secret).where(table.c.name == name)).scalar_one()
    return bytes.fromhex(found)

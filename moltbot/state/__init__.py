"""State kept in the ledger database: effects ledger, watermarks, item states, webhook inbox."""

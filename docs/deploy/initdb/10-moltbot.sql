-- Runs once, when the PostgreSQL volume is first created (docker-entrypoint-initdb.d):
-- the ledger database next to Prefect's (POSTGRES_DB), owned by the same user.
CREATE DATABASE moltbot;

"""moltbot: business-automation bots on Prefect 3 (CLI, settings, ledger, delivery, sandbox)."""

import os

# Prefect reads these when it starts a server or sends telemetry; moltbot keeps both off unless the
# user chose otherwise. Set before any Prefect import so a temporary server inherits them.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

__version__ = "0.1.0"

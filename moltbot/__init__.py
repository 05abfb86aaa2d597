"""moltbot: business-automation bots on Prefect 3 (CLI, settings, ledger, delivery, sandbox)."""

import os

# Prefect reads these when it starts a server or sends telemetry; moltbot keeps both off unless the
# user chose otherwise. Set before any Prefect import so a temporary server inherits them.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

# Every process that imports moltbot (the CLI, and a flow run that `serve` or a worker starts in a
# process of its own) masks secrets and personal data in every log record, the ones Prefect ships
# to its API included.
from moltbot.masking import install_record_masking

install_record_masking()

__version__ = "0.1.0"

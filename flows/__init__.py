"""Automations: one Prefect flow (or package) per automation."""

import moltbot  # noqa: F401  (sets Prefect telemetry defaults before Prefect is imported)

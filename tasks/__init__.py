"""Reusable Prefect tasks grouped by what they touch (sources, delivery, artifacts)."""

import moltbot  # noqa: F401  (sets Prefect telemetry defaults before Prefect is imported)

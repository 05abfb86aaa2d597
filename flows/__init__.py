"""Automations, one package per automation; this module collects their entries into the registry."""

import moltbot  # noqa: F401  (sets Prefect telemetry defaults before Prefect is imported)
from flows.daily_report import ENTRY as DAILY_REPORT
from flows.error_spike import ENTRY as ERROR_SPIKE
from flows.form_digest import ENTRY as FORM_DIGEST
from flows.health import ENTRY as HEALTH
from flows.inventory_alert import ENTRY as INVENTORY_ALERT
from flows.metrics_weekly import ENTRY as METRICS_WEEKLY
from flows.on_call import ENTRY as ON_CALL
from flows.payment_failures import ENTRY as PAYMENT_FAILURES
from flows.reconcile import ENTRY as RECONCILE
from flows.service_health import ENTRY as SERVICE_HEALTH
from flows.ticket_creation import ENTRY as TICKET_CREATION
from moltbot.registry import Automation

AUTOMATIONS: tuple[Automation, ...] = (
    DAILY_REPORT,
    INVENTORY_ALERT,
    FORM_DIGEST,
    TICKET_CREATION,
    SERVICE_HEALTH,
    ERROR_SPIKE,
    PAYMENT_FAILURES,
    RECONCILE,
    ON_CALL,
    HEALTH,
    METRICS_WEEKLY,
)
"""The one registry of automations, in registry order (`moltbot.registry.automations()`)."""

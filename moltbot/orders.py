"""The canonical orders table shared by the sales automations and the sample-data generator."""

from __future__ import annotations

ORDER_COLUMNS: tuple[str, ...] = (
    "order_id",
    "ordered_at",
    "product",
    "channel",
    "region",
    "quantity",
    "unit_price",
    "status",
)
"""Canonical order columns, one row per order line; naive `ordered_at` values are UTC."""

EXCLUDED_STATUSES = frozenset({"cancelled", "refunded"})
"""Statuses left out of revenue and counted separately."""

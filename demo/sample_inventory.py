"""A sample stock list for the sample shop's products, in two snapshots, for the demo."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from demo.sample_orders import PRODUCTS, STATUS_SHARES
from moltbot.errors import InputError

# What `demo.sample_orders.generate_orders` sells on average: 1-3 lines per order (mean 1.4) and,
# per line, a mean quantity that falls with the price (its quantity tiers).
_LINES_PER_ORDER = 1.4
_MEAN_QUANTITY_BY_PRICE = ((20_000, 1.84), (60_000, 1.21), (math.inf, 1.0))
_COUNTED_SHARE = STATUS_SHARES["completed"]

LOCATIONS = ("서울 물류센터", "부산 창고", "Incheon DC")
_LEAD_TIMES = (3, 5, 7, 10, 14)

# Stock as a multiple of the reorder point per product position (most popular first), in the
# first snapshot and after a day of sales and deliveries. 0 is out, below 1 low, above 1 ok.
# Between the two: 립밤 falls low, the green tea runs out, the phone cases and the tumblers are
# restocked (two recoveries), the earphones stay out and the mouse stays low.
_STOCK_FACTORS: tuple[tuple[float, float], ...] = (
    (3.0, 2.6),  # USB-C Cable
    (1.4, 0.8),  # 립밤: ok -> low
    (0.5, 0.0),  # Organic Green Tea 50g: low -> out
    (0.0, 2.5),  # Phone Case: out -> ok
    (2.2, 1.9),  # Cold Brew Coffee 1L
    (0.6, 3.0),  # 텀블러 500ml: low -> ok
    (2.5, 2.2),  # 핸드크림 50ml
    (0.7, 0.6),  # Wireless Mouse: stays low
    (2.8, 2.6),
    (3.1, 2.9),
    (2.0, 1.8),
    (2.4, 2.2),
    (0.0, 0.0),  # 무선 이어폰: stays out
    (2.6, 2.5),
    (1.9, 1.8),
    (2.2, 2.1),
    (3.0, 2.9),
    (2.1, 2.0),
    (1.8, 1.7),
    (2.5, 2.5),
    (3.5, 3.5),
)

SNAPSHOTS = 2


def sku_of(position: int) -> str:
    """The SKU code of the product at `position` in `demo.sample_orders.PRODUCTS`."""
    return f"MB-{position + 1:03d}"


def expected_daily_units(orders_per_day: int = 120) -> dict[str, float]:
    """Average counted units a day per product that the sample orders hold (an estimate)."""
    popularity = np.array([product.popularity for product in PRODUCTS])
    shares = popularity / popularity.sum()
    units = {}
    for product, share in zip(PRODUCTS, shares, strict=True):
        quantity = next(q for bound, q in _MEAN_QUANTITY_BY_PRICE if product.unit_price_krw < bound)
        units[product.name] = orders_per_day * _LINES_PER_ORDER * share * quantity * _COUNTED_SHARE
    return units


def generate_inventory(snapshot: int = 0, *, orders_per_day: int = 120) -> pd.DataFrame:
    """The sample shop's stock list at `snapshot` 0 (first) or 1 (after stock changed).

    One row per product of `demo.sample_orders.PRODUCTS` with the columns `sku, name, on_hand,
    reorder_point, safety_stock, lead_time_days, location` and no `daily_demand`: the demo
    derives it from the sample orders. Reorder points follow the estimated demand (demand x
    lead time + two days of safety stock), so days of cover read true against the sales.

    Raises:
        InputError: an unknown snapshot.
    """
    if snapshot not in range(SNAPSHOTS):
        raise InputError(f"snapshot must be 0 or 1, got {snapshot}")
    demand = expected_daily_units(orders_per_day)
    rows = []
    for position, product in enumerate(PRODUCTS):
        daily = demand[product.name]
        lead_time = _LEAD_TIMES[position % len(_LEAD_TIMES)]
        safety = math.ceil(daily * 2)
        reorder_point = math.ceil(daily * lead_time) + safety
        factor = _STOCK_FACTORS[position][snapshot]
        rows.append(
            {
                "sku": sku_of(position),
                "name": product.name,
                "on_hand": math.floor(reorder_point * factor),
                "reorder_point": reorder_point,
                "safety_stock": safety,
                "lead_time_days": lead_time,
                "location": LOCATIONS[position % len(LOCATIONS)],
            }
        )
    return pd.DataFrame(rows)


def write_sample_inventory(path: Path, snapshot: int = 0, *, orders_per_day: int = 120) -> Path:
    """Write `generate_inventory(snapshot)` to `path` as UTF-8 CSV; return `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = generate_inventory(snapshot, orders_per_day=orders_per_day)
    frame.to_csv(path, index=False, encoding="utf-8", lineterminator="\n")
    return path

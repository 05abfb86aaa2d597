"""Deterministic, seedable sample orders of any size with planted anomaly days, for demos."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from flows.shared.orders import ORDER_COLUMNS
from moltbot.config.settings import checked_timezone
from moltbot.errors import InputError


@dataclass(frozen=True)
class Product:
    """A catalogue entry: display name, fixed KRW unit price and relative popularity."""

    name: str
    unit_price_krw: int
    popularity: float


# Expensive items are deliberately less popular so the per-order revenue spread (and with it the
# day-to-day revenue noise) stays moderate.
PRODUCTS: tuple[Product, ...] = (
    Product("USB-C Cable", 9_900, 10.0),
    Product("립밤", 3_900, 9.0),
    Product("Organic Green Tea 50g", 12_900, 8.0),
    Product("Phone Case", 15_900, 8.0),
    Product("Cold Brew Coffee 1L", 6_500, 8.0),
    Product("텀블러 500ml", 24_900, 7.0),
    Product("핸드크림 50ml", 8_900, 7.0),
    Product("Wireless Mouse", 29_900, 6.0),
    Product("비타민C 1000mg 60정", 18_900, 6.0),
    Product("보조배터리 10000mAh", 32_900, 5.0),
    Product("에코백", 14_900, 5.0),
    Product("Notebook A5 3-pack", 8_500, 5.0),
    Product("무선 이어폰", 89_000, 4.0),
    Product("무릎 담요", 19_900, 4.0),
    Product("Stainless Water Bottle 750ml", 27_000, 4.0),
    Product("블루투스 스피커", 59_000, 3.0),
    Product("Yoga Mat", 39_000, 3.0),
    Product("LED 데스크 램프", 45_000, 3.0),
    Product("기계식 키보드", 129_000, 2.0),
    Product("Noise Cancelling Headphones", 169_000, 1.5),
    Product("스마트워치", 189_000, 1.0),
)

CHANNEL_SHARES: dict[str, float] = {"app": 0.40, "web": 0.30, "marketplace": 0.18, "store": 0.12}

REGION_SHARES: dict[str, float] = {
    "Seoul": 0.33,
    "Gyeonggi": 0.28,
    "Busan": 0.10,
    "Incheon": 0.09,
    "Daegu": 0.07,
    "Daejeon": 0.05,
    "Gwangju": 0.04,
    "Jeju": 0.04,
}

# Per order; cancelled and refunded orders do not count as revenue.
STATUS_SHARES: dict[str, float] = {"completed": 0.955, "cancelled": 0.03, "refunded": 0.015}

# Relative order volume by local hour 00..23: a quiet night (02:00-07:00), a lunch peak and a
# bigger evening peak. Late-evening and early-morning orders land on the previous UTC date.
_HOURLY_WEIGHTS = np.array(
    [3.0, 2.0, 1.0, 0.6, 0.5, 0.6, 1.0, 2.0, 3.5, 4.5, 5.0, 6.0,
     8.0, 7.0, 5.5, 5.0, 5.0, 5.5, 6.0, 7.0, 8.5, 9.0, 7.5, 5.0]
)  # fmt: skip

# Monday..Sunday volume factors: weekends about 25% above weekdays.
_WEEKDAY_FACTORS = np.array([0.95, 0.93, 0.95, 0.97, 1.03, 1.22, 1.20])

_LINES_PER_ORDER_SHARES = np.array([0.68, 0.24, 0.08])  # 1, 2 or 3 lines

# Shares of quantity 1..5 by unit price: people buy cables by the handful, smartwatches one at a
# time. Keys are the upper price bound (exclusive) of each tier.
_QUANTITY_SHARES_BY_PRICE: dict[int, tuple[float, ...]] = {
    20_000: (0.55, 0.22, 0.12, 0.06, 0.05),
    60_000: (0.84, 0.12, 0.03, 0.01, 0.0),
    1_000_000: (1.0, 0.0, 0.0, 0.0, 0.0),
}

_PRODUCT_NAMES = pa.array([p.name for p in PRODUCTS])
_PRODUCT_PRICES = np.array([p.unit_price_krw for p in PRODUCTS], dtype=np.int64)
_PRODUCT_POPULARITY = np.array([p.popularity for p in PRODUCTS])

# Growth per day (about +7.5% a quarter) and day-level volume noise: both small enough that with
# the default volume only the planted anomalies trip a 3-sigma test over a trailing 28-day window.
_DAILY_GROWTH = 0.0008
_DAILY_NOISE_SIGMA = 0.01

# Anomalies are planted only this many days into the data, so a detector has enough history.
_FIRST_ANOMALY_POSITION = 20
# A detector's trailing window is 28 days; anomalies further apart than that never share a
# window, so one planted day cannot mask the next by inflating the trailing standard deviation.
_MIN_ANOMALY_GAP_DAYS = 30
_MAX_ANOMALY_GAP_DAYS = 37
# Volume multipliers, latest first: the final day is always a spike so the demo shows the flag.
_ANOMALY_MULTIPLIERS = (3.0, 0.2, 2.8)


def generate_orders(
    *,
    end_date: dt.date | None = None,
    days: int = 90,
    seed: int = 7,
    orders_per_day: int = 120,
    timezone: str = "Asia/Seoul",
) -> pd.DataFrame:
    """Generate realistic order lines for the `days` local dates ending at `end_date`.

    Each order has 1-3 lines (distinct products) sharing `order_id`, `ordered_at`, `channel`,
    `region` and `status`. Volume follows a weekly rhythm, a mild trend, small noise and an
    intraday curve in `timezone`; the days from `sample_anomaly_dates` are big spikes or drops.
    The same arguments always give the same frame (and byte-identical files).

    Args:
        end_date: Last local date covered; default yesterday in `timezone` (the only use of the
            wall clock).
        days: Number of local dates covered, ending at `end_date` inclusive.
        seed: Seed of the random generator.
        orders_per_day: Average number of orders on a regular day.
        timezone: IANA timezone whose local dates and hours the data follows.

    Returns:
        One row per order line with the columns of `ORDER_COLUMNS`, in order of local order
        time, an order's lines together. `ordered_at` is naive UTC (`datetime64[us]`, whole
        seconds); `quantity` and `unit_price` (whole KRW) are int64; the rest are `str`.

    Raises:
        InputError: `days` or `orders_per_day` is below 1, or `timezone` is unknown.
    """
    if orders_per_day < 1:
        raise InputError(f"orders_per_day must be at least 1, got {orders_per_day}")
    local_dates = _local_dates(end_date=end_date, days=days, timezone=timezone)
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[0])

    orders_by_day = _orders_by_day(
        local_dates,
        rng=rng,
        orders_per_day=orders_per_day,
        anomaly_multipliers=_anomaly_multipliers(len(local_dates), seed=seed),
    )
    order_count = int(orders_by_day.sum())
    order_day = np.repeat(np.arange(len(local_dates)), orders_by_day)

    hours = _draw(_HOURLY_WEIGHTS, rng.random(order_count))
    seconds_into_day = hours * 3600 + rng.integers(0, 3600, size=order_count)
    # Number orders in time order within each local date, like a shop's order sequence.
    time_order = np.argsort(order_day * 86_400 + seconds_into_day, kind="stable")
    seconds_into_day = seconds_into_day[time_order]
    sequence = np.arange(order_count) - np.repeat(_group_starts(orders_by_day), orders_by_day) + 1
    ordered_at = _local_to_naive_utc(
        np.array(local_dates, dtype="datetime64[s]")[order_day]
        + seconds_into_day.astype("timedelta64[s]"),
        timezone=timezone,
    )
    order_ids = pc.binary_join_element_wise(
        "ORD-",
        pa.array([d.strftime("%Y%m%d") for d in local_dates]).take(order_day),
        "-",
        pc.utf8_lpad(pc.cast(pa.array(sequence), pa.string()), 5, "0"),
        "",
    )
    channels = _draw(np.array(list(CHANNEL_SHARES.values())), rng.random(order_count))
    regions = _draw(np.array(list(REGION_SHARES.values())), rng.random(order_count))
    # Mixes that move revenue are spread evenly over each day's orders and lines (stratified
    # sampling): days still differ by the planted rhythm, trend and noise, but the luck of the
    # draw does not swamp them, so only the planted anomalies look anomalous.
    statuses = _draw(np.array(list(STATUS_SHARES.values())), _spread_uniforms(rng, order_day))
    lines_per_order = 1 + _draw(_LINES_PER_ORDER_SHARES, _spread_uniforms(rng, order_day))
    line_order = np.repeat(np.arange(order_count), lines_per_order)
    line_day = order_day[line_order]
    line_products = _distinct_products_per_order(
        rng, lines_per_order, _spread_uniforms(rng, line_day)
    )
    quantities = 1 + _draw_quantities(
        line_products, _spread_uniforms(rng, line_day * len(PRODUCTS) + line_products)
    )

    line_order_arrow = pa.array(line_order)
    line_products_arrow = pa.array(line_products)
    return pd.DataFrame(
        {
            "order_id": _strings(order_ids.take(line_order_arrow)),
            "ordered_at": ordered_at[line_order],
            "product": _strings(_PRODUCT_NAMES.take(line_products_arrow)),
            "channel": _strings(pa.array(list(CHANNEL_SHARES)).take(channels[line_order])),
            "region": _strings(pa.array(list(REGION_SHARES)).take(regions[line_order])),
            "quantity": quantities.astype(np.int64),
            "unit_price": _PRODUCT_PRICES[line_products],
            "status": _strings(pa.array(list(STATUS_SHARES)).take(statuses[line_order])),
        },
        columns=list(ORDER_COLUMNS),
    )


def sample_anomaly_dates(
    *,
    end_date: dt.date | None = None,
    days: int = 90,
    seed: int = 7,
    timezone: str = "Asia/Seoul",
) -> list[dt.date]:
    """Local dates that `generate_orders` with the same arguments plants as anomalies.

    The last one is always `end_date` (a spike, about 3x revenue); up to two earlier ones are a
    drop (about 0.2x) and a spike (about 2.8x). All are at least 20 days into the data and more
    than 28 days apart, so each stands out against a trailing 28-day window. With 20 days or
    fewer there are none. Positions depend on `seed` and `days`, not on `orders_per_day`.

    Args:
        end_date: Last local date covered; default yesterday in `timezone`.
        days: Number of local dates covered.
        seed: Seed given to `generate_orders`.
        timezone: IANA timezone of the local dates.

    Returns:
        The anomalous local dates, oldest first.

    Raises:
        InputError: `days` is below 1 or `timezone` is unknown.
    """
    local_dates = _local_dates(end_date=end_date, days=days, timezone=timezone)
    multipliers = _anomaly_multipliers(len(local_dates), seed=seed)
    return [local_dates[position] for position in sorted(multipliers)]


def write_sample_orders(path: Path, **kwargs: Any) -> Path:
    """Write `generate_orders(**kwargs)` to `path`, as CSV or Parquet by its suffix.

    CSV is UTF-8 without an index, `ordered_at` as naive UTC `YYYY-MM-DD HH:MM:SS`, `\\n` line
    ends, so the same arguments give byte-identical files.

    Args:
        path: Target file ending in `.csv` or `.parquet`; missing parent folders are created.
        **kwargs: Keyword arguments of `generate_orders`.

    Returns:
        `path`.

    Raises:
        InputError: the suffix is neither `.csv` nor `.parquet`, or an argument is invalid.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in {".csv", ".parquet"}:
        raise InputError(f"sample orders are written as .csv or .parquet, not {path.name!r}")
    orders = generate_orders(**kwargs)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        orders.to_csv(
            path,
            index=False,
            encoding="utf-8",
            lineterminator="\n",
            date_format="%Y-%m-%d %H:%M:%S",
        )
    else:
        orders.to_parquet(path, index=False)
    return path


def _local_dates(*, end_date: dt.date | None, days: int, timezone: str) -> list[dt.date]:
    """The `days` consecutive local dates ending at `end_date` (default: yesterday locally)."""
    if days < 1:
        raise InputError(f"days must be at least 1, got {days}")
    zone = ZoneInfo(checked_timezone(timezone))
    if end_date is None:
        end_date = dt.datetime.now(zone).date() - dt.timedelta(days=1)
    first = end_date - dt.timedelta(days=days - 1)
    return [first + dt.timedelta(days=offset) for offset in range(days)]


def _anomaly_multipliers(days: int, *, seed: int) -> dict[int, float]:
    """Volume multiplier by day position for the planted anomalies, latest at `days - 1`."""
    # A child seed of its own keeps the positions independent of orders_per_day.
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[1])
    gaps = rng.integers(
        _MIN_ANOMALY_GAP_DAYS, _MAX_ANOMALY_GAP_DAYS + 1, size=len(_ANOMALY_MULTIPLIERS)
    )
    multipliers: dict[int, float] = {}
    position = days - 1
    for multiplier, gap in zip(_ANOMALY_MULTIPLIERS, gaps, strict=True):
        if position < _FIRST_ANOMALY_POSITION:
            break
        multipliers[position] = multiplier
        position -= int(gap)
    return multipliers


def _orders_by_day(
    local_dates: list[dt.date],
    *,
    rng: np.random.Generator,
    orders_per_day: int,
    anomaly_multipliers: dict[int, float],
) -> np.ndarray:
    """Number of orders on each local date: trend x weekday x noise x anomaly, at least one."""
    positions = np.arange(len(local_dates))
    trend = np.exp(_DAILY_GROWTH * (positions - positions.mean()))
    weekday = _WEEKDAY_FACTORS[[d.weekday() for d in local_dates]] / _WEEKDAY_FACTORS.mean()
    noise = np.exp(rng.normal(0.0, _DAILY_NOISE_SIGMA, size=len(local_dates)))
    anomaly = np.ones(len(local_dates))
    for position, multiplier in anomaly_multipliers.items():
        anomaly[position] = multiplier
    expected = orders_per_day * trend * weekday * noise * anomaly
    return np.maximum(np.rint(expected), 1).astype(np.int64)


def _group_starts(group_sizes: np.ndarray) -> np.ndarray:
    """Index of the first element of each group when groups are stored one after another."""
    return np.concatenate(([0], np.cumsum(group_sizes)[:-1])).astype(np.int64)


def _draw(weights: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """Category index per uniform in [0, 1), with probabilities proportional to `weights`."""
    cumulative = np.cumsum(weights) / np.sum(weights)
    return np.minimum(np.searchsorted(cumulative, uniforms, side="right"), len(weights) - 1)


def _spread_uniforms(rng: np.random.Generator, group: np.ndarray) -> np.ndarray:
    """One uniform in [0, 1) per element, evenly spread within each group, randomly arranged.

    Each of the n elements of a group gets a value from its own slice [r/n, (r+1)/n) for a
    random rank r, so category counts per group are within one of their expected share.

    Args:
        rng: Random generator.
        group: Non-negative group label of each element.
    """
    # Sorting by group plus a random fraction shuffles the elements within each group.
    by_group = np.argsort(group + rng.random(len(group)), kind="stable")
    group_sizes = np.bincount(group)
    rank = np.empty(len(group), dtype=np.int64)
    rank[by_group] = np.arange(len(group)) - np.repeat(_group_starts(group_sizes), group_sizes)
    return (rank + rng.random(len(group))) / group_sizes[group]


def _distinct_products_per_order(
    rng: np.random.Generator, lines_per_order: np.ndarray, uniforms: np.ndarray
) -> np.ndarray:
    """Product index per line, by popularity, never the same product twice in one order."""
    line_in_order = np.arange(len(uniforms)) - np.repeat(
        _group_starts(lines_per_order), lines_per_order
    )
    products = _draw(_PRODUCT_POPULARITY, uniforms)
    # Redraw the lines that repeat an earlier line of their order; each round leaves under 10%
    # of the previous clashes, so this converges in a handful of vectorised rounds.
    while True:
        repeats_first = (line_in_order >= 1) & (products == np.roll(products, 1))
        repeats_second = (line_in_order == 2) & (products == np.roll(products, 2))
        clashes = np.flatnonzero(repeats_first | repeats_second)
        if clashes.size == 0:
            return products
        products[clashes] = _draw(_PRODUCT_POPULARITY, rng.random(clashes.size))


def _draw_quantities(products: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """Quantity minus one (0..4) per line, skewed to 1 and more so for expensive products."""
    tier_bounds = np.array(list(_QUANTITY_SHARES_BY_PRICE))
    tier_cumulative = np.cumsum(np.array(list(_QUANTITY_SHARES_BY_PRICE.values())), axis=1)
    tier_cumulative /= tier_cumulative[:, -1:]
    product_tier = np.searchsorted(tier_bounds, _PRODUCT_PRICES, side="right")
    line_cumulative = tier_cumulative[product_tier[products]]
    return np.minimum((uniforms[:, None] >= line_cumulative).sum(axis=1), 4)


def _strings(values: pa.Array | pa.ChunkedArray) -> pd.api.extensions.ExtensionArray:
    """An Arrow string array as a pandas `str` column without a per-element Python round trip."""
    return pd.array(values, dtype="str")


def _local_to_naive_utc(local: np.ndarray, *, timezone: str) -> np.ndarray:
    """Naive local wall-clock times in `timezone` as naive UTC `datetime64[us]`."""
    ambiguous_as_standard_time = np.zeros(len(local), dtype=bool)
    utc = (
        pd.DatetimeIndex(local)
        .tz_localize(timezone, ambiguous=ambiguous_as_standard_time, nonexistent="shift_forward")
        .tz_convert("UTC")
        .tz_localize(None)
    )
    return utc.as_unit("us").to_numpy()

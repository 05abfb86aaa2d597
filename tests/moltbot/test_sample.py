"""Tests of the sample-orders generator: determinism, shape, realism and the planted anomalies."""

from __future__ import annotations

import re
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest

from demo.sample_orders import (
    ORDER_COLUMNS,
    PRODUCTS,
    STATUS_SHARES,
    generate_orders,
    sample_anomaly_dates,
    write_sample_orders,
)
from moltbot.errors import InputError

END = date(2026, 11, 23)
SEOUL = "Asia/Seoul"


@pytest.fixture(scope="module")
def orders() -> pd.DataFrame:
    """The default 90 days of sample orders ending at END."""
    return generate_orders(end_date=END)


def local_dates(frame: pd.DataFrame, timezone: str = SEOUL) -> pd.Series:
    """The local date of each row, reading naive `ordered_at` as UTC."""
    return frame["ordered_at"].dt.tz_localize("UTC").dt.tz_convert(timezone).dt.date


def daily_revenue(frame: pd.DataFrame) -> pd.Series:
    """Revenue of completed orders per Seoul date, oldest first."""
    counted = frame["status"] == "completed"
    amount = (frame["quantity"] * frame["unit_price"]).where(counted, 0)
    return amount.groupby(local_dates(frame)).sum().sort_index()


def trailing_z_scores(daily: pd.Series) -> pd.Series:
    """Each day's z-score against the 28 days before it, once 14 days of history exist."""
    history = daily.shift(1)
    mean = history.rolling(28, min_periods=14).mean()
    std = history.rolling(28, min_periods=14).std()
    return (daily - mean) / std


def is_korean(name: str) -> bool:
    """Whether `name` contains Hangul syllables."""
    return any("\uac00" <= char <= "\ud7a3" for char in name)


def test_same_arguments_give_the_same_frame_and_csv_bytes(tmp_path: Path) -> None:
    pd.testing.assert_frame_equal(generate_orders(end_date=END), generate_orders(end_date=END))
    first = write_sample_orders(tmp_path / "a.csv", end_date=END, days=30)
    second = write_sample_orders(tmp_path / "b.csv", end_date=END, days=30)
    assert first.read_bytes() == second.read_bytes()


def test_a_different_seed_gives_different_orders(orders: pd.DataFrame) -> None:
    other = generate_orders(end_date=END, seed=8)
    assert not other.equals(orders)


def test_columns_and_dtypes(orders: pd.DataFrame) -> None:
    assert tuple(orders.columns) == ORDER_COLUMNS
    assert orders["ordered_at"].dtype == "datetime64[us]"
    assert (orders["ordered_at"].dt.microsecond == 0).all()
    for column in ("quantity", "unit_price"):
        assert orders[column].dtype == "int64"
    for column in ("order_id", "product", "channel", "region", "status"):
        assert orders[column].dtype == "str"
    assert orders.notna().all().all()


def test_every_local_date_is_present(orders: pd.DataFrame) -> None:
    expected = [END - timedelta(days=back) for back in range(89, -1, -1)]
    assert sorted(set(local_dates(orders))) == expected


def test_order_ids_carry_the_local_date(orders: pd.DataFrame) -> None:
    stamped = pd.to_datetime(orders["order_id"].str.slice(4, 12), format="%Y%m%d").dt.date
    assert (stamped == local_dates(orders)).all()
    assert orders["order_id"].str.fullmatch(r"ORD-\d{8}-\d{5}").all()


def test_lines_of_an_order_share_its_fields(orders: pd.DataFrame) -> None:
    by_order = orders.groupby("order_id")
    assert by_order.size().between(1, 3).all()
    assert set(by_order.size()) == {1, 2, 3}
    for column in ("ordered_at", "channel", "region", "status"):
        assert (by_order[column].nunique() == 1).all(), column
    assert (by_order["product"].nunique() == by_order.size()).all()


def test_products_prices_and_quantities_look_real(orders: pd.DataFrame) -> None:
    names = set(orders["product"])
    assert names == {product.name for product in PRODUCTS}
    assert 15 <= len(names) <= 25
    assert any(is_korean(name) for name in names)
    assert any(name.isascii() for name in names)
    assert (orders.groupby("product")["unit_price"].nunique() == 1).all()
    assert orders["unit_price"].between(3_900, 189_000).all()
    assert orders["quantity"].between(1, 5).all()
    quantity_shares = orders["quantity"].value_counts(normalize=True)
    assert quantity_shares.idxmax() == 1
    assert quantity_shares[1] > 0.5
    assert {"web", "app", "store", "marketplace"} <= set(orders["channel"])
    assert {"Seoul", "Gyeonggi", "Busan", "Incheon", "Daegu", "Jeju"} <= set(orders["region"])


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_written_file_round_trips_including_korean(tmp_path: Path, suffix: str) -> None:
    path = write_sample_orders(tmp_path / "nested" / f"orders{suffix}", end_date=END, days=7)
    assert path == tmp_path / "nested" / f"orders{suffix}"
    if suffix == ".csv":
        read = pd.read_csv(path, encoding="utf-8", parse_dates=["ordered_at"])
    else:
        read = pd.read_parquet(path)
    expected = generate_orders(end_date=END, days=7)
    pd.testing.assert_frame_equal(read, expected)
    assert any(is_korean(name) for name in read["product"])


def test_csv_stores_naive_utc_seconds(tmp_path: Path) -> None:
    path = write_sample_orders(tmp_path / "orders.csv", end_date=END, days=2)
    header, first_row = path.read_text(encoding="utf-8").splitlines()[:2]
    assert header == ",".join(ORDER_COLUMNS)
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", first_row.split(",")[1])


def test_unknown_suffix_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="xlsx"):
        write_sample_orders(tmp_path / "orders.xlsx", end_date=END)


@pytest.mark.parametrize(
    "arguments",
    [{"days": 0}, {"orders_per_day": 0}, {"timezone": "Mars/Olympus_Mons"}],
)
def test_bad_arguments_are_bad_input(arguments: dict) -> None:
    with pytest.raises(InputError):
        generate_orders(end_date=END, **arguments)


def test_status_mix_is_per_order_and_sensible(orders: pd.DataFrame) -> None:
    per_order = orders.drop_duplicates("order_id")["status"].value_counts(normalize=True)
    assert set(per_order.index) == set(STATUS_SHARES)
    assert 0.02 <= per_order["cancelled"] <= 0.04
    assert 0.008 <= per_order["refunded"] <= 0.025
    assert per_order["completed"] > 0.93


def test_weekends_differ_from_weekdays(orders: pd.DataFrame) -> None:
    regular = daily_revenue(orders).drop(sample_anomaly_dates(end_date=END))
    is_weekend = pd.Series([day.weekday() >= 5 for day in regular.index], index=regular.index)
    weekend, weekday = regular[is_weekend].mean(), regular[~is_weekend].mean()
    assert abs(weekend - weekday) / weekday > 0.10


def test_intraday_curve_is_quiet_at_night_and_busy_in_the_evening(orders: pd.DataFrame) -> None:
    local_hour = orders["ordered_at"].dt.tz_localize("UTC").dt.tz_convert(SEOUL).dt.hour
    orders_by_hour = local_hour[~orders["order_id"].duplicated()].value_counts()
    night = orders_by_hour.reindex(range(2, 7)).mean()
    assert orders_by_hour.reindex([12, 20, 21]).min() > 5 * night


def test_some_orders_fall_on_the_previous_utc_date(orders: pd.DataFrame) -> None:
    utc_dates = orders["ordered_at"].dt.date
    crossing = utc_dates != local_dates(orders)
    assert crossing.any()
    assert (utc_dates[crossing] == (local_dates(orders)[crossing] - timedelta(days=1))).all()


def test_anomaly_days_are_planted_late_enough_and_end_on_end_date() -> None:
    anomalies = sample_anomaly_dates(end_date=END)
    assert 2 <= len(anomalies) <= 3
    assert anomalies[-1] == END
    first_date = END - timedelta(days=89)
    assert all((day - first_date).days >= 20 for day in anomalies)
    assert sample_anomaly_dates(end_date=END, days=20) == []


@pytest.mark.parametrize("seed", [7, 1, 2024])
def test_only_the_planted_days_trip_a_trailing_3_sigma_test(seed: int) -> None:
    daily = daily_revenue(generate_orders(end_date=END, seed=seed))
    z_scores = trailing_z_scores(daily)
    flagged = sorted(z_scores.index[z_scores.abs() > 3])
    assert flagged == sample_anomaly_dates(end_date=END, seed=seed)
    assert z_scores[END] > 3, "the final day must be a spike for the demo"


def test_planted_days_stand_out_at_low_volume_too() -> None:
    small = daily_revenue(generate_orders(end_date=END, days=60, orders_per_day=40))
    z_scores = trailing_z_scores(small)
    planted = sample_anomaly_dates(end_date=END, days=60)
    assert all(abs(z_scores[day]) > 3 for day in planted)


def test_default_end_date_is_yesterday_in_the_timezone() -> None:
    before = pd.Timestamp.now(tz=SEOUL).date() - timedelta(days=1)
    newest = max(local_dates(generate_orders(days=2, orders_per_day=5)))
    after = pd.Timestamp.now(tz=SEOUL).date() - timedelta(days=1)
    assert newest in {before, after}


def test_large_volume_is_generated_in_one_go() -> None:
    large = generate_orders(end_date=END, days=30, orders_per_day=5_000)
    orders_per_date = large.drop_duplicates("order_id").groupby(local_dates(large)).size()
    regular = orders_per_date.drop(sample_anomaly_dates(end_date=END, days=30))
    assert len(orders_per_date) == 30
    assert 4_500 <= regular.mean() <= 5_500
    assert large["order_id"].str.len().eq(len("ORD-20261123-00042")).all()

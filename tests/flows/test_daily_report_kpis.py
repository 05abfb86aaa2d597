"""Tests of the daily report's computation: normalising orders and KPIs on hand-checked tables."""

from __future__ import annotations

import json
import math
from datetime import date, timedelta

import pandas as pd
import pytest

from flows.daily_report.kpis import CANONICAL_COLUMNS, compute_kpis, daily_revenue, data_warnings
from flows.shared.orders import normalize_orders
from moltbot.errors import InputError

REPORT = date(2026, 11, 24)
SEOUL = "Asia/Seoul"


def row(
    order_id: str,
    day: date = REPORT,
    *,
    product: str = "Apple",
    quantity: object = 1,
    unit_price: object = 1000,
    status: str = "completed",
    channel: str | None = "web",
    region: str | None = "Seoul",
    ordered_at: str | None = None,
) -> dict:
    """One raw order line; by default at 10:00 Seoul time (01:00 UTC) on ``day``."""
    return {
        "order_id": order_id,
        "ordered_at": ordered_at or f"{day.isoformat()}T01:00:00Z",
        "product": product,
        "channel": channel,
        "region": region,
        "quantity": quantity,
        "unit_price": unit_price,
        "status": status,
    }


def orders(*rows: dict, timezone: str = SEOUL) -> pd.DataFrame:
    raw = pd.DataFrame(list(rows), columns=list(CANONICAL_COLUMNS))
    return normalize_orders(raw, source_label="orders.csv", timezone=timezone)


def kpis(*rows: dict, report_date: date = REPORT, top_n: int = 5) -> dict:
    return compute_kpis(orders(*rows), report_date=report_date, top_n=top_n)


def days_before(n: int) -> date:
    return REPORT - timedelta(days=n)


def assert_plain_json(value: object) -> None:
    """Only plain Python types (no numpy scalars), and no NaN anywhere."""
    json.dumps(value, allow_nan=False)
    if isinstance(value, dict):
        assert all(isinstance(key, str) for key in value)
        for item in value.values():
            assert_plain_json(item)
    elif isinstance(value, list):
        for item in value:
            assert_plain_json(item)
    else:
        assert type(value) in (str, int, float, bool, type(None)), type(value)


# --------------------------------------------------------------------------- day totals


def test_revenue_orders_units_and_aov():
    result = kpis(
        row("1", product="Apple", quantity=2, unit_price=4500),  # 9,000
        row("1", product="Banana", quantity=1, unit_price=3000),  # 3,000, same order
        row("2", product="Apple", quantity=1, unit_price=4500),  # 4,500
        row("3", days_before(1), quantity=5, unit_price=100),  # another day: not counted
    )
    assert result["revenue"] == 16500.0  # 9,000 + 3,000 + 4,500
    assert result["orders"] == 2  # order 1 (two lines) and order 2
    assert result["units"] == 4  # 2 + 1 + 1
    assert isinstance(result["units"], int)
    assert result["aov"] == 8250.0  # 16,500 / 2
    assert result["no_orders"] is False


def test_fractional_units_and_rounded_aov():
    result = kpis(
        row("1", quantity="0.5", unit_price=1000),  # 500
        row("2", quantity="0.25", unit_price=1000),  # 250
        row("3", quantity=1, unit_price=100),  # 100
    )
    assert result["units"] == 1.75  # 0.5 + 0.25 + 1
    assert result["revenue"] == 850.0
    assert result["aov"] == 283.33  # 850 / 3 = 283.333...


@pytest.mark.parametrize(
    ("ordered_at", "timezone", "expected"),
    [
        ("2026-11-23T15:30:00Z", SEOUL, date(2026, 11, 24)),  # 00:30 on the 24th in Seoul (+9)
        ("2026-11-23T14:59:59Z", SEOUL, date(2026, 11, 23)),  # 23:59:59 on the 23rd in Seoul
        ("2026-11-24T00:30:00+09:00", SEOUL, date(2026, 11, 24)),  # aware, already Seoul time
        ("2026-11-24T08:59:00+09:00", SEOUL, date(2026, 11, 24)),  # = 23:59 UTC on the 23rd
        ("2026-11-23 15:00:00", SEOUL, date(2026, 11, 24)),  # naive = UTC -> 00:00 in Seoul
        ("2026/11/23 15:00", SEOUL, date(2026, 11, 24)),  # year-first with slashes, naive UTC
        ("2026-11-24T03:00:00Z", "America/New_York", date(2026, 11, 23)),  # 22:00 EST on 23rd
    ],
)
def test_local_date_follows_the_business_timezone(ordered_at, timezone, expected):
    normalized = orders(row("1", ordered_at=ordered_at), timezone=timezone)
    assert normalized["local_date"].tolist() == [expected]
    assert str(normalized["ordered_at"].dt.tz) == "UTC"


def test_order_just_after_midnight_seoul_counts_on_the_next_day():
    normalized = orders(
        row("late", ordered_at="2026-11-23T14:59:59Z", unit_price=100),  # 23rd, 23:59:59 KST
        row("early", ordered_at="2026-11-23T15:30:00Z", unit_price=200),  # 24th, 00:30 KST
    )
    assert compute_kpis(normalized, report_date=date(2026, 11, 23))["revenue"] == 100.0
    assert compute_kpis(normalized, report_date=date(2026, 11, 24))["revenue"] == 200.0


def test_cancelled_and_refunded_rows_are_excluded_and_counted_separately():
    result = kpis(
        row("1", unit_price=10000),  # counted
        row("2", unit_price=5000, status="cancelled"),
        row("3", unit_price=2000, status="refunded"),
        row("3", unit_price=1000, status="refunded"),  # same order, second line
        row("4", unit_price=500, status=" Cancelled "),  # case and spaces are normalised
        row("5", days_before(1), unit_price=700, status="cancelled"),  # another day
    )
    assert result["revenue"] == 10000.0
    assert result["orders"] == 1
    assert result["units"] == 1
    # orders 2, 3 and 4; 5,000 + 2,000 + 1,000 + 500
    assert result["cancelled"] == {"count": 3, "amount": 8500.0}


@pytest.mark.parametrize(
    ("today", "prev_day", "prev_week", "expected_day", "expected_week"),
    [
        (10000, 8000, 10000, 25.0, 0.0),  # (10,000-8,000)/8,000 = +25%; same as a week ago
        (10000, 20000, 40000, -50.0, -75.0),  # -10,000/20,000; -30,000/40,000
        (10000, 3000, 30000, 233.33, -66.67),  # 7,000/3,000 = 233.333..%; -20,000/30,000
        (10000, 0, 0, None, None),  # nothing to compare with
        (0, 5000, 0, -100.0, None),  # a day without sales after a day with sales
    ],
)
def test_change_vs_previous_day_and_week(today, prev_day, prev_week, expected_day, expected_week):
    rows = [row("anchor", days_before(30), unit_price=1)]  # data exists before the week
    for order_id, day, amount in (
        ("today", REPORT, today),
        ("prev_day", days_before(1), prev_day),
        ("prev_week", days_before(7), prev_week),
    ):
        if amount:
            rows.append(row(order_id, day, unit_price=amount))
    result = kpis(*rows)
    assert result["change_vs_prev_day_pct"] == expected_day
    assert result["change_vs_prev_week_pct"] == expected_week


def test_change_base_of_only_cancelled_orders_is_zero():
    result = kpis(
        row("1", unit_price=1000),
        row("2", days_before(1), unit_price=5000, status="refunded"),  # base revenue 0
    )
    assert result["change_vs_prev_day_pct"] is None


def test_day_without_orders():
    result = kpis(row("1", days_before(2), unit_price=1000), row("2", status="cancelled"))
    assert result["no_orders"] is True
    assert result["revenue"] == 0.0
    assert result["orders"] == 0
    assert result["units"] == 0
    assert result["aov"] is None
    assert result["top_products"] == []
    assert result["by_channel"] == {}
    assert result["by_region"] == {}
    assert result["cancelled"] == {"count": 1, "amount": 1000.0}
    assert_plain_json(result)


def test_headers_without_rows_is_an_empty_table():
    raw = pd.DataFrame({name: pd.Series([], dtype="str") for name in CANONICAL_COLUMNS})
    normalized = normalize_orders(raw, source_label="orders.csv", timezone=SEOUL)
    assert len(normalized) == 0
    assert list(normalized.columns) == [*CANONICAL_COLUMNS, "local_date", "amount"]
    result = compute_kpis(normalized, report_date=REPORT)
    assert result["no_orders"] is True
    assert result["anomaly_detail"] == {
        "history_days": 0,
        "mean": None,
        "std": None,
        "z_score": None,
    }
    assert_plain_json(result)
    assert daily_revenue(normalized, end_date=REPORT, days=3).tolist() == [0.0, 0.0, 0.0]


# --------------------------------------------------------------------------- breakdowns


def test_top_products_by_revenue_then_name():
    result = kpis(
        row("1", product="Cherry", quantity=5, unit_price=1000),  # 5,000
        row("2", product="Apple", quantity=2, unit_price=2500),  # 5,000: ties Cherry
        row("3", product="Banana", quantity=3, unit_price=2000),  # 6,000
        row("4", product="Banana", quantity=0, unit_price=2000),  # 0, adds no units
        row("5", product="Date", quantity=1, unit_price=1000),  # 1,000
        row("6", product="Elder", quantity=1, unit_price=500),  # 500
        row("7", product="Fig", quantity=1, unit_price=200),  # 200, sixth: left out of top 5
        row("8", product="Grape", quantity=9, unit_price=9999, status="cancelled"),  # excluded
        top_n=5,
    )
    assert result["top_products"] == [
        {"product": "Banana", "revenue": 6000.0, "units": 3},
        {"product": "Apple", "revenue": 5000.0, "units": 2},  # tie: A before C
        {"product": "Cherry", "revenue": 5000.0, "units": 5},
        {"product": "Date", "revenue": 1000.0, "units": 1},
        {"product": "Elder", "revenue": 500.0, "units": 1},
    ]


def test_top_products_tie_is_judged_on_rounded_revenue():
    result = kpis(
        *(row(str(i), product="Xylo", unit_price="0.1") for i in range(3)),  # 0.30000000000000004
        row("9", product="Wax", unit_price="0.3"),  # 0.3
        top_n=2,
    )
    assert [p["product"] for p in result["top_products"]] == ["Wax", "Xylo"]
    assert [p["revenue"] for p in result["top_products"]] == [0.3, 0.3]


def test_revenue_by_channel_and_region_ordered_by_revenue():
    result = kpis(
        row("1", channel="web", region="Seoul", unit_price=3000),
        row("2", channel="app", region="Busan", unit_price=5000),
        row("3", channel="web", region="Busan", unit_price=4000),
        row("4", channel=None, region=None, unit_price=1000),  # missing -> "unknown"
        row("5", channel="store", region="Jeju", unit_price=9000, status="refunded"),
    )
    # web 3,000 + 4,000 = 7,000; app 5,000; unknown 1,000; store only refunded
    assert list(result["by_channel"].items()) == [
        ("web", 7000.0),
        ("app", 5000.0),
        ("unknown", 1000.0),
    ]
    # Busan 5,000 + 4,000 = 9,000; Seoul 3,000; unknown 1,000
    assert list(result["by_region"].items()) == [
        ("Busan", 9000.0),
        ("Seoul", 3000.0),
        ("unknown", 1000.0),
    ]


# --------------------------------------------------------------------------- anomaly


def history(amounts: list[int]) -> list[dict]:
    """One order per day for the days before REPORT: amounts[0] is the oldest day."""
    n = len(amounts)
    return [
        row(f"h{i}", days_before(n - i), unit_price=amount)
        for i, amount in enumerate(amounts)
        if amount
    ]


# 14 days alternating 1,000 / 1,200: mean 1,100; deviations all +-100, so the sample std is
# sqrt(14 * 100^2 / 13) = sqrt(10,769.23) = 103.77.
ALTERNATING_14 = [1000, 1200] * 7


@pytest.mark.parametrize(
    ("today", "expected_anomaly", "expected_z"),
    [
        (5000, True, 37.58),  # (5,000 - 1,100) / 103.7749 = 37.58
        (700, True, -3.85),  # (700 - 1,100) / 103.7749 = -3.85
        (1400, False, 2.89),  # 300 / 103.7749 = 2.89: within 3 std
        (800, False, -2.89),
    ],
)
def test_anomaly_with_two_weeks_of_history(today, expected_anomaly, expected_z):
    result = kpis(*history(ALTERNATING_14), row("today", unit_price=today))
    assert result["anomaly"] is expected_anomaly
    assert result["anomaly_detail"] == {
        "history_days": 14,
        "mean": 1100.0,
        "std": 103.77,
        "z_score": expected_z,
    }


def test_no_anomaly_with_only_13_days_of_history():
    result = kpis(*history(ALTERNATING_14[1:]), row("today", unit_price=50000))
    assert result["anomaly_detail"]["history_days"] == 13
    assert result["anomaly"] is False


@pytest.mark.parametrize(
    ("today", "expected_anomaly"),
    [
        (1000, False),  # equals the flat history
        (1001, True),  # std 0: any departure is an anomaly
        (0, True),  # and so is a day without orders
    ],
)
def test_anomaly_with_flat_history(today, expected_anomaly):
    rows = [*history([1000] * 20)]
    if today:
        rows.append(row("today", unit_price=today))
    result = kpis(*rows)
    assert result["anomaly"] is expected_anomaly
    assert result["anomaly_detail"] == {
        "history_days": 20,
        "mean": 1000.0,
        "std": 0.0,
        "z_score": None,
    }


def test_history_counts_empty_days_as_zero_but_not_days_before_the_data():
    # Data starts 20 days before the report; only two of those days had orders.
    amounts = [1000] + [0] * 18 + [1000]
    result = kpis(*history(amounts), row("today", unit_price=100))
    # mean 2,000 / 20 = 100; std sqrt((2 * 900^2 + 18 * 100^2) / 19) = sqrt(94,736.84) = 307.79
    assert result["anomaly_detail"] == {
        "history_days": 20,
        "mean": 100.0,
        "std": 307.79,
        "z_score": 0.0,
    }
    assert result["anomaly"] is False


def test_history_is_at_most_28_days():
    # 40 days of data: only the 28 days before the report count (12 x 5,000 then 28 x 1,000).
    result = kpis(*history([5000] * 12 + [1000] * 28), row("today", unit_price=1000))
    assert result["anomaly_detail"]["history_days"] == 28
    assert result["anomaly_detail"]["mean"] == 1000.0


def test_a_cancelled_first_day_still_starts_the_history():
    rows = [row("c", days_before(14), unit_price=1000, status="cancelled")]
    rows += history([1000] * 13)
    result = kpis(*rows, row("today", unit_price=1000))
    # 14 days: the cancelled-only day (revenue 0) and 13 days of 1,000
    assert result["anomaly_detail"]["history_days"] == 14
    assert result["anomaly_detail"]["mean"] == 928.57  # 13,000 / 14


# --------------------------------------------------------------------------- normalisation


def raw_frame(**overrides: list) -> pd.DataFrame:
    """Three valid rows as strings (as read from CSV); keyword arguments replace a column."""
    data = {
        "order_id": ["1", "2", "3"],
        "ordered_at": ["2026-11-24T01:00:00Z"] * 3,
        "product": ["Apple", "Banana", "Cherry"],
        "channel": ["web", "app", "web"],
        "region": ["Seoul", "Busan", "Seoul"],
        "quantity": ["1", "2", "3"],
        "unit_price": ["1000", "2000", "3000"],
        "status": ["completed", "completed", "completed"],
    }
    data.update(overrides)
    return pd.DataFrame(data)


def normalize(raw: pd.DataFrame, **kwargs) -> pd.DataFrame:
    return normalize_orders(raw, source_label="orders.csv", timezone=SEOUL, **kwargs)


def test_missing_column_names_the_column_and_the_source():
    raw = raw_frame().drop(columns=["unit_price"])
    with pytest.raises(InputError) as caught:
        normalize(raw)
    assert str(caught.value) == (
        "orders.csv: missing column 'unit_price' "
        "(found: order_id, ordered_at, product, channel, region, quantity, status)"
    )


def test_several_missing_columns_are_named_together():
    raw = raw_frame().drop(columns=["channel", "region"])
    with pytest.raises(InputError, match=r"^orders\.csv: missing columns 'channel', 'region' "):
        normalize(raw)


def test_column_mapping_renames_user_columns():
    raw = raw_frame().rename(columns={"order_id": "Order No", "unit_price": "Price (KRW)"})
    normalized = normalize(raw, columns={"Order No": "order_id", "Price (KRW)": "unit_price"})
    assert normalized["order_id"].tolist() == ["1", "2", "3"]
    assert normalized["amount"].tolist() == [1000.0, 4000.0, 9000.0]  # 1x1,000 2x2,000 3x3,000


def test_mapping_naming_an_absent_column_is_an_error():
    with pytest.raises(InputError) as caught:
        normalize(raw_frame(), columns={"Price": "unit_price"})
    message = str(caught.value)
    assert message.startswith("orders.csv: column mapping names column 'Price' not in the source")


def test_mapping_to_a_column_that_is_not_canonical_is_an_error():
    with pytest.raises(InputError, match="'amout'"):
        normalize(raw_frame(), columns={"quantity": "amout"})


@pytest.mark.parametrize(
    ("column", "values", "expected"),
    [
        (
            "quantity",
            ["2", "two", "lots"],
            "orders.csv: column 'quantity' has 2 missing or non-numeric values (data rows 2, 3)",
        ),
        (
            "quantity",
            ["1", None, "3"],
            "orders.csv: column 'quantity' has 1 missing or non-numeric value (data row 2)",
        ),
        (
            "unit_price",
            ["1000", "2000", "-3,000"],
            "orders.csv: column 'unit_price' has 1 negative value (data row 3)",
        ),
        (
            "unit_price",
            ["4,5", "1000", "1000"],  # a decimal comma is not a thousands separator
            "orders.csv: column 'unit_price' has 1 missing or non-numeric value (data row 1)",
        ),
        (
            "ordered_at",
            ["2026-11-24T01:00:00Z", "yesterday", "2026-13-45"],
            "orders.csv: column 'ordered_at' has 2 missing or unparseable date values "
            "(data rows 2, 3)",
        ),
        (
            "order_id",
            ["1", " ", "3"],
            "orders.csv: column 'order_id' has 1 missing value (data row 2)",
        ),
        (
            "product",
            [None, "Banana", ""],
            "orders.csv: column 'product' has 2 missing values (data rows 1, 3)",
        ),
    ],
)
def test_bad_values_name_column_source_and_rows_but_not_the_values(column, values, expected):
    with pytest.raises(InputError) as caught:
        normalize(raw_frame(**{column: values}))
    assert str(caught.value) == expected


def test_many_bad_rows_are_summarised():
    raw = pd.concat([raw_frame()] * 3, ignore_index=True)  # 9 rows
    raw["quantity"] = ["x"] * 8 + ["1"]
    with pytest.raises(InputError, match=r"has 8 .* \(data rows 1, 2, 3, 4, 5 and 3 more\)$"):
        normalize(raw)


def test_empty_source_is_an_error():
    with pytest.raises(InputError, match=r"^orders\.csv: the source is empty"):
        normalize(pd.DataFrame())


def test_thousands_separators_and_spaces_are_accepted():
    normalized = normalize(
        raw_frame(quantity=["1,000", " 3 ", "2"], unit_price=["4,500", "1,234,567.5", "0.5"])
    )
    assert normalized["quantity"].tolist() == [1000.0, 3.0, 2.0]
    assert normalized["unit_price"].tolist() == [4500.0, 1234567.5, 0.5]
    # 1,000 x 4,500; 3 x 1,234,567.5; 2 x 0.5
    assert normalized["amount"].tolist() == [4500000.0, 3703702.5, 1.0]


# Plain columns are parsed by Arrow, others by pandas; one value only pandas reads (a year-first
# date, a mix of zones) sends the whole column its way. Both ways give the same values.
@pytest.mark.parametrize(
    "ordered_at",
    [
        ["2026-11-24 01:00:00", "2026-11-24T09:30:15.25", "2026-11-23"],
        ["2026-11-24 01:00:00", "2026-11-24T09:30:15.25", "2026/11/23"],
        ["2026-11-24T01:00:00Z", "2026-11-24T18:30:15.25+09:00", "2026-11-22T19:00:00-05:00"],
        ["2026-11-24T01:00:00Z", "2026-11-24T18:30:15.25+09:00", "2026/11/23"],
    ],
    ids=["arrow", "pandas", "arrow-with-zones", "pandas-with-zones"],
)
def test_timestamps_are_the_same_instants_whichever_parser_reads_them(ordered_at):
    normalized = normalize(raw_frame(ordered_at=ordered_at))

    assert str(normalized["ordered_at"].dtype) == "datetime64[us, UTC]"
    assert normalized["ordered_at"].tolist() == [
        pd.Timestamp("2026-11-24 01:00:00", tz="UTC"),
        pd.Timestamp("2026-11-24 09:30:15.25", tz="UTC"),
        pd.Timestamp("2026-11-23 00:00:00", tz="UTC"),
    ]
    assert normalized["local_date"].tolist() == [REPORT, REPORT, date(2026, 11, 23)]


@pytest.mark.parametrize("last", ["-0", "-0,000"], ids=["plain", "thousands"])
def test_numbers_read_by_arrow_are_the_numbers_pandas_reads(last):
    quantity = normalize(raw_frame(quantity=["1e3", " 2.5 ", last]))["quantity"]

    assert quantity.tolist() == [1000.0, 2.5, 0.0]
    # Arrow reads "-0" as -0.0, pandas as 0.0: a zero is a zero, whatever its sign.
    assert math.copysign(1.0, quantity.iloc[2]) == 1.0


def test_text_columns_are_cleaned():
    normalized = normalize(
        raw_frame(
            status=["", " Refunded ", None],
            channel=[" web ", None, ""],
            region=[None, "Busan", " "],
            order_id=[1001.0, 1002.0, 1003.0],  # ids read as floats print without ".0"
        )
    )
    assert normalized["status"].tolist() == ["completed", "refunded", "completed"]
    assert normalized["channel"].tolist() == ["web", "unknown", "unknown"]
    assert normalized["region"].tolist() == ["unknown", "Busan", "unknown"]
    assert normalized["order_id"].tolist() == ["1001", "1002", "1003"]


def test_headers_are_stripped_and_extra_columns_dropped():
    raw = raw_frame().rename(columns={"product": " product "})
    raw["customer_email"] = ["a@example.com", "b@example.com", "c@example.com"]
    normalized = normalize(raw)
    assert list(normalized.columns) == [*CANONICAL_COLUMNS, "local_date", "amount"]


def test_input_frame_is_not_modified():
    raw = raw_frame(quantity=["1,000", "2", "3"])
    before = raw.copy()
    normalize(raw)
    pd.testing.assert_frame_equal(raw, before)


def test_unknown_timezone_is_an_input_error():
    with pytest.raises(InputError, match="Mars/Olympus"):
        normalize_orders(raw_frame(), source_label="orders.csv", timezone="Mars/Olympus")


def test_negative_top_n_is_an_input_error():
    with pytest.raises(InputError, match="top_n"):
        compute_kpis(normalize(raw_frame()), report_date=REPORT, top_n=-1)


# --------------------------------------------------------------------------- serialisation, series


def test_result_is_plain_json():
    result = kpis(
        *history(ALTERNATING_14),
        row("1", quantity="1,000", unit_price="1.5"),
        row("2", quantity=2, unit_price=333.333, channel=None),
        row("3", unit_price=100, status="refunded"),
    )
    assert_plain_json(result)
    assert set(result) == {
        "revenue",
        "orders",
        "units",
        "aov",
        "top_products",
        "by_channel",
        "by_region",
        "change_vs_prev_day_pct",
        "change_vs_prev_week_pct",
        "cancelled",
        "anomaly",
        "anomaly_detail",
        "no_orders",
    }
    assert result["revenue"] == 2166.67  # 1,000 x 1.5 + 2 x 333.333 = 2,166.666


def test_daily_revenue_fills_missing_days_with_zero():
    series = daily_revenue(
        orders(
            row("1", days_before(3), unit_price=999),  # before the window
            row("2", days_before(2), unit_price=1000),
            row("3", days_before(2), unit_price=500, status="cancelled"),  # not revenue
            row("4", REPORT, unit_price=3000),
            row("5", REPORT, quantity=2, unit_price=250),
        ),
        end_date=REPORT,
        days=3,
    )
    assert series.index.tolist() == [days_before(2), days_before(1), REPORT]
    assert series.tolist() == [1000.0, 0.0, 3500.0]  # 3,000 + 2 x 250 on the report day


def test_daily_revenue_defaults_to_28_days():
    series = daily_revenue(orders(row("1")), end_date=REPORT)
    assert len(series) == 28
    assert series.index[0] == days_before(27)
    assert series.sum() == 1000.0


# --------------------------------------------------------------------------- data warnings


def warnings_for(*rows: dict, report_date: date = REPORT) -> list[str]:
    return data_warnings(orders(*rows), report_date=report_date, source_label="orders.csv")


def test_a_day_with_orders_has_no_warning():
    assert warnings_for(row("A1"), row("A2", days_before(1))) == []


def test_a_day_with_only_cancelled_orders_has_data_so_no_warning():
    assert warnings_for(row("A1", status="cancelled")) == []


def test_a_day_without_rows_warns_with_the_latest_date_before_it():
    assert warnings_for(row("A1", days_before(3)), row("A2", REPORT + timedelta(days=1))) == [
        "no orders on 2026-11-24 in orders.csv (latest order: 2026-11-21)"
    ]


def test_a_day_before_all_the_data_warns_without_a_latest_date():
    assert warnings_for(row("A1", REPORT + timedelta(days=2))) == [
        "no orders on 2026-11-24 in orders.csv"
    ]

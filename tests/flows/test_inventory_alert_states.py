"""Tests of inventory-alert's computation on hand-checked tables: cleaning, states, transitions."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from flows.inventory_alert.states import (
    alert_digest,
    average_daily_units,
    by_urgency,
    compute_states,
    fill_daily_demand,
    normalize_inventory,
    plan_alerts,
    state_counts,
)
from flows.shared.orders import normalize_orders
from moltbot.errors import InputError
from moltbot.state.item_state import empty_states

TODAY = date(2026, 11, 24)
NOW = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)  # 10:00 in Seoul
DAY = timedelta(hours=24)
HEADER = "sku,name,on_hand,reorder_point"


def table(text: str) -> pd.DataFrame:
    """A CSV text read the way `read_table` reads files: every value as text."""
    from io import StringIO

    return pd.read_csv(StringIO(text), dtype=str, keep_default_na=False)


def inventory(text: str, **kwargs):
    return normalize_inventory(table(text), source_label="stock.csv", **kwargs)


def states_of(rows: list[tuple], today: date = TODAY) -> pd.DataFrame:
    """Items (sku, on_hand, reorder_point, daily_demand, lead_time_days) -> computed states."""
    items = pd.DataFrame(
        rows, columns=["sku", "on_hand", "reorder_point", "daily_demand", "lead_time_days"]
    )
    items["name"] = items["sku"]
    items["location"] = None
    items["safety_stock"] = np.nan
    return compute_states(items.astype({"sku": "str", "name": "str"}), today=today)


def stored(rows: list[tuple]) -> pd.DataFrame:
    """Stored states from (sku, state, since, episode_since, last_alerted_at) tuples."""
    frame = pd.DataFrame(
        rows, columns=["item_key", "state", "since", "episode_since", "last_alerted_at"]
    )
    for name in ("since", "episode_since", "last_alerted_at"):
        frame[name] = pd.to_datetime(frame[name], utc=True).astype("datetime64[us, UTC]")
    return frame.astype({"item_key": "str", "state": "str"})


def apply(previous: pd.DataFrame, writes: pd.DataFrame) -> pd.DataFrame:
    """What the store holds after saving `writes` over `previous`."""
    kept = previous[~previous["item_key"].isin(writes["item_key"])]
    return pd.concat([kept, writes.drop(columns="severity")], ignore_index=True)


# --------------------------------------------------------------------------- cleaning


def test_clean_table_keeps_korean_names_and_parses_numbers() -> None:
    result = inventory(
        "sku,name,on_hand,reorder_point,lead_time_days,location\n"
        'KR-1, 무선 이어폰 ,"1,200",10,7,서울 물류센터\n'
        "1002,,3.5,4,,\n"
    )

    items = result.items
    assert result.bad_rows.empty
    assert items["sku"].tolist() == ["KR-1", "1002"]
    assert items["name"].tolist() == ["무선 이어폰", "1002"]  # a blank name falls back to the SKU
    assert items["on_hand"].tolist() == [1200.0, 3.5]
    assert items["lead_time_days"].iloc[0] == 7.0 and np.isnan(items["lead_time_days"].iloc[1])
    assert items["location"].iloc[0] == "서울 물류센터" and pd.isna(items["location"].iloc[1])
    assert np.isnan(items["daily_demand"]).all()  # absent optional column


def test_column_mapping_renames_source_columns() -> None:
    result = inventory("품번,품명,재고,재주문점\nA,사과,1,2\n", columns={
        "품번": "sku", "품명": "name", "재고": "on_hand", "재주문점": "reorder_point",
    })  # fmt: skip

    assert result.items[["sku", "name", "on_hand"]].values.tolist() == [["A", "사과", 1.0]]


def test_numeric_skus_from_parquet_do_not_gain_a_decimal() -> None:
    raw = pd.DataFrame(
        {"sku": [1001.0, 1002.0], "name": ["a", "b"], "on_hand": [1, 2], "reorder_point": [1, 1]}
    )

    assert normalize_inventory(raw, source_label="x").items["sku"].tolist() == ["1001", "1002"]


@pytest.mark.parametrize(
    ("rows", "expected_bad", "expected_skus"),
    [
        ("A,a,1,2\n,b,1,2\n", [(3, None, "missing sku")], ["A"]),
        (
            "A,a,1,2\nB,b,1,2\nA,c,5,2\n",
            [(2, "A", "duplicate sku"), (4, "A", "duplicate sku")],
            ["B"],
        ),
        ("A,a,-1,2\nB,b,1,2\n", [(2, "A", "negative on_hand")], ["B"]),
        ("A,a,lots,2\nB,b,1,2\n", [(2, "A", "non-numeric on_hand")], ["B"]),
        ("A,a,,2\nB,b,1,2\n", [(2, "A", "missing on_hand")], ["B"]),
        ("A,a,1,x\nB,b,1,2\n", [(2, "A", "non-numeric reorder_point")], ["B"]),
        ("A,a,-1,x\nB,b,1,2\n", [(2, "A", "negative on_hand; non-numeric reorder_point")], ["B"]),
        ("A,a,1,2\nB,b,1,inf\n", [(3, "B", "non-numeric reorder_point")], ["A"]),
    ],
    ids=["missing-sku", "duplicate", "negative", "non-numeric", "blank", "reorder", "two", "inf"],
)
def test_bad_rows_are_reported_and_their_skus_left_out(rows, expected_bad, expected_skus) -> None:
    result = inventory(f"{HEADER}\n{rows}")

    assert list(result.bad_rows.itertuples(index=False, name=None)) == expected_bad
    assert result.items["sku"].tolist() == expected_skus


def test_optional_quantities_may_be_blank_but_not_negative() -> None:
    result = inventory(f"{HEADER},lead_time_days,daily_demand\nA,a,1,2,,\nB,b,1,2,-3,1\n")

    assert result.items["sku"].tolist() == ["A"]
    assert result.bad_rows["problem"].tolist() == ["negative lead_time_days"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "stock.csv: the source is empty"),
        (f"{HEADER}\n", "stock.csv: the source is empty"),
        ("sku,name,on_hand\nA,a,1\n", "missing column 'reorder_point' (found: sku, name, on_hand)"),
        (f"{HEADER}\nA,a,many,1\nB,b,few,2\n", "stock.csv: column 'on_hand' holds no numbers"),
        (f"{HEADER}\nA,a,,1\nB,b,,2\n", "stock.csv: column 'on_hand' is empty"),
        (f"{HEADER},daily_demand\nA,a,1,1,fast\n", "column 'daily_demand' holds no numbers"),
    ],
    ids=["no-columns", "no-rows", "missing-column", "text-column", "blank-column", "optional"],
)  # fmt: skip
def test_unusable_tables_raise_input_error(text: str, message: str) -> None:
    raw = table(text) if text else pd.DataFrame()

    with pytest.raises(InputError) as raised:
        normalize_inventory(raw, source_label="stock.csv")

    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"Qty": "on_hand"}, "column mapping names column 'Qty' not in the source"),
        ({"code": "sku"}, "stock.csv: column 'sku' appears more than once"),
        ({"code": "barcode"}, "column mapping targets column 'barcode' not among sku, name"),
    ],
)
def test_bad_column_mappings_are_input_errors(mapping: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        inventory(f"code,{HEADER}\nX,A,a,1,1\n", columns=mapping)


# --------------------------------------------------------------------------- demand


def order(day: date, product: str, quantity: int, status: str = "completed") -> dict:
    return {
        "order_id": f"{product}-{day}-{quantity}",
        "ordered_at": f"{day.isoformat()}T03:00:00Z",
        "product": product,
        "channel": "web",
        "region": "Seoul",
        "quantity": quantity,
        "unit_price": 1000,
        "status": status,
    }


def sales(*rows: dict) -> pd.DataFrame:
    return normalize_orders(pd.DataFrame(list(rows)), source_label="sales", timezone="Asia/Seoul")


def test_demand_is_the_trailing_28_day_average_of_counted_units() -> None:
    end = date(2026, 11, 23)
    orders = sales(
        order(end - timedelta(days=40), "텀블러", 99),  # before the window: only marks history
        order(end - timedelta(days=27), "텀블러", 14),  # first day of the window
        order(end, "텀블러", 42),
        order(end, "텀블러", 50, status="cancelled"),
        order(end + timedelta(days=1), "텀블러", 70),  # today, not a full day yet
        order(end - timedelta(days=3), "Cable", 7),
    )

    demand = average_daily_units(orders, end_date=end)

    assert demand.to_dict() == {"Cable": 0.25, "텀블러": 2.0}  # 7/28 and (14+42)/28


def test_demand_of_a_young_shop_is_averaged_over_the_days_it_has_sold() -> None:
    end = date(2026, 11, 23)
    orders = sales(order(end - timedelta(days=3), "A", 8), order(end, "A", 4))

    assert average_daily_units(orders, end_date=end).to_dict() == {"A": 3.0}  # 12 over 4 days


def test_demand_fills_only_missing_values_matching_sku_then_name() -> None:
    items = pd.DataFrame(
        {
            "sku": ["S1", "S2", "S3", "S4"],
            "name": ["무선 이어폰", "Cable", "Mouse", "Given"],
            "daily_demand": [np.nan, np.nan, np.nan, 9.0],
        }
    ).astype({"sku": "str", "name": "str"})
    demand = pd.Series({"S1": 1.5, "무선 이어폰": 99.0, "Cable": 2.0, "Given": 1.0})

    filled, matched = fill_daily_demand(items, demand)

    assert filled["daily_demand"].tolist() == [1.5, 2.0, 0.0, 9.0]
    assert matched == 3


# --------------------------------------------------------------------------- states


@pytest.mark.parametrize(
    ("on_hand", "reorder_point", "demand", "lead_time", "expected"),
    [
        (0, 10, 2.0, 5, ("out", 0.0, date(2026, 11, 24), False)),
        (-0.0, 0, np.nan, np.nan, ("out", np.nan, None, False)),
        (10, 10, 4.0, 5, ("low", 2.5, date(2026, 11, 26), True)),
        (11, 10, 1.0, 5, ("ok", 11.0, date(2026, 12, 5), False)),
        (11, 10, 1.0, 12, ("ok", 11.0, date(2026, 12, 5), True)),
        (3, 10, 0.0, 5, ("low", np.nan, None, False)),
        (3, 10, 1e-9, 5, ("low", 3e9, None, False)),
    ],
    ids=["out", "zero-no-demand", "low-at-risk", "ok", "ok-at-risk", "no-demand", "huge-cover"],
)
def test_state_cover_stockout_and_risk(on_hand, reorder_point, demand, lead_time, expected):
    row = states_of([("A", on_hand, reorder_point, demand, lead_time)]).iloc[0]

    state, cover, stockout, at_risk = expected
    assert row["state"] == state
    assert row["days_of_cover"] == pytest.approx(cover, nan_ok=True)
    assert (None if pd.isna(row["stockout_date"]) else row["stockout_date"].date()) == stockout
    assert bool(row["at_risk"]) is at_risk


def test_counts_cover_every_state_and_risk() -> None:
    states = states_of(
        [("A", 0, 5, 1, 3), ("B", 4, 5, 1, 3), ("C", 2, 5, 1, 3), ("D", 9, 5, 1, 30)]
    )

    assert state_counts(states) == {"ok": 1, "low": 2, "out": 1, "at_risk": 2}


def test_urgency_puts_out_first_then_least_cover_then_fastest_sellers() -> None:
    states = states_of(
        [
            ("low-slow", 5, 10, 1.0, 3),  # 5 days
            ("low-fast", 5, 10, 5.0, 3),  # 1 day
            ("out-slow", 0, 10, 1.0, 3),
            ("out-fast", 0, 10, 3.0, 3),
            ("low-unknown", 5, 10, np.nan, 3),
        ]
    )

    assert by_urgency(states)["sku"].tolist() == [
        "out-fast",
        "out-slow",
        "low-fast",
        "low-slow",
        "low-unknown",
    ]


# --------------------------------------------------------------------------- transitions


@pytest.mark.parametrize(
    ("before", "after", "severity"),
    [
        (None, "ok", None),
        (None, "low", "low"),
        (None, "out", "out"),
        ("ok", "low", "low"),
        ("ok", "out", "out"),
        ("low", "out", "out"),
        ("low", "ok", "recovered"),
        ("out", "ok", "recovered"),
        ("out", "low", None),
        ("low", "low", None),
        ("ok", "ok", None),
    ],
)
def test_which_state_changes_alert(before: str | None, after: str, severity: str | None) -> None:
    on_hand = {"ok": 50, "low": 5, "out": 0}[after]
    previous = stored([("A", before, NOW - DAY, None, None)]) if before else empty_states()

    plan = plan_alerts(states_of([("A", on_hand, 10, 1, 3)]), previous, now=NOW, cooldown=DAY)

    assert {name: items["sku"].tolist() for name, items in plan.alerts.items()} == (
        {severity: ["A"]} if severity else {}
    )
    changed = before is None or before != after
    assert plan.writes["item_key"].tolist() == (["A"] if changed else [])
    if changed:
        [written] = plan.writes.to_dict("records")
        assert written["state"] == after
        assert written["since"] == NOW
        assert written["severity"] == severity


def test_three_runs_alert_low_then_out_then_recovery_with_its_duration() -> None:
    first, second, third = NOW, NOW + timedelta(hours=6), NOW + timedelta(hours=30)
    previous = empty_states()
    seen = []
    for moment, on_hand in ((first, 5), (second, 0), (third, 40)):
        plan = plan_alerts(
            states_of([("A", on_hand, 10, 1, 3), ("B", 50, 10, 1, 3)]),
            previous,
            now=moment,
            cooldown=DAY,
        )
        seen.append({name: items.iloc[0].to_dict() for name, items in plan.alerts.items()})
        previous = apply(previous, plan.writes)

    assert [list(alerts) for alerts in seen] == [["low"], ["out"], ["recovered"]]
    assert (seen[1]["out"]["from"], seen[1]["out"]["to"]) == ("low", "out")
    recovery = seen[2]["recovered"]
    assert (recovery["from"], recovery["to"]) == ("out", "ok")
    # The episode began at the first run (ok -> low), 30 hours before the recovery.
    assert recovery["lasted_hours"] == 30
    final = previous.set_index("item_key")
    assert final.loc["A", "state"] == "ok" and pd.isna(final.loc["A", "episode_since"])
    assert final.loc["B", "state"] == "ok"  # stored from the first run on, silently


def test_partial_restock_is_silent_and_keeps_the_episode() -> None:
    went_out = NOW - timedelta(hours=10)
    previous = stored([("A", "out", went_out, went_out - DAY, went_out)])

    plan = plan_alerts(states_of([("A", 5, 10, 1, 3)]), previous, now=NOW, cooldown=DAY)

    assert plan.alerts == {}
    [written] = plan.writes.to_dict("records")
    assert (written["state"], written["since"], written["severity"]) == ("low", NOW, None)
    assert written["episode_since"] == went_out - DAY
    assert written["last_alerted_at"] == went_out


@pytest.mark.parametrize(
    ("hours_out", "hours_since_last_alert", "period"),
    [
        (23, 23, None),  # within the first cooldown
        (25, 25, 1),  # first reminder
        (30, 5, None),  # reminded at 25 h: the next is due at 48 h
        (49, 24, 2),
        (100, 100, 4),  # missed runs: one reminder, not three
    ],
)
def test_items_still_out_are_reminded_once_per_cooldown(
    hours_out: int, hours_since_last_alert: int, period: int | None
) -> None:
    since = NOW - timedelta(hours=hours_out)
    last = NOW - timedelta(hours=hours_since_last_alert)
    previous = stored([("A", "out", since, since, last), ("B", "out", NOW, NOW, NOW)])

    plan = plan_alerts(
        states_of([("A", 0, 10, 1, 3), ("B", 0, 10, 1, 3)]), previous, now=NOW, cooldown=DAY
    )

    if period is None:
        assert plan.alerts == {} and plan.writes.empty
        return
    [reminder] = plan.alerts["reminder"].to_dict("records")
    assert (reminder["sku"], reminder["period"], reminder["lasted_hours"]) == (
        "A",
        period,
        hours_out,
    )
    [written] = plan.writes.to_dict("records")
    assert (written["state"], written["since"], written["last_alerted_at"]) == ("out", since, NOW)


def test_items_missing_from_this_run_keep_their_stored_state() -> None:
    previous = stored([("GONE", "out", NOW - 3 * DAY, NOW - 3 * DAY, NOW - 3 * DAY)])

    plan = plan_alerts(states_of([("A", 50, 10, 1, 3)]), previous, now=NOW, cooldown=DAY)

    assert "GONE" not in plan.writes["item_key"].tolist()
    assert plan.alerts == {}


def test_digest_depends_on_the_logical_content_only() -> None:
    previous = stored([("A", "ok", NOW - DAY, None, None), ("B", "ok", NOW - DAY, None, None)])
    states = states_of([("A", 5, 10, 1, 3), ("B", 4, 10, 1, 3)])
    low = plan_alerts(states, previous, now=NOW, cooldown=DAY).alerts["low"]
    later = plan_alerts(states, previous, now=NOW + timedelta(minutes=5), cooldown=DAY)
    other_since = stored(
        [("A", "ok", NOW - 2 * DAY, None, None), ("B", "ok", NOW - DAY, None, None)]
    )

    assert alert_digest("low", low) == alert_digest("low", low.iloc[::-1])
    assert alert_digest("low", low) == alert_digest("low", later.alerts["low"])
    assert alert_digest("low", low) != alert_digest("low", low.head(1))
    changed = plan_alerts(states, other_since, now=NOW, cooldown=DAY).alerts["low"]
    assert alert_digest("low", low) != alert_digest("low", changed)


def test_cooldown_must_be_positive() -> None:
    with pytest.raises(InputError, match="cooldown must be positive"):
        plan_alerts(states_of([("A", 1, 1, 1, 1)]), None, now=NOW, cooldown=timedelta(0))

"""Inventory-alert threads: an item's out alert, its reminders and its recovery in one thread."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Column, MetaData, String, Table, create_engine, inspect

from blocks import SlackBot
from flows.inventory_alert.flow import follow_ups, inventory_alert
from flows.inventory_alert.render import build_alert_message
from flows.inventory_alert.states import compute_states, plan_alerts
from moltbot.messages import Message
from moltbot.sandbox.slack_web import SANDBOX_BOT_TOKEN, SANDBOX_CHANNEL_ID
from moltbot.state.item_state import ALERT_KEY, STATE_COLUMNS, ItemStateStore, empty_states
from moltbot.state.ledger import EffectStatus, Ledger, UTCDateTime
from tests.flows.test_inventory_alert_flow import backdate_states

NOW = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)
DAY = timedelta(days=1)
HEADER = "sku,name,on_hand,reorder_point,lead_time_days,daily_demand,location"
BOT_ROUTES = {"out": ["stock-bot"], "low": ["stock-bot"]}


# --------------------------------------------------------------------------- pure: follow_ups


def states_of(on_hand: dict[str, int]) -> pd.DataFrame:
    """Computed states of items with reorder point 10, demand 1 a day, lead time 3 days."""
    skus = list(on_hand)
    items = pd.DataFrame(
        {
            "sku": skus,
            "name": skus,
            "on_hand": [on_hand[sku] for sku in skus],
            "reorder_point": 10,
            "daily_demand": 1.0,
            "lead_time_days": 3.0,
            "location": None,
            "safety_stock": float("nan"),
        }
    ).astype({"sku": "str", "name": "str"})
    return compute_states(items, today=NOW.date())


def stored(rows: list[tuple]) -> pd.DataFrame:
    """Stored states from (sku, state, since, episode_since, last_alerted_at, alert_key)."""
    frame = pd.DataFrame(rows, columns=[*STATE_COLUMNS, ALERT_KEY])
    for name in ("since", "episode_since", "last_alerted_at"):
        frame[name] = pd.to_datetime(frame[name], utc=True).astype("datetime64[us, UTC]")
    return frame.astype({"item_key": "str", "state": "str", ALERT_KEY: object})


def messages_for(plan) -> dict[str, Message]:
    return {
        severity: build_alert_message(
            severity,
            items,
            counts={"ok": 0, "low": 0, "out": 0, "at_risk": 0},
            bad_rows=[],
            bad_rows_total=0,
            now=NOW,
            timezone="Asia/Seoul",
            locale="en",
            top_n=20,
        )
        for severity, items in plan.alerts.items()
    }


def decide(on_hand: dict[str, int], previous: pd.DataFrame, now: datetime = NOW):
    plan = plan_alerts(states_of(on_hand), previous, now=now, cooldown=DAY)
    return follow_ups(plan, messages_for(plan))


def keys_written(plan) -> dict[str, str | None]:
    return dict(zip(plan.writes["item_key"], plan.writes[ALERT_KEY], strict=True))


def test_out_and_low_alerts_are_remembered_by_their_items() -> None:
    previous = stored([("C", "ok", NOW - DAY, None, None, None)])

    plan, messages = decide({"A": 0, "B": 5, "C": 0, "D": 50}, previous)

    assert keys_written(plan) == {
        "A": messages["out"].key,
        "C": messages["out"].key,
        "B": messages["low"].key,
        "D": None,  # a new item that is fine: no alert reported it
    }
    # New alerts follow nothing.
    assert {m.follow_up_of for m in messages.values()} == {None}


def test_a_reminder_follows_the_out_alert_of_its_first_item_that_has_one() -> None:
    went_out = NOW - timedelta(hours=30)
    previous = stored(
        [
            # The most urgent item was stored before alert keys were kept.
            ("A", "out", went_out, went_out, went_out, None),
            ("B", "out", went_out, went_out, went_out, "inventory-alert:out:first"),
            ("C", "out", went_out, went_out, went_out, "inventory-alert:out:second"),
        ]
    )

    plan, messages = decide({"A": 0, "B": 0, "C": 0}, previous)

    assert plan.alerts["reminder"]["sku"].tolist() == ["A", "B", "C"]
    reminder = messages["reminder"]
    assert (reminder.follow_up_of, reminder.resolves) == ("inventory-alert:out:first", False)
    # A reminder keeps each item's thread.
    assert keys_written(plan) == {
        "A": None,
        "B": "inventory-alert:out:first",
        "C": "inventory-alert:out:second",
    }


def test_a_recovery_follows_the_alert_of_its_first_item_and_resolves_it() -> None:
    since = NOW - timedelta(hours=5)
    previous = stored(
        [
            ("A", "low", since, since, since, "inventory-alert:low:earlier"),
            ("B", "out", since, since, since, "inventory-alert:out:earlier"),
        ]
    )

    plan, messages = decide({"A": 50, "B": 60}, previous)

    recovered = messages["recovered"]
    first = plan.alerts["recovered"]["sku"].iloc[0]
    assert recovered.follow_up_of == previous.set_index("item_key").loc[first, ALERT_KEY]
    assert recovered.resolves is True
    # An item that is ok again is reported by no alert.
    assert keys_written(plan) == {"A": None, "B": None}


def test_a_partial_restock_keeps_the_out_alert_as_the_items_thread() -> None:
    since = NOW - timedelta(hours=5)
    previous = stored([("A", "out", since, since, since, "inventory-alert:out:earlier")])

    plan, messages = decide({"A": 5}, previous)

    assert messages == {}
    assert keys_written(plan) == {"A": "inventory-alert:out:earlier"}


def test_low_then_out_then_recovery_threads_on_the_out_alert() -> None:
    first, second, third = NOW, NOW + timedelta(hours=6), NOW + timedelta(hours=40)
    previous = empty_states()
    seen: list[dict[str, Message]] = []
    for moment, on_hand in ((first, 5), (second, 0), (third, 50)):
        plan, messages = decide({"A": on_hand}, previous, now=moment)
        seen.append(messages)
        kept = previous[~previous["item_key"].isin(plan.writes["item_key"])]
        previous = pd.concat([kept, plan.writes.drop(columns="severity")], ignore_index=True)

    low, out, recovered = seen
    assert (list(low), list(out), list(recovered)) == (["low"], ["out"], ["recovered"])
    # The later out alert replaced the low one as the item's thread.
    assert recovered["recovered"].follow_up_of == out["out"].key
    assert previous[ALERT_KEY].tolist() == [None]


# --------------------------------------------------------------------------- the store


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    return request.getfixturevalue("postgres_database_url")


def test_the_store_keeps_alert_keys_and_writes_without_them_store_none(db_url: str) -> None:
    with Ledger(db_url) as ledger:
        store = ItemStateStore(ledger, "inventory-alert")
        store.write(
            stored(
                [
                    ("A", "out", NOW, NOW, NOW, "inventory-alert:out:abc"),
                    ("B", "ok", NOW, None, None, None),
                ]
            ),
            now=NOW,
        )
        # An automation that does not thread its alerts writes the state columns only.
        ItemStateStore(ledger, "error-spike").write(
            stored([("X", "spiking", NOW, NOW, NOW, None)])[list(STATE_COLUMNS)], now=NOW
        )

        kept = store.read().set_index("item_key")[ALERT_KEY].to_dict()
        other = ItemStateStore(ledger, "error-spike").read()

    assert kept == {"A": "inventory-alert:out:abc", "B": None}
    assert other[ALERT_KEY].tolist() == [None]


def test_an_older_ledgers_item_states_gain_the_alert_key_column(db_url: str) -> None:
    # The table as moltbot created it before alert keys were kept, with one row in it.
    old = Table(
        "item_states",
        MetaData(),
        *(Column(name, String(200), primary_key=True) for name in ("automation", "item_key")),
        Column("state", String(32), nullable=False),
        *(Column(name, UTCDateTime()) for name in ("since", "episode_since", "last_alerted_at")),
        Column("updated_at", UTCDateTime(), nullable=False),
    )
    engine = create_engine(db_url)
    old.create(engine)
    with engine.begin() as conn:
        conn.execute(
            old.insert(),
            {"automation": "inventory-alert", "item_key": "A", "state": "out",
             "since": NOW, "updated_at": NOW},
        )  # fmt: skip
    engine.dispose()

    with Ledger(db_url) as ledger:
        store = ItemStateStore(ledger, "inventory-alert")
        before = store.read()
        store.write(stored([("A", "out", NOW, NOW, NOW, "inventory-alert:out:abc")]), now=NOW)
        columns = {column["name"] for column in inspect(ledger.engine).get_columns("item_states")}
        # A second store finds the column in place.
        after = ItemStateStore(ledger, "inventory-alert").read()

    assert ALERT_KEY in columns
    assert before[["item_key", "state", ALERT_KEY]].values.tolist() == [["A", "out", None]]
    assert after[ALERT_KEY].tolist() == ["inventory-alert:out:abc"]


# --------------------------------------------------------------------------- end to end


@pytest.fixture
def stock_bot(prefect_api: str, sandbox) -> str:
    """A Slack bot block on the sandbox's Web API, posting to its alerts channel."""
    SlackBot(
        bot_token=SANDBOX_BOT_TOKEN,
        channel=SANDBOX_CHANNEL_ID,
        base_url=f"{sandbox.base_url}/slack/api/",
    ).save("stock-bot", overwrite=True)
    return "stock-bot"


def write_stock(path: Path, on_hand: int) -> Path:
    path.write_text(f"{HEADER}\nB2,Green Tea,{on_hand},5,3,2,\n", encoding="utf-8")
    return path


def stored_states() -> pd.DataFrame:
    with Ledger.from_settings() as ledger:
        return ItemStateStore(ledger, "inventory-alert").read().set_index("item_key")


def done_keys(severity: str) -> list[str]:
    """The logical keys of the done effects of one severity's messages."""
    with Ledger.from_settings() as ledger:
        effects = ledger.effects(
            key_prefix=f"inventory-alert:{severity}:", status=EffectStatus.DONE
        )
    # The delivery layer appends the route's name to the message's key.
    return [effect.key.removesuffix(":stock-bot") for effect in effects]


def test_reminder_and_recovery_reply_in_the_out_alerts_thread(
    tmp_path: Path, stock_bot: str, sandbox
) -> None:
    stock = tmp_path / "stock.csv"
    slack = sandbox.state.slack.web

    went_out = inventory_alert(source=str(write_stock(stock, 0)), channels_by_severity=BOT_ROUTES)
    [alert] = slack.messages_in(SANDBOX_CHANNEL_ID)
    [out_key] = done_keys("out")
    assert [t["sku"] for t in went_out["transitions"]] == ["B2"]
    assert alert.thread_ts is None
    assert stored_states().loc["B2", ALERT_KEY] == out_key

    # A day and an hour later the item is still out: the reminder replies in the alert's thread.
    backdate_states(25)
    reminded = inventory_alert(source=str(stock), channels_by_severity=BOT_ROUTES)
    assert [r["sku"] for r in reminded["reminders"]] == ["B2"]
    alert, reminder = slack.messages_in(SANDBOX_CHANNEL_ID)
    assert reminder.thread_ts == alert.ts
    assert "Still out of stock" in reminder.text
    # A reminder does not end the alert, and the item keeps its thread.
    assert alert.edits == 0 and not alert.text.startswith("✅")
    assert stored_states().loc["B2", ALERT_KEY] == out_key

    recovered = inventory_alert(source=str(write_stock(stock, 40)), channels_by_severity=BOT_ROUTES)
    assert [(t["sku"], t["to"]) for t in recovered["transitions"]] == [("B2", "ok")]
    alert, reminder, recovery = slack.messages_in(SANDBOX_CHANNEL_ID)
    assert recovery.thread_ts == alert.ts
    assert recovery.text.startswith("Back in stock: 1 item") and "*B2* Green Tea" in recovery.text
    # The original alert now says it is over.
    assert alert.edits == 1 and alert.text.startswith("✅ Resolved: ")
    assert [m.ts for m in slack.replies(SANDBOX_CHANNEL_ID, alert.ts, None)] == [
        alert.ts,
        reminder.ts,
        recovery.ts,
    ]
    final = stored_states().loc["B2"]
    assert final["state"] == "ok" and final[ALERT_KEY] is None

"""The error-spike flow end to end: log files and a table, real Prefect API, Slack emulator,
ledger; a spike alerts once, stays quiet while it lasts, and clears once."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy
from sqlalchemy import delete, insert, select, text

from blocks import SlackIncomingWebhook
from demo.run import save_sandbox_channels
from flows.error_spike.flow import error_spike
from moltbot.blockdocs import save_block_document
from moltbot.errors import InputError
from moltbot.state.item_state import ItemStateStore
from moltbot.state.ledger import EffectStatus, Ledger
from moltbot.state.log_offsets import (
    error_counts_table,
    error_signatures_table,
    error_sources_table,
)
from tests.ledger_checks import assert_only_the_failed_run_is_audited

pytestmark = pytest.mark.slow

STEP = timedelta(minutes=5)
EMAIL = "kim.minsu@example.com"
PHONE = "010-1234-5678"


@pytest.fixture
def channels(prefect_api: str, sandbox) -> str:
    """A Slack webhook for the ops room on the sandbox."""
    save_sandbox_channels(sandbox)
    url = sandbox.slack_webhook_url("errors")
    save_block_document(SlackIncomingWebhook(url=url), "slack-errors")
    return url


def window_start(moment: datetime) -> datetime:
    epoch = int(moment.timestamp())
    return datetime.fromtimestamp(epoch - epoch % 300, UTC)


def entry(at: datetime, level: str, message: str) -> str:
    return json.dumps({"ts": at.isoformat(), "severity": level, "msg": message}, ensure_ascii=False)


def write_log(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.writelines(f"{line}\n" for line in lines)


def quiet_history(now: datetime) -> list[str]:
    """Two days of one error an hour, and info lines: a baseline of 0, threshold min_count."""
    lines = []
    for hours in range(48, 0, -1):
        at = now - timedelta(hours=hours)
        lines += [entry(at, "INFO", "request ok"), entry(at, "ERROR", "cache miss for key 42")]
    return lines


def spike_lines(now: datetime, count: int = 30) -> list[str]:
    """`count` errors in the running window (their time: one second after it began)."""
    at = window_start(now) + timedelta(seconds=1)
    lines = [
        entry(at, "ERROR", f"payment failed for {EMAIL} ({PHONE}) after {1000 + n} ms")
        for n in range(count - count // 3)
    ]
    lines += [entry(at, "error", f"order {n} timed out") for n in range(count // 3)]
    return lines


def sources(log: Path) -> dict:
    return {
        "checkout": {
            "paths": [str(log.parent / "checkout.log*")],
            "level_field": "severity",
            "timestamp_field": "ts",
            "message_field": "msg",
        }
    }


def run(log: Path, **params):
    params.setdefault("channels", ["slack-errors"])
    params.setdefault("timezone", "Asia/Seoul")
    return error_spike(sources=sources(log), **params)


def posts(sandbox, url: str) -> list[str]:
    return [
        "\n".join(
            block["text"]["text"]
            for block in post.payload["blocks"]
            if block["type"] in ("header", "section")
        )
        for post in sandbox.state.slack.messages_for(url)
    ]


def backdate(minutes: int) -> None:
    """Make the stored counts and state `minutes` older, as if that much time had passed."""
    shift = timedelta(minutes=minutes)
    with Ledger.from_settings() as ledger:
        with ledger.engine.begin() as conn:
            for table in (error_counts_table, error_signatures_table):
                rows = [row._asdict() for row in conn.execute(select(table))]
                conn.execute(delete(table))
                for row in rows:
                    row["window_start"] -= shift
                if rows:
                    conn.execute(insert(table), rows)
            rows = [row._asdict() for row in conn.execute(select(error_sources_table))]
            for row in rows:
                conn.execute(
                    error_sources_table.update()
                    .where(error_sources_table.c.source == row["source"])
                    .values(observed_since=row["observed_since"] - shift)
                )
        store = ItemStateStore(ledger, "error-spike")
        states = store.read()
        for name in ("since", "episode_since", "last_alerted_at"):
            states[name] = states[name] - shift
        store.write(states, now=datetime.now(UTC))


def stored_states() -> dict[str, str]:
    with Ledger.from_settings() as ledger:
        frame = ItemStateStore(ledger, "error-spike").read()
    return dict(zip(frame["item_key"], frame["state"], strict=True))


def test_a_spike_alerts_once_stays_quiet_and_clears_once(tmp_path, channels, sandbox):
    log = tmp_path / "logs" / "checkout.log"
    now = datetime.now(UTC)
    write_log(log, quiet_history(now) + spike_lines(now))

    started = run(log)
    still = run(log)
    backdate(30)
    cleared = run(log)
    quiet = run(log)

    [spike] = started["transitions"]
    assert (spike["source"], spike["severity"], spike["count"]) == ("checkout", "spike", 30)
    assert spike["threshold"] == 10.0
    assert [(s["signature"], s["errors"]) for s in spike["signatures"]] == [
        ("payment failed for <email> (<n>) after <n> ms", 20),
        ("order <n> timed out", 10),
    ]
    assert [(d["channel"], d["status"]) for d in started["deliveries"]] == [
        ("slack-errors", "done")
    ]
    assert started["read"]["error_lines"] == 48 + 30 and started["read"]["lines"] == 96 + 30
    assert still["transitions"] == [] and still["deliveries"] == []
    assert still["read"]["bytes_read"] == 0
    [end] = cleared["transitions"]
    assert (end["severity"], end["lasted_minutes"]) == ("cleared", 5)
    assert quiet["transitions"] == [] and quiet["deliveries"] == []

    alert, recovery = posts(sandbox, channels)
    assert "Error spike on checkout: 30 errors in 5 min" in alert
    assert "payment failed for &lt;email&gt;" in alert and "× 20 (67%)" in alert
    # The sample is masked: neither the address nor the phone number reaches Slack whole.
    assert "***@example.com" in alert
    assert EMAIL not in alert and "kim.minsu" not in alert and "1234-5678" not in alert
    assert "Errors back to normal on checkout after 5 min" in recovery
    assert "30 errors during the spike" in recovery
    with Ledger.from_settings() as ledger:
        done = [e.key for e in ledger.effects() if e.status == EffectStatus.DONE]
    spike_window = window_start(now).strftime("%Y-%m-%dT%H:%MZ")
    # The clear names the spike by its start, which `backdate` moved 30 minutes back.
    moved_window = (window_start(now) - timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%MZ")
    assert sorted(done) == [
        f"error-spike:checkout:cleared:{moved_window}:slack-errors",
        f"error-spike:checkout:spike:{spike_window}:slack-errors",
    ]
    assert stored_states() == {"checkout": "normal"}


def test_korean_locale_alert_and_summary(tmp_path, channels, sandbox, monkeypatch):
    monkeypatch.setenv("MOLTBOT_LOCALE", "ko")
    log = tmp_path / "logs" / "checkout.log"
    now = datetime.now(UTC)
    write_log(log, spike_lines(now, count=12))

    result = run(log)

    assert result["transitions"][0]["severity"] == "spike"
    [alert] = posts(sandbox, channels)
    assert "오류 급증: checkout, 5분 동안 12건" in alert
    assert "급증 기준 10건 이상 (아직 기준 기록 없음)" in alert
    assert "예) payment failed for ***@example.com" in alert
    assert EMAIL not in alert


def test_a_dry_run_previews_and_stores_nothing(tmp_path, channels, sandbox):
    log = tmp_path / "logs" / "checkout.log"
    now = datetime.now(UTC)
    write_log(log, quiet_history(now) + spike_lines(now))

    preview = run(log, dry_run=True)

    assert preview["dry_run"] is True
    assert [t["severity"] for t in preview["transitions"]] == ["spike"]
    assert [d["status"] for d in preview["deliveries"]] == ["dry_run"]
    assert posts(sandbox, channels) == []
    with Ledger.from_settings() as ledger, ledger.engine.connect() as conn:
        for table in ("log_offsets", "error_counts", "error_signatures", "item_states", "effects"):
            assert conn.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar() == 0, table

    # Nothing was consumed: the real run reads the same lines and alerts.
    real = run(log)
    assert real["transitions"][0]["count"] == 30
    assert len(posts(sandbox, channels)) == 1


def test_a_table_source_is_counted_in_the_database(tmp_path, channels, sandbox):
    url = f"sqlite:///{tmp_path / 'app.db'}"
    engine = sqlalchemy.create_engine(url)
    now = datetime.now(UTC)
    at = (window_start(now) + timedelta(seconds=1)).strftime("%Y-%m-%d %H:%M:%S")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE logs (created_at TEXT, level TEXT, message TEXT)"))
        conn.execute(
            text("INSERT INTO logs VALUES (:at, :level, :message)"),
            [{"at": at, "level": "ERROR", "message": f"upstream 50{n % 3} from {EMAIL}"}
             for n in range(15)]
            + [{"at": at, "level": "INFO", "message": "fine"} for _ in range(100)],
        )  # fmt: skip
    engine.dispose()
    table = {"db": {"url": url, "table": "logs", "timestamp_column": "created_at"}}

    first = error_spike(sources=table, channels=["slack-errors"])
    second = error_spike(sources=table, channels=["slack-errors"])

    [spike] = first["transitions"]
    assert (spike["source"], spike["count"]) == ("db", 15)
    assert [(s["signature"], s["errors"]) for s in spike["signatures"]] == [
        ("upstream <n> from <email>", 15)
    ]
    assert second["transitions"] == []
    [alert] = posts(sandbox, channels)
    assert "***@example.com" in alert and EMAIL not in alert


def test_a_postgresql_table_source_is_counted_in_the_database(
    channels, sandbox, postgres_database_url
):
    engine = sqlalchemy.create_engine(postgres_database_url)
    at = window_start(datetime.now(UTC)) + timedelta(seconds=1)
    with engine.begin() as conn:
        conn.execute(
            text('CREATE TABLE app_logs (created_at TIMESTAMPTZ, "level" TEXT, message TEXT)')
        )
        conn.execute(
            text("INSERT INTO app_logs VALUES (:at, :level, :message)"),
            [{"at": at, "level": "error" if n % 2 else "CRITICAL",
              "message": f"db timeout after {100 + n} ms for {EMAIL}"} for n in range(12)]
            + [{"at": at, "level": "INFO", "message": "fine"} for _ in range(50)]
            + [{"at": at - timedelta(days=30), "level": "ERROR", "message": "old"}],
        )  # fmt: skip
    engine.dispose()
    table = {"pg": {"url": postgres_database_url, "table": "app_logs",
                    "timestamp_column": "created_at"}}  # fmt: skip

    first = error_spike(sources=table, channels=["slack-errors"])
    second = error_spike(sources=table, channels=["slack-errors"])

    [spike] = first["transitions"]
    assert (spike["source"], spike["count"]) == ("pg", 12)
    assert [(s["signature"], s["errors"]) for s in spike["signatures"]] == [
        ("db timeout after <n> ms for <email>", 12)
    ]
    assert second["transitions"] == []
    [alert] = posts(sandbox, channels)
    assert EMAIL not in alert


def test_plain_lines_read_with_a_regex(tmp_path, channels, sandbox):
    log = tmp_path / "logs" / "nginx-error.log"
    at = window_start(datetime.now(UTC)) + timedelta(seconds=1)
    stamp = at.astimezone(ZoneInfo("Asia/Seoul")).strftime("%Y/%m/%d %H:%M:%S")
    write_log(
        log,
        [f"{stamp} [crit] 812#0: connect() to 10.0.0.{n} failed" for n in range(11)]
        + [f"{stamp} [notice] 812#0: reload" for _ in range(50)],
    )
    nginx = {
        "paths": str(log),
        "format": "regex",
        "pattern": r"^(?P<timestamp>\S+ \S+) \[(?P<level>\w+)\] (?P<message>.*)$",
        "timestamp_format": "%Y/%m/%d %H:%M:%S",
        "levels": ["error", "crit"],
    }

    result = error_spike(sources={"nginx": nginx}, channels=["slack-errors"], timezone="Asia/Seoul")

    [spike] = result["transitions"]
    assert (spike["count"], spike["signatures"][0]["signature"]) == (
        11,
        "<n>#<n>: connect() to <n> failed",
    )
    assert len(posts(sandbox, channels)) == 1


def test_a_glob_matching_nothing_is_a_warning_not_a_failure(tmp_path, channels, sandbox):
    result = run(tmp_path / "logs" / "checkout.log")

    assert result["unmatched"] == [{"source": "checkout", "patterns": 1}]
    assert result["transitions"] == [] and posts(sandbox, channels) == []


@pytest.mark.parametrize(
    ("params", "message", "secret"),
    [
        (
            {
                "sources": {
                    "web": {"paths": "x.log", "format": "regex", "pattern": "(?P<level>[A-Z+"}
                }
            },
            "sources['web'].pattern is not a valid regular expression",
            "[A-Z+",
        ),
        (
            {"sources": {"web": {"paths": "x.log", "format": "regex", "pattern": r"(?P<lvl>\w+)"}}},
            "sources['web'].pattern needs a named group (?P<level>...)",
            "lvl",
        ),
        (
            {"sources": {"web": {"paths": "x.log", "format": "xml-ish"}}},
            "sources['web'].format must be json or regex",
            "xml-ish",
        ),
        ({"sources": {"web": {"paths": "x.log"}}, "window_minutes": 0}, "window_minutes", None),
        ({}, "sources is required", None),
        (
            {"sources": {"db": {"url": "postgresql://u:hunter2@db/app", "table": "logs"}}},
            "the URL holds a password",
            "hunter2",
        ),
    ],
    ids=["invalid-regex", "no-level-group", "format", "window", "no-sources", "password"],
)
def test_bad_input_is_one_line_naming_the_parameter_and_nothing_is_stored(
    channels, sandbox, moltbot_home, params, message, secret
):
    with pytest.raises(InputError) as raised:
        error_spike(channels=["slack-errors"], **params)

    text_of_error = str(raised.value)
    assert message in text_of_error and "\n" not in text_of_error
    if secret:
        assert secret not in text_of_error
    assert sandbox.state.slack.attempts == 0
    assert_only_the_failed_run_is_audited(moltbot_home)

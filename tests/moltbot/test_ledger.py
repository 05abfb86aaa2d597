"""Tests of the effects ledger on a real SQLite file: claims, outcomes, leases and races."""

from __future__ import annotations

import multiprocessing
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from moltbot.config.settings import Settings
from moltbot.masking import register_secret
from moltbot.state.ledger import Effect, EffectStatus, Ledger, effects_table

TARGET = {"automation": "daily_report", "kind": "message", "target": "slack-ops"}


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    # A folder that does not exist yet: the ledger must create it.
    return f"sqlite:///{tmp_path / 'state' / 'ledger.sqlite3'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    """Every portable behaviour runs on the default SQLite file and on PostgreSQL."""
    if request.param == "sqlite":
        return sqlite_url
    return request.getfixturevalue("postgres_database_url")


@pytest.fixture
def ledger(db_url: str) -> Iterator[Ledger]:
    with Ledger(db_url) as opened:
        yield opened


def backdate(ledger: Ledger, key: str, seconds: float) -> None:
    """Make the row look untouched for `seconds`, as if its claimant had gone quiet."""
    stamp = datetime.now(UTC) - timedelta(seconds=seconds)
    with ledger.engine.begin() as conn:
        conn.execute(
            update(effects_table).where(effects_table.c.key == key).values(updated_at=stamp)
        )


def test_first_claim_acquires_a_pending_row(ledger: Ledger) -> None:
    claim = ledger.claim("report:2026-11-24:slack-ops", flow_run_id="run-1", **TARGET)

    assert claim.acquired
    assert claim.effect.status == EffectStatus.PENDING
    assert claim.effect.attempts == 1
    assert claim.effect.flow_run_id == "run-1"
    assert ledger.get("report:2026-11-24:slack-ops") == claim.effect


def test_completed_effect_is_skipped_by_the_next_claim(ledger: Ledger) -> None:
    ledger.claim("k", **TARGET)
    done = ledger.complete("k", remote_id="1732.0001")

    again = ledger.claim("k", **TARGET)

    assert done.status == EffectStatus.DONE
    assert not again.acquired
    assert again.effect.status == EffectStatus.DONE
    assert again.effect.remote_id == "1732.0001"
    assert again.effect.attempts == 1


def test_fresh_pending_claim_is_not_taken_over(ledger: Ledger) -> None:
    ledger.claim("k", flow_run_id="run-1", **TARGET)

    second = ledger.claim("k", flow_run_id="run-2", **TARGET)

    assert not second.acquired
    assert second.effect.status == EffectStatus.PENDING
    assert second.effect.flow_run_id == "run-1"
    assert ledger.get("k").attempts == 1


def test_failed_effect_is_claimed_again_with_one_more_attempt(ledger: Ledger) -> None:
    ledger.claim("k", flow_run_id="run-1", **TARGET)
    failed = ledger.fail("k", "HTTP 503 from Slack")

    retry = ledger.claim("k", flow_run_id="run-2", **TARGET)

    assert failed.status == EffectStatus.FAILED
    assert failed.error == "HTTP 503 from Slack"
    assert retry.acquired
    assert retry.effect.status == EffectStatus.PENDING
    assert retry.effect.attempts == 2
    assert ledger.get("k").flow_run_id == "run-2"


def test_force_claims_a_done_effect_again(ledger: Ledger) -> None:
    ledger.claim("k", **TARGET)
    ledger.complete("k", remote_id="first")

    forced = ledger.claim("k", force=True, **TARGET)
    redone = ledger.complete("k", remote_id="second")

    assert forced.acquired
    assert forced.effect.attempts == 2
    assert redone.remote_id == "second"
    assert redone.attempts == 2


def test_dead_effect_needs_force(ledger: Ledger) -> None:
    ledger.claim("k", **TARGET)
    ledger.fail("k", "channel archived", dead=True)

    plain = ledger.claim("k", **TARGET)
    forced = ledger.claim("k", force=True, **TARGET)

    assert not plain.acquired
    assert plain.effect.status == EffectStatus.DEAD
    assert forced.acquired
    assert forced.effect.attempts == 2


def test_pending_claim_is_taken_over_after_its_lease_expires(db_url: str) -> None:
    with Ledger(db_url, lease_seconds=0.05) as ledger:
        ledger.claim("k", flow_run_id="crashed-run", **TARGET)
        time.sleep(0.1)

        takeover = ledger.claim("k", flow_run_id="run-2", **TARGET)

    assert takeover.acquired
    assert takeover.effect.attempts == 2
    assert takeover.effect.flow_run_id == "run-2"


def test_note_attempt_counts_retries_and_renews_the_lease(db_url: str) -> None:
    with Ledger(db_url, lease_seconds=60) as ledger:
        ledger.claim("k", **TARGET)
        backdate(ledger, "k", seconds=120)
        ledger.note_attempt("k")

        competitor = ledger.claim("k", **TARGET)

    assert not competitor.acquired
    assert competitor.effect.attempts == 2
    assert datetime.now(UTC) - competitor.effect.updated_at < timedelta(seconds=30)


def test_backdated_pending_claim_is_taken_over(db_url: str) -> None:
    with Ledger(db_url, lease_seconds=60) as ledger:
        ledger.claim("k", **TARGET)
        backdate(ledger, "k", seconds=120)

        assert ledger.claim("k", **TARGET).acquired
        assert ledger.get("k").attempts == 2


@pytest.mark.parametrize(
    "action",
    [
        lambda ledger: ledger.complete("missing"),
        lambda ledger: ledger.fail("missing", "boom"),
        lambda ledger: ledger.note_attempt("missing"),
    ],
    ids=["complete", "fail", "note_attempt"],
)
def test_outcomes_for_unknown_keys_raise_key_error(ledger: Ledger, action) -> None:
    with pytest.raises(KeyError):
        action(ledger)


def test_release_drops_only_pending_claims(ledger: Ledger) -> None:
    ledger.claim("dry-run", **TARGET)
    ledger.release("dry-run")
    ledger.claim("sent", **TARGET)
    ledger.complete("sent", remote_id="r")
    ledger.release("sent")

    assert ledger.get("dry-run") is None
    assert ledger.claim("dry-run", **TARGET).effect.attempts == 1
    assert ledger.get("sent").status == EffectStatus.DONE


def test_fail_masks_personal_data_and_registered_secrets(ledger: Ledger) -> None:
    secret = f"tok-{uuid.uuid4().hex}"
    register_secret(secret)
    ledger.claim("k", **TARGET)

    effect = ledger.fail("k", f"rejected mail to kim.minsu@acme.co.kr using {secret}")

    assert effect.error == "rejected mail to ***@acme.co.kr using ***"
    assert secret not in ledger.get("k").error


def test_fail_truncates_long_errors(ledger: Ledger) -> None:
    ledger.claim("k", **TARGET)

    effect = ledger.fail("k", "x" * 5000)

    assert len(effect.error) == 1000
    assert effect.error.startswith("xxx")


def test_effects_filters_by_automation_and_status(ledger: Ledger) -> None:
    ledger.claim("a1", automation="daily_report", kind="message", target="slack")
    ledger.claim("a2", automation="daily_report", kind="message", target="email")
    ledger.claim("b1", automation="stock_alert", kind="page", target="oncall")
    ledger.complete("a1")

    assert [e.key for e in ledger.effects()] == ["a1", "a2", "b1"]
    assert [e.key for e in ledger.effects(automation="daily_report")] == ["a1", "a2"]
    assert [e.key for e in ledger.effects(status=EffectStatus.PENDING)] == ["a2", "b1"]
    done_reports = ledger.effects(automation="daily_report", status=EffectStatus.DONE)
    assert [e.key for e in done_reports] == ["a1"]


@pytest.mark.parametrize("starting_state", ["new", "failed"])
def test_exactly_one_of_eight_threads_acquires(ledger: Ledger, starting_state: str) -> None:
    if starting_state == "failed":
        ledger.claim("k", **TARGET)
        ledger.fail("k", "timeout")
    barrier = threading.Barrier(8)

    def race(_: int) -> bool:
        barrier.wait()
        return ledger.claim("k", **TARGET).acquired

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(race, range(8)))

    assert sorted(results) == [False] * 7 + [True]
    assert ledger.get("k").attempts == (1 if starting_state == "new" else 2)


def _claim_in_process(url: str, barrier: object, results: object) -> None:
    with Ledger(url) as ledger:
        barrier.wait()
        results.put(ledger.claim("k", **TARGET).acquired)


def test_exactly_one_of_four_processes_acquires(db_url: str) -> None:
    # The database does not exist yet, so the processes also race to create the schema.
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(4)
    results = context.Queue()
    processes = [
        context.Process(target=_claim_in_process, args=(db_url, barrier, results)) for _ in range(4)
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(timeout=60)

    assert [process.exitcode for process in processes] == [0, 0, 0, 0]
    assert sorted(outcomes) == [False, False, False, True]
    with Ledger(db_url) as ledger:
        assert ledger.get("k").attempts == 1


def test_sqlite_file_uses_wal_and_a_busy_timeout(sqlite_url: str, tmp_path: Path) -> None:
    ledger = Ledger(sqlite_url)
    ledger.claim("k", **TARGET)

    with ledger.engine.connect() as conn:
        journal_mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
        busy_timeout = conn.exec_driver_sql("PRAGMA busy_timeout").scalar()

    ledger.close()
    assert journal_mode == "wal"
    assert busy_timeout == 10_000
    assert (tmp_path / "state" / "ledger.sqlite3").is_file()


def test_records_survive_reopening(db_url: str) -> None:
    with Ledger(db_url) as first:
        first.claim("k", flow_run_id="run-1", **TARGET)
        written = first.complete("k", remote_id="msg-42")

    with Ledger(db_url) as second:
        assert second.get("k") == written
        assert not second.claim("k", **TARGET).acquired


def test_korean_text_round_trips(db_url: str) -> None:
    key = "일일보고:2026-11-24:#운영-알림"
    with Ledger(db_url) as ledger:
        ledger.claim(key, automation="일일 매출 보고", kind="message", target="#운영-알림")
        ledger.fail(key, "채널을 찾을 수 없습니다")

    with Ledger(db_url) as reopened:
        effect = reopened.get(key)

    assert effect.automation == "일일 매출 보고"
    assert effect.target == "#운영-알림"
    assert effect.error == "채널을 찾을 수 없습니다"


def test_timestamps_are_timezone_aware_utc(db_url: str) -> None:
    before = datetime.now(UTC)
    with Ledger(db_url) as ledger:
        ledger.claim("k", **TARGET)
    with Ledger(db_url) as reopened:
        effect: Effect = reopened.get("k")
    after = datetime.now(UTC)

    for stamp in (effect.created_at, effect.updated_at):
        assert stamp.tzinfo is not None
        assert stamp.utcoffset() == timedelta(0)
        assert before <= stamp <= after


def test_from_settings_defaults_to_a_file_under_home(tmp_path: Path) -> None:
    home = tmp_path / "custom-home"
    with Ledger.from_settings(Settings(home=home)) as ledger:
        ledger.claim("k", **TARGET)

    assert (home / "ledger.sqlite3").is_file()


def test_from_settings_reads_the_environment(moltbot_home: Path) -> None:
    with Ledger.from_settings() as ledger:
        ledger.claim("k", **TARGET)

    assert (moltbot_home / "ledger.sqlite3").is_file()

"""Reading log files incrementally: offsets per inode, rotation, truncation, partial and bad
lines, and offsets committed with their counts in one transaction."""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text

from moltbot.logscan import LogFormat, Tally, parse_epoch, scan_files, signature_of
from moltbot.state.ledger import Ledger
from moltbot.state.log_offsets import LogCountStore, OffsetsMoved
from tasks.logs import LogSource, count_log_errors, count_table_errors, parse_sources

NOW = datetime(2026, 3, 2, 9, 7, 30, tzinfo=UTC)
WINDOW = 300
JSON = LogFormat(kind="json")
AUTOMATION = "error-spike"


def line(level: str, message: str, at: datetime = NOW - timedelta(minutes=1), **extra) -> str:
    return json.dumps({"timestamp": at.isoformat(), "level": level, "message": message, **extra})


def write(path: Path, *lines: str, mode: str = "a") -> None:
    with path.open(mode, encoding="utf-8") as handle:
        handle.writelines(f"{entry}\n" for entry in lines)


def source(*patterns: str, log_format: LogFormat = JSON, name: str = "app") -> LogSource:
    return LogSource(name=name, kind="files", patterns=patterns, log_format=log_format)


def count(src: LogSource, now: datetime = NOW, *, commit: bool = True):
    """One run's reading and counting step, as the flow calls it."""
    return count_log_errors.fn(
        AUTOMATION, src, window_minutes=5, now=now, keep_days=8, commit=commit
    )


def stored_counts(name: str = "app") -> dict[str, int]:
    with Ledger.from_settings() as ledger:
        history = LogCountStore(ledger, AUTOMATION).history(
            name, window_minutes=5, since=NOW - timedelta(days=30)
        )
    return {
        datetime.fromtimestamp(start, UTC).strftime("%H:%M"): errors
        for start, errors in sorted(history.counts.items())
    }


def offsets(name: str = "app") -> dict[str, int]:
    with Ledger.from_settings() as ledger:
        cursors = LogCountStore(ledger, AUTOMATION).cursors(name)
    return {Path(cursor.path).name: cursor.offset for cursor in cursors.values()}


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return tmp_path / "logs" / "app.log"


@pytest.fixture(autouse=True)
def _log_dir(log: Path) -> None:
    log.parent.mkdir()


def test_appended_lines_are_read_once_and_bucketed_by_their_own_time(log):
    write(
        log,
        line("ERROR", "db timeout", NOW.replace(minute=1)),
        line("INFO", "fine, no error here"),
        line("error", "db timeout", NOW.replace(minute=6)),
    )
    first = count(source(str(log)))
    write(log, line("CRITICAL", "disk full", NOW.replace(minute=7)), line("WARN", "slow"))
    second = count(source(str(log)))
    third = count(source(str(log)))

    assert (first.stats.lines, first.stats.error_lines) == (3, 2)
    assert (second.stats.lines, second.stats.error_lines) == (2, 1)
    assert (third.stats.bytes_read, third.stats.error_lines) == (0, 0)
    assert stored_counts() == {"09:00": 1, "09:05": 2}
    assert offsets() == {"app.log": log.stat().st_size}


def test_lines_without_a_readable_time_count_at_read_time(log):
    write(
        log,
        json.dumps({"level": "ERROR", "message": "no time"}),
        json.dumps({"level": "ERROR", "message": "bad time", "timestamp": "yesterday-ish"}),
        json.dumps({"level": "ERROR", "message": "epoch ms", "timestamp": 1772442000000}),
    )
    result = count(source(str(log)))

    assert result.stats.untimed == 2
    # 1772442000 s is 2026-03-02 09:00 UTC; the untimed ones count in NOW's window (09:05).
    assert stored_counts() == {"09:00": 1, "09:05": 2}


def test_rotation_by_rename_reads_the_rest_of_the_old_file_then_the_new_one(log):
    write(log, line("ERROR", "before rotation"), line("ERROR", "before rotation"))
    count(source(str(log.parent / "app.log*")))
    # Written after the last read, then the file is rotated away and a new one started.
    write(log, line("ERROR", "written just before rotation"))
    log.rename(log.parent / "app.log.1")
    write(log, line("ERROR", "in the new file"), line("INFO", "hello"))

    result = count(source(str(log.parent / "app.log*")))

    assert result.stats.error_lines == 2
    assert result.stats.rotated == 1
    assert stored_counts() == {"09:05": 4}
    assert offsets() == {
        "app.log.1": (log.parent / "app.log.1").stat().st_size,
        "app.log": log.stat().st_size,
    }
    # The rotated file disappearing later forgets its offset and reads nothing twice.
    (log.parent / "app.log.1").unlink()
    assert count(source(str(log.parent / "app.log*"))).stats.error_lines == 0
    assert offsets() == {"app.log": log.stat().st_size}


def test_a_new_file_at_the_same_path_has_a_new_inode_and_is_read_from_the_start(log):
    write(log, line("ERROR", "old"), line("ERROR", "old"), line("ERROR", "old"))
    count(source(str(log)))
    replacement = log.with_name("app.log.tmp")
    write(replacement, line("ERROR", "new one"), line("INFO", "x" * 400))
    os.replace(replacement, log)

    result = count(source(str(log)))

    assert result.stats.error_lines == 1
    assert stored_counts() == {"09:05": 4}


def test_truncation_restarts_at_zero(log):
    write(log, *(line("ERROR", f"before {n}") for n in range(5)))
    count(source(str(log)))
    write(log, line("ERROR", "after truncation"), mode="w")

    result = count(source(str(log)))

    assert (result.stats.truncated, result.stats.error_lines) == (1, 1)
    assert stored_counts() == {"09:05": 6}


def test_a_file_rewritten_in_place_with_other_content_is_read_again(log):
    write(log, line("ERROR", "first content"))
    count(source(str(log)))
    # Same inode, longer than the stored offset, but its first bytes changed.
    write(log, line("FATAL", "other content, longer"), line("ERROR", "more"), mode="w")

    result = count(source(str(log)))

    assert (result.stats.replaced, result.stats.error_lines) == (1, 2)


def test_an_unfinished_last_line_waits_for_its_newline(log):
    complete = line("ERROR", "complete")
    partial = line("ERROR", "still being written")
    log.write_text(complete + "\n" + partial[:20], encoding="utf-8")

    first = count(source(str(log)))
    assert first.stats.error_lines == 1
    assert offsets() == {"app.log": len(complete) + 1}

    with log.open("a", encoding="utf-8") as handle:
        handle.write(partial[20:] + "\n")
    second = count(source(str(log)))

    assert second.stats.error_lines == 1
    assert stored_counts() == {"09:05": 2}
    assert offsets() == {"app.log": log.stat().st_size}


def test_undecodable_bytes_are_replaced_and_counted_never_fatal(log):
    good = line("ERROR", "payment failed for kim@example.com").encode()
    bad_json = (
        b'{"timestamp": "2026-03-02T09:06:00+00:00", "level": "ERROR", '
        b'"message": "bad \xff\xfe bytes"}'
    )
    plain = b"2026-03-02 09:06:00 ERROR broken \xc3 utf-8\n"
    log.write_bytes(good + b"\n" + bad_json + b"\n" + b'\xff\xff "ERROR" not json at all\n')
    plain_log = log.with_name("plain.log")
    plain_log.write_bytes(plain)

    result = count(source(str(log)))
    plain_result = count(
        source(
            str(plain_log),
            log_format=LogFormat(
                kind="regex",
                pattern=re.compile(r"^(?P<timestamp>\S+ \S+) (?P<level>[A-Z]+) (?P<message>.*)$"),
            ),
            name="plain",
        )
    )

    assert (result.stats.error_lines, result.stats.undecodable) == (2, 2)
    assert result.stats.unparsable == 1  # the line that is not JSON and has no level field
    samples = result.tally.samples
    assert samples["bad \ufffd\ufffd bytes"] == "bad \ufffd\ufffd bytes"
    # Samples are masked when taken: the address never reaches the ledger whole.
    assert samples["payment failed for <email>"] == "payment failed for ***@example.com"
    assert (plain_result.stats.error_lines, plain_result.stats.undecodable) == (1, 1)
    assert stored_counts("plain") == {"09:05": 1}


def test_an_overlong_line_is_judged_on_its_start_and_memory_stays_bounded(log):
    huge = line("ERROR", "stack trace " + "x" * 5000)
    write(log, huge, line("ERROR", "short"))
    tail = line("ERROR", "never finished " + "y" * 5000)
    with log.open("a", encoding="utf-8") as handle:
        handle.write(tail)  # no newline yet

    result = scan_files(
        [str(log)], {}, JSON, window_seconds=WINDOW, now_epoch=NOW.timestamp(),
        chunk_bytes=1024, max_line_bytes=512,
    )  # fmt: skip

    assert result.stats.error_lines == 2
    assert result.stats.oversized == 1
    assert result.tally.total == 2
    # The unfinished long line is not consumed: the offset stops before it.
    [cursor] = result.cursors
    assert cursor.offset == len(huge) + len(line("ERROR", "short")) + 2


def test_a_crash_while_committing_stores_neither_offsets_nor_counts(log):
    write(log, line("ERROR", "one"), line("ERROR", "two"))
    count(source(str(log)))
    write(log, line("ERROR", "three"))
    with Ledger.from_settings() as ledger, ledger.engine.begin() as conn:
        # The database refuses the counts, after the offsets were written in the same transaction.
        conn.execute(
            text(
                "CREATE TRIGGER crash BEFORE INSERT ON error_counts "
                "BEGIN SELECT RAISE(ABORT, 'simulated crash'); END"
            )
        )
    before = offsets()

    with pytest.raises(Exception, match="simulated crash"):
        count(source(str(log)))

    assert offsets() == before
    assert stored_counts() == {"09:05": 2}
    with Ledger.from_settings() as ledger, ledger.engine.begin() as conn:
        conn.execute(text("DROP TRIGGER crash"))
    retried = count(source(str(log)))
    assert retried.stats.error_lines == 1
    assert stored_counts() == {"09:05": 3}
    assert offsets() == {"app.log": log.stat().st_size}


def test_two_runs_reading_the_same_offsets_commit_only_once(log):
    write(log, line("ERROR", "one"))
    count(source(str(log)))
    write(log, line("ERROR", "two"))
    with Ledger.from_settings() as ledger:
        store = LogCountStore(ledger, AUTOMATION)
        read_from = store.cursors("app")
        scans = [
            scan_files([str(log)], read_from, JSON, window_seconds=WINDOW, now_epoch=0)
            for _ in range(2)
        ]
        keep = {"keep_counts_after": NOW - timedelta(days=8), "keep_signatures_after": NOW}
        for index, scan in enumerate(scans):
            commit = {"tally": scan.tally, "read_from": read_from, "cursors": scan.cursors}
            if index == 0:
                store.commit("app", window_minutes=5, now=NOW, **commit, **keep)
            else:
                with pytest.raises(OffsetsMoved):
                    store.commit("app", window_minutes=5, now=NOW, **commit, **keep)

    assert stored_counts() == {"09:05": 2}


def test_a_dry_run_count_stores_nothing(log):
    write(log, line("ERROR", "one"))
    result = count(source(str(log)), commit=False)

    assert result.tally.total == 1 and not result.committed
    assert stored_counts() == {} and offsets() == {}


def test_a_pattern_matching_nothing_is_reported_not_fatal(log):
    result = count(source(str(log.parent / "missing-*.log")))

    assert result.matched_nothing == [str(log.parent / "missing-*.log")]
    assert result.stats.files == 0


def test_a_table_source_counts_per_window_in_the_database(tmp_path):
    import sqlalchemy

    url = f"sqlite:///{tmp_path / 'app.db'}"
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE app_logs (ts TEXT, lvl TEXT, msg TEXT)"))
        rows = [
            ("2026-03-02 09:01:00", "ERROR", "order 1 failed"),
            ("2026-03-02 09:04:59", "error", "order 22 failed"),
            ("2026-03-02 09:05:00", "FATAL", "disk /dev/sda1 full"),
            ("2026-03-02 09:06:00", "INFO", "ok"),
            ("2026-03-02 08:00:00", "ERROR", "before the range"),
        ]
        conn.execute(text("INSERT INTO app_logs VALUES (:ts, :lvl, :msg)"), [
            {"ts": ts, "lvl": lvl, "msg": msg} for ts, lvl, msg in rows
        ])  # fmt: skip
    engine.dispose()
    [table] = parse_sources(
        {"db": {"url": url, "table": "app_logs", "timestamp_column": "ts",
                "level_column": "lvl", "message_column": "msg"}},
        timezone="UTC",
    )  # fmt: skip

    tally = count_table_errors(
        table,
        start=NOW.replace(minute=0, second=0),
        end=NOW,
        window_seconds=WINDOW,
        signatures_from=NOW.replace(minute=0, second=0),
    )

    start = int(NOW.replace(minute=0, second=0).timestamp()) // WINDOW
    assert tally.counts == {start: 2, start + 1: 1}
    assert tally.signatures == {
        (start, "order <n> failed"): 2,
        (start + 1, "disk /dev/<id> full"): 1,
    }


@pytest.mark.parametrize(
    ("message", "signature"),
    [
        ("user kim@example.com failed after 1532 ms", "user <email> failed after <n> ms"),
        (
            "order 5f1c2a9e-3b4d-4c8e-9f00-1a2b3c4d5e6f not found (attempt 3)",
            "order <uuid> not found (attempt <n>)",
        ),
        ("segfault at 0x7ffd3a2b in worker 12", "segfault at <hex> in worker <n>"),
        ("commit deadbeef12 rejected", "commit <hex> rejected"),
        ("invoice INV-2024-0001 for ord_8812 timed out", "invoice <id> for <id> timed out"),
        ("결제 3회   실패: 사용자 lee@example.co.kr", "결제 <n>회 실패: 사용자 <email>"),
        ("latency 12.5s over limit", "latency <n>s over limit"),
    ],
)
def test_signatures_normalise_what_varies(message, signature):
    assert signature_of(message) == signature


@pytest.mark.parametrize(
    ("value", "fmt", "expected"),
    [
        ("2026-03-02T09:00:00Z", None, datetime(2026, 3, 2, 9, tzinfo=UTC)),
        ("2026-03-02 18:00:00,250", None, datetime(2026, 3, 2, 9, 0, 0, 250000, tzinfo=UTC)),
        ("02/Mar/2026:18:00:00", "%d/%b/%Y:%H:%M:%S", datetime(2026, 3, 2, 9, tzinfo=UTC)),
        (1772442000, None, datetime(2026, 3, 2, 9, tzinfo=UTC)),
        ("1772442000.5", None, datetime(2026, 3, 2, 9, 0, 0, 500000, tzinfo=UTC)),
    ],
)
def test_times_are_read_in_the_log_timezone_when_they_have_no_offset(value, fmt, expected):
    assert parse_epoch(value, fmt, ZoneInfo("Asia/Seoul")) == expected.timestamp()


def test_unreadable_times_are_none():
    assert parse_epoch("not a time", None, UTC) is None
    assert parse_epoch(True, None, UTC) is None
    assert parse_epoch({"nested": 1}, None, UTC) is None


def test_signatures_and_samples_are_masked_before_they_are_kept():
    tally = Tally(WINDOW)
    tally.add(NOW.timestamp(), "auth failed: password=letmein for kim@example.com")
    tally.add(NOW.timestamp(), "auth failed: password=letmein for lee@example.com")

    [(_, signature)] = tally.signatures
    assert signature == "auth failed: password=*** for <email>"
    assert tally.samples[signature] == "auth failed: password=*** for ***@example.com"
    assert tally.signatures[(int(NOW.timestamp()) // WINDOW, signature)] == 2


@pytest.mark.parametrize(
    "message",
    [
        "upstream refused token=9f3a2b7c-SecretTail42 for kim@example.com",
        "upstream refused Authorization: Bearer 9f3a2b7c-SecretTail42",
    ],
)
def test_a_token_a_placeholder_would_split_is_masked_whole(message):
    # Normalising first would leave `token=<hex>-SecretTail42`, which masking no longer sees
    # as one value: the tail of the secret would be kept in the signature.
    tally = Tally(WINDOW)
    tally.add(NOW.timestamp(), message)

    [(_, signature)] = tally.signatures
    assert "SecretTail42" not in signature and "9f3a2b7c" not in signature
    assert "SecretTail42" not in tally.samples[signature]

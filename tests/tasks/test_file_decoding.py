"""Users' files that are not UTF-8: one line naming the file and the byte offset, never content."""

from __future__ import annotations

import json
import logging
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.ticket_creation.drafts import read_events_file
from moltbot.cli import app
from moltbot.errors import InputError
from moltbot.textfiles import read_text_file
from tasks.sources import read_table

ROOT = Path(__file__).parents[2]
# Personal data of the kind a legacy CP949 export of support events holds.
KOREAN = "고객 김민지 님 결제 실패, 환불 요청 010-1234-5678"
EVENT = {
    "id": "pay-1",
    "type": "payment.failed",
    "occurred_at": "2026-11-24T09:12:45+09:00",
    "payload": {"order_id": "A-10023", "amount": 59000, "note": KOREAN},
}
LINE = json.dumps(EVENT, ensure_ascii=False) + "\n"
# The byte where the first Hangul syllable starts: CP949 bytes that are not UTF-8 begin there.
FIRST_HANGUL = LINE.index("고")


def cp949_events(path: Path, lines: int = 200) -> Path:
    path.write_bytes((LINE * lines).encode("cp949"))
    return path


def binary_file(path: Path) -> Path:
    # Deterministic "random" bytes: ASCII first, so the offset of the first bad byte is known.
    path.write_bytes(b'{"id": ' + bytes(range(128, 256)) * 64)
    return path


def leaks(text: str) -> list[str]:
    """What in `text` would show the file's content: Korean words, their bytes, a traceback."""
    found = [word for word in ("김민지", "환불", "결제", "010-1234") if word in text]
    found += [marker for marker in ("Traceback", "\\x", "b'") if marker in text]
    return found


# --------------------------------------------------------------------------- the helper


def test_the_error_names_file_encoding_and_byte_offset(tmp_path: Path) -> None:
    path = cp949_events(tmp_path / "이벤트.jsonl")

    with pytest.raises(InputError) as raised:
        read_text_file(path, what="events_file")

    message = str(raised.value)
    assert message == (
        f"이벤트.jsonl: not valid utf-8 at byte {FIRST_HANGUL} "
        "(save it as UTF-8; a CP949/EUC-KR export must be converted)"
    )
    assert leaks(message) == []


def test_the_error_carries_no_chained_exception_holding_the_bytes(tmp_path: Path) -> None:
    path = binary_file(tmp_path / "blob.jsonl")

    with pytest.raises(InputError) as raised:
        read_text_file(path, what="events_file")

    error = raised.value
    assert error.__cause__ is None
    assert error.__context__ is None
    assert "at byte 7 " in str(error)
    assert leaks(repr(error)) == []


def test_the_error_carries_no_chained_exception_even_inside_an_except_block(
    tmp_path: Path,
) -> None:
    # A caller handling another error: the raised error may chain to that one, never to the
    # UnicodeDecodeError (whose repr holds the file's bytes).
    path = binary_file(tmp_path / "blob.jsonl")
    try:
        raise KeyError("outer")
    except KeyError:
        with pytest.raises(InputError) as raised:
            read_text_file(path, what="events_file")
    assert not isinstance(raised.value.__context__, UnicodeDecodeError)


def test_a_byte_order_mark_is_dropped_and_offsets_count_it(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + LINE.encode("utf-8"))
    assert read_text_file(path, what="events_file") == LINE

    path.write_bytes(b"\xef\xbb\xbf" + b"ab\xff")
    with pytest.raises(InputError, match=r"not valid utf-8 at byte 5 "):
        read_text_file(path, what="events_file")


def test_another_encoding_can_be_asked_for(tmp_path: Path) -> None:
    path = cp949_events(tmp_path / "export.jsonl", lines=1)
    assert read_text_file(path, what="export", encoding="cp949") == LINE

    path.write_bytes(b"ok \xff")
    with pytest.raises(InputError, match=r"^export.jsonl: not valid cp949 at byte 3 "):
        read_text_file(path, what="export", encoding="cp949")


def test_a_missing_file_and_a_folder_are_named(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"^events_file 'nope.jsonl' does not exist$"):
        read_text_file("nope.jsonl", what="events_file")
    with pytest.raises(InputError, match=r"^events_file '.+' does not exist$"):
        read_text_file(tmp_path, what="events_file")


# --------------------------------------------------------------------------- the readers


def test_a_bad_json_line_names_line_and_column_never_its_content(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(LINE + '{"note": "' + KOREAN + '", broken}\n', encoding="utf-8")

    with pytest.raises(InputError) as raised:
        read_events_file(str(path))

    assert str(raised.value).startswith("events.jsonl line 2: not JSON (Expecting")
    assert "column" in str(raised.value)
    assert leaks(str(raised.value)) == []
    # JSONDecodeError keeps the whole line in `.doc`: it must not travel with the error.
    assert raised.value.__context__ is None and raised.value.__cause__ is None


def test_events_file_reader_refuses_cp949_and_binary(tmp_path: Path) -> None:
    for path in (cp949_events(tmp_path / "cp949.jsonl"), binary_file(tmp_path / "blob.jsonl")):
        with pytest.raises(InputError) as raised:
            read_events_file(str(path))
        assert str(raised.value).startswith(f"{path.name}: not valid utf-8 at byte ")
        assert raised.value.__context__ is None


def test_csv_table_names_the_byte_offset_and_reads_a_bom(tmp_path: Path) -> None:
    path = tmp_path / "주문.csv"
    table = f'product,note\nTea,"{KOREAN}"\n'
    path.write_bytes(table.encode("cp949"))

    with pytest.raises(InputError) as raised:
        read_table(str(path))

    assert str(raised.value) == (
        "주문.csv: not a readable CSV file: not valid utf-8 at byte 18 "
        "(save it as UTF-8; a CP949/EUC-KR export must be converted)"
    )
    assert raised.value.__context__ is None
    path.write_bytes(b"\xef\xbb\xbf" + table.encode())
    assert read_table(str(path)).to_dict("records") == [{"product": "Tea", "note": KOREAN}]


@pytest.mark.parametrize("position", ["header", "past the first MiB"])
def test_a_large_csv_table_names_the_offset_of_a_cp949_value(tmp_path: Path, position: str) -> None:
    # Arrow reads the header from the first MiB and the rest in blocks; the offset and the words
    # of the refusal stay those of the strict decoding, wherever the bad byte is.
    path = tmp_path / "주문.csv"
    rows = "A1,plain note\n" * 100_000  # 1.4 MB
    if position == "header":
        prefix = "order_id,"
        data = prefix.encode() + "메모\n".encode("cp949") + rows.encode()
    else:
        prefix = "order_id,note\n" + rows + "A2,"
        data = prefix.encode() + f"{KOREAN}\n".encode("cp949")
    path.write_bytes(data)

    with pytest.raises(InputError) as raised:
        read_table(str(path))

    assert str(raised.value) == (
        f"주문.csv: not a readable CSV file: not valid utf-8 at byte {len(prefix.encode())} "
        "(save it as UTF-8; a CP949/EUC-KR export must be converted)"
    )
    assert raised.value.__context__ is None
    assert leaks(repr(raised.value)) == []


# --------------------------------------------------------------------------- the CLI


@pytest.mark.parametrize("make", [cp949_events, binary_file], ids=["cp949", "binary"])
def test_cli_refuses_a_file_that_is_not_utf8_in_one_line(
    prefect_api: str, tmp_path: Path, caplog: pytest.LogCaptureFixture, make
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterExpectedStartTime,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.logging.handlers import APILogHandler

    shutil.copy(ROOT / "moltbot.toml", tmp_path / "moltbot.toml")
    path = make(tmp_path / "events.jsonl")
    # The session's server holds hundreds of runs by now: this test's run is the ticket-creation
    # run expected to start after this moment (a refused run never starts: no start time), and
    # ticket-creation has no schedule that could have made runs for later.
    started = datetime.now(UTC)

    caplog.set_level(logging.DEBUG)
    result = CliRunner().invoke(
        app, ["run", "ticket-creation", "--param", f"events_file={path}", "--dry-run"]
    )

    assert result.exit_code == 2
    assert result.stdout == ""
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: events.jsonl: not valid utf-8 at byte ")
    assert len(result.stderr.encode()) < 500
    assert leaks(result.stdout + result.stderr) == []

    # Neither the log records, nor the log file, nor the run's logs on the Prefect API hold it.
    assert leaks("\n".join(record.getMessage() for record in caplog.records)) == []
    log_file = tmp_path / "home" / "logs" / "moltbot.log"
    assert "not valid utf-8 at byte" in log_file.read_text(encoding="utf-8")
    assert [w for w in leaks(log_file.read_text(encoding="utf-8")) if w != "Traceback"] == []
    APILogHandler().flush()
    with get_client(sync_client=True) as client:
        after = FlowRunFilterExpectedStartTime(after_=started)
        [run] = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["ticket-creation"])),
            flow_run_filter=FlowRunFilter(expected_start_time=after),
        )
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))
    api_text = "\n".join(log.message for log in logs)
    assert "not valid utf-8 at byte" in api_text
    assert [w for w in leaks(api_text) if w != "Traceback"] == []
    assert leaks(run.state.message or "") == []


@pytest.mark.slow
def test_a_real_process_says_one_line_for_a_cp949_events_file(
    prefect_api: str, tmp_path: Path
) -> None:
    import os
    import subprocess
    import sys

    events = tmp_path / "cp949.jsonl"
    events.write_bytes(LINE.encode("cp949"))
    completed = subprocess.run(
        [sys.executable, "-m", "moltbot.cli", "run", "ticket-creation",
         "--param", f"events_file={events}", "--dry-run"],
        capture_output=True, text=True, env={**os.environ, "PREFECT_API_URL": prefect_api},
        cwd=tmp_path, check=False,
    )  # fmt: skip

    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines() == [
        "error: cp949.jsonl: not valid utf-8 at byte "
        + completed.stderr.split("at byte ")[1].split(" ")[0]
        + " (save it as UTF-8; a CP949/EUC-KR export must be converted)"
    ]

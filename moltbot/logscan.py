"""Reading log files incrementally: error lines counted per time window and per signature."""

from __future__ import annotations

import glob
import hashlib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any, Literal

import orjson

from moltbot.masking import mask_text

LogFormatKind = Literal["json", "regex"]
"""How a line is read: a JSON object per line, or a regular expression with named groups."""

DEFAULT_LEVELS: tuple[str, ...] = ("ERROR", "CRITICAL", "FATAL")
CHUNK_BYTES = 8 * 1024 * 1024
"""Bytes read per system call: large enough that a 1 GB file is ~120 reads."""
MAX_LINE_BYTES = 256 * 1024
"""Only the first this many bytes of a longer line are looked at (a stack trace in one line)."""
HEAD_BYTES = 1024
"""The first bytes of a file whose digest tells a file apart from a new one with the same inode."""
MAX_SIGNATURES_PER_WINDOW = 200
"""Distinct signatures kept per window and scan; the rest are counted under `OTHER_SIGNATURE`."""
OTHER_SIGNATURE = "<other>"
SAMPLE_MAX_CHARS = 300
SIGNATURE_MAX_CHARS = 200
# Compressed rotations (`app.log.1.gz`) hold lines already read from the live file.
COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz", ".zst", ".zip")


# --------------------------------------------------------------------------- signatures

_NORMALISERS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"), "<email>"),
    (
        re.compile(
            r"(?<![0-9A-Za-z])[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}"
            r"-[0-9a-fA-F]{12}(?![0-9A-Za-z])"
        ),
        "<uuid>",
    ),
    (re.compile(r"(?<![0-9A-Za-z])0[xX][0-9a-fA-F]+(?![0-9A-Za-z])"), "<hex>"),
    # A run of 8+ hex digits with a digit and a letter in it: a digest, a trace or object id.
    (
        re.compile(
            r"(?<![0-9A-Za-z])(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{8,}"
            r"(?![0-9A-Za-z])"
        ),
        "<hex>",
    ),
    # A token of letters and digits (`ord_8812`, `u123`, `INV-2024-0001`): an id. A number
    # followed by a unit (`1500ms`, `3s`) stays a number.
    (
        re.compile(
            r"(?<![0-9A-Za-z_-])(?=[A-Za-z0-9_-]*\d)[A-Za-z][A-Za-z0-9]*(?:[-_][A-Za-z0-9]+)*"
            r"(?![0-9A-Za-z_-])"
        ),
        "<id>",
    ),
    # Joined numbers (a phone number, a date, a version, an IP address) are one `<n>`.
    (re.compile(r"(?<![0-9A-Za-z])\d+(?:[-.,:/]\d+)*"), "<n>"),
)
_SPACES = re.compile(r"\s+")


def signature_of(message: str) -> str:
    """The message with what varies between occurrences normalised away.

    E-mail addresses become `<email>`, UUIDs `<uuid>`, hex numbers and digests `<hex>`, tokens
    mixing letters and digits `<id>`, other numbers (joined by `-.,:/` too) `<n>`; white
    space is collapsed.
    `user kim@example.com failed after 1532 ms` -> `user <email> failed after <n> ms`.
    """
    text = message
    for pattern, placeholder in _NORMALISERS:
        text = pattern.sub(placeholder, text)
    return _SPACES.sub(" ", text).strip()[:SIGNATURE_MAX_CHARS]


# --------------------------------------------------------------------------- formats


@dataclass(frozen=True)
class LogFormat:
    """How to find an error line, its time and its message.

    Attributes:
        kind: `json` (one object per line) or `regex` (plain lines).
        levels: the error levels, upper-case; compared without case, and found in the raw
            bytes first in upper, lower or capitalised spelling (the fast pre-filter).
        level_field: the JSON field holding the level (`log.level` may also be a nested path).
        timestamp_field: the JSON field holding the time (ISO 8601 text or epoch seconds/ms).
        message_field: the JSON field holding the message (else the whole line).
        pattern: for `regex`, a pattern with a `level` group and optional `timestamp` and
            `message` groups, searched in each candidate line.
        timestamp_format: a `strptime` format for the time text (default ISO 8601 or epoch).
        timezone: the zone of times written without an offset.
    """

    kind: LogFormatKind
    levels: tuple[str, ...] = DEFAULT_LEVELS
    level_field: str = "level"
    timestamp_field: str = "timestamp"
    message_field: str = "message"
    pattern: re.Pattern[str] | None = None
    timestamp_format: str | None = None
    timezone: tzinfo = UTC

    def prefilter(self) -> re.Pattern[bytes]:
        """A bytes pattern every error line matches: one of the level spellings.

        In JSON a level name is a quoted string (`"error"`), which the word in a message
        ("retrying after error") is not: searching with the quotes keeps most non-error lines
        away from the JSON parser. A numeric level (pino's 50) is searched bare. One pattern
        of alternatives scans the bytes once, where a search per spelling would scan them
        nine times.
        """
        spellings = {
            variant
            for level in self.levels
            for variant in (level.upper(), level.lower(), level.capitalize())
        }
        quoted = self.kind == "json"
        alternatives = sorted(
            re.escape(f'"{spelling}"' if quoted and not spelling.isdigit() else spelling)
            for spelling in spellings
        )
        return re.compile("|".join(alternatives).encode("utf-8"))


def parse_epoch(value: Any, fmt: str | None, zone: tzinfo) -> float | None:
    """Seconds since the epoch of a log line's time, or None when it cannot be read.

    Numbers are epoch seconds (milliseconds above 10^11); text is read with `fmt`, else as
    ISO 8601 (`2026-03-01T09:00:00Z`, `2026-03-01 09:00:00,123`), else as a number. Times
    without an offset are in `zone`.
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        number = float(value)
        return number / 1000 if abs(number) > 1e11 else number
    if not isinstance(value, str):
        return None
    text = value.strip()
    try:
        if fmt:
            moment = datetime.strptime(text, fmt)
        else:
            # Python's logging writes `2026-03-01 09:00:00,123`.
            moment = datetime.fromisoformat(text.replace(",", ".", 1) if "," in text else text)
    except ValueError:
        try:
            return parse_epoch(float(text), None, zone)
        except ValueError:
            return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.timestamp()


# --------------------------------------------------------------------------- counting


@dataclass
class ScanStats:
    """What a scan saw, for the run report (counts only, never content)."""

    files: int = 0
    bytes_read: int = 0
    lines: int = 0
    error_lines: int = 0
    untimed: int = 0
    undecodable: int = 0
    oversized: int = 0
    unparsable: int = 0
    rotated: int = 0
    truncated: int = 0
    replaced: int = 0

    def add(self, other: ScanStats) -> None:
        """Add `other`'s figures to these."""
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class Tally:
    """Error lines counted per window (index = epoch seconds // window seconds) and signature.

    Attributes:
        window_seconds: the window length.
        counts: window index -> error lines.
        signatures: (window index, signature) -> error lines.
        samples: signature -> one masked message showing it.
    """

    window_seconds: int
    counts: dict[int, int] = field(default_factory=dict)
    signatures: dict[tuple[int, str], int] = field(default_factory=dict)
    samples: dict[str, str] = field(default_factory=dict)
    _per_window: dict[int, int] = field(default_factory=dict, repr=False)
    _masked: dict[str, str] = field(default_factory=dict, repr=False)

    def add(self, epoch: float, message: str, amount: int = 1) -> None:
        """Count `amount` error lines at `epoch` with this message."""
        window = int(epoch // self.window_seconds)
        self.counts[window] = self.counts.get(window, 0) + amount
        self.add_signature(window, message, amount)

    def add_signature(self, window: int, message: str, amount: int = 1) -> None:
        """Count `amount` lines of this message's signature in `window` (not in `counts`)."""
        normalised = signature_of(message) or OTHER_SIGNATURE
        # Signatures are shown and stored like samples, so they are masked too (a secret or a
        # card number may survive normalisation); they repeat, so each is masked once.
        signature = self._masked.get(normalised)
        if signature is None:
            # Secrets are masked in the message before it is normalised: a placeholder can
            # split one (`token=<hex>-rest`) where masking no longer sees it whole. Addresses
            # and phone numbers are left to the normalisers (`<email>`, `<n>`). The messages
            # of one signature differ only where normalised away, so the first one will do.
            kept = mask_text(message, emails="keep", phones=False)
            signature = mask_text(signature_of(kept) or OTHER_SIGNATURE)
            self._masked[normalised] = signature
        key = (window, signature)
        if key not in self.signatures:
            if self._per_window.get(window, 0) >= MAX_SIGNATURES_PER_WINDOW:
                key = (window, OTHER_SIGNATURE)
            else:
                self._per_window[window] = self._per_window.get(window, 0) + 1
        self.signatures[key] = self.signatures.get(key, 0) + amount
        if key[1] not in self.samples:
            self.samples[key[1]] = mask_text(_SPACES.sub(" ", message).strip())[:SAMPLE_MAX_CHARS]

    @property
    def total(self) -> int:
        """Error lines counted."""
        return sum(self.counts.values())


# --------------------------------------------------------------------------- files


@dataclass(frozen=True)
class FileCursor:
    """How far one file (device + inode) has been read.

    Attributes:
        device: the file system's device number (text: it may not fit a signed 64-bit column).
        inode: the file's inode number (text, as above).
        path: where the file was last seen.
        offset: bytes consumed: every complete line before it is counted.
        head_digest: SHA-256 of the first `head_length` bytes, to tell the file from a new one
            that reuses its inode.
        head_length: how many bytes `head_digest` covers (at most `HEAD_BYTES`).
    """

    device: str
    inode: str
    path: str
    offset: int
    head_digest: str
    head_length: int

    @property
    def identity(self) -> tuple[str, str]:
        """(device, inode): what stays the same when a file is renamed by rotation."""
        return (self.device, self.inode)


@dataclass
class ScanResult:
    """One source's scan: the new cursors of the files it read, the tally, the figures."""

    cursors: list[FileCursor]
    tally: Tally
    stats: ScanStats
    matched_nothing: list[str]


def matching_files(patterns: Iterable[str]) -> tuple[list[Path], list[str]]:
    """The regular files the glob patterns match (compressed rotations left out), oldest
    first, each once; and the patterns that matched none."""
    found: dict[str, Path] = {}
    empty: list[str] = []
    for pattern in patterns:
        hits = [
            Path(name)
            for name in glob.glob(os.path.expanduser(pattern), recursive=True)
            if not name.endswith(COMPRESSED_SUFFIXES) and os.path.isfile(name)
        ]
        if not hits:
            empty.append(pattern)
        for path in hits:
            found.setdefault(str(path.resolve()), path)

    def modified(path: Path) -> float:
        try:
            return path.stat().st_mtime
        except OSError:
            return 0.0

    # Oldest first: the rest of a rotated file is read before the file that replaced it.
    return sorted(found.values(), key=modified), empty


def scan_files(
    patterns: Iterable[str],
    stored: Mapping[tuple[str, str], FileCursor],
    log_format: LogFormat,
    *,
    window_seconds: int,
    now_epoch: float,
    chunk_bytes: int = CHUNK_BYTES,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> ScanResult:
    """Read what is new in every file the patterns match and count its error lines.

    A file is known by (device, inode), not by path: a file renamed by rotation keeps its
    cursor and only its rest is read, and the new file at the old path starts at 0. A file
    shorter than its cursor was truncated and is read from 0; a file whose first bytes
    changed is a new file reusing the inode and is read from 0. An unfinished last line (no
    newline yet) is left for the next scan.

    Args:
        patterns: glob patterns (`/var/log/app/*.log*`, `~` expanded).
        stored: the cursors saved by the last scan, by (device, inode).
        log_format: how lines are read.
        window_seconds: the counting window.
        now_epoch: the scan's time: lines without a readable time count in its window.
        chunk_bytes: bytes per read.
        max_line_bytes: longer lines are judged on their first this many bytes.

    Returns:
        The cursors of every file matched (those of files no longer matched are dropped), the
        tally of new error lines, the figures, and the patterns that matched nothing.
    """
    paths, empty = matching_files(patterns)
    tally = Tally(window_seconds)
    stats = ScanStats()
    cursors: list[FileCursor] = []
    seen: set[tuple[str, str]] = set()
    for path in paths:
        cursor = scan_file(
            path,
            stored,
            log_format,
            tally,
            stats,
            now_epoch=now_epoch,
            chunk_bytes=chunk_bytes,
            max_line_bytes=max_line_bytes,
        )
        if cursor is not None and cursor.identity not in seen:
            seen.add(cursor.identity)
            cursors.append(cursor)
    return ScanResult(cursors=cursors, tally=tally, stats=stats, matched_nothing=empty)


def _head_digest(handle: Any, length: int) -> str:
    handle.seek(0)
    return hashlib.sha256(handle.read(length)).hexdigest()


def scan_file(
    path: Path,
    stored: Mapping[tuple[str, str], FileCursor],
    log_format: LogFormat,
    tally: Tally,
    stats: ScanStats,
    *,
    now_epoch: float,
    chunk_bytes: int = CHUNK_BYTES,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> FileCursor | None:
    """Count the new error lines of one file into `tally`; its new cursor (None: unreadable,
    e.g. deleted between the glob and the open)."""
    try:
        handle = path.open("rb")
    except OSError:
        return None
    with handle:
        status = os.fstat(handle.fileno())
        identity = (str(status.st_dev), str(status.st_ino))
        previous = stored.get(identity)
        offset = 0
        if previous is not None:
            if status.st_size < previous.offset:
                stats.truncated += 1
            elif _head_digest(handle, previous.head_length) != previous.head_digest:
                stats.replaced += 1
            else:
                offset = previous.offset
                if previous.path != str(path):
                    stats.rotated += 1
        stats.files += 1
        consumed = _read_from(
            handle, offset, log_format, tally, stats, now_epoch, chunk_bytes, max_line_bytes
        )
        head_length = min(consumed, HEAD_BYTES)
        if previous is not None and offset and previous.head_length == head_length:
            digest = previous.head_digest
        else:
            digest = _head_digest(handle, head_length)
    return FileCursor(
        device=identity[0],
        inode=identity[1],
        path=str(path),
        offset=consumed,
        head_digest=digest,
        head_length=head_length,
    )


def _read_from(
    handle: Any,
    offset: int,
    log_format: LogFormat,
    tally: Tally,
    stats: ScanStats,
    now_epoch: float,
    chunk_bytes: int,
    max_line_bytes: int,
) -> int:
    """Read from `offset` to the end; return the offset after the last complete line."""
    handle.seek(offset)
    consumed = offset
    carry = b""
    # While a line longer than `max_line_bytes` has no newline yet, its head is kept in
    # `carry` and the rest is skipped, so memory stays bounded by the cap.
    skipping = 0
    prefilter = log_format.prefilter()
    while True:
        chunk = handle.read(chunk_bytes)
        if not chunk:
            break
        stats.bytes_read += len(chunk)
        if skipping:
            newline = chunk.find(b"\n")
            if newline == -1:
                skipping += len(chunk)
                continue
            # The long line ends here: judge it on its head.
            consumed += len(carry) + skipping + newline + 1
            _count_block(
                carry + b"\n", log_format, prefilter, tally, stats, now_epoch, max_line_bytes
            )
            stats.oversized += 1
            carry, skipping = b"", 0
            chunk = chunk[newline + 1 :]
        data = carry + chunk if carry else chunk
        last_newline = data.rfind(b"\n")
        if last_newline == -1:
            carry = data
        else:
            block = data[: last_newline + 1]
            _count_block(block, log_format, prefilter, tally, stats, now_epoch, max_line_bytes)
            consumed += len(block)
            carry = data[last_newline + 1 :]
        if len(carry) > max_line_bytes:
            skipping = len(carry) - max_line_bytes
            carry = carry[:max_line_bytes]
    return consumed


def _count_block(
    block: bytes,
    log_format: LogFormat,
    prefilter: re.Pattern[bytes],
    tally: Tally,
    stats: ScanStats,
    now_epoch: float,
    max_line_bytes: int,
) -> None:
    """Count the error lines of `block` (complete lines, ending with a newline).

    Only lines holding one of the level spellings are parsed: with errors a few percent of a
    log, the bytes search (C speed) skips nearly everything and Python sees only candidates.
    (The pre-filter looks at the whole line, the parser at its first `max_line_bytes`.)
    """
    stats.lines += block.count(b"\n")
    search = prefilter.search
    match = search(block)
    while match is not None:
        position = match.start()
        start = block.rfind(b"\n", 0, position) + 1
        line_end = block.find(b"\n", position)
        end = line_end
        if end - start > max_line_bytes:
            stats.oversized += 1
            end = start + max_line_bytes
        line = block[start:end].rstrip(b"\r")
        if log_format.kind == "json":
            _count_json_line(line, log_format, tally, stats, now_epoch)
        else:
            _count_regex_line(line, log_format, tally, stats, now_epoch)
        # On to the next line: one look at each candidate line, however many spellings it has.
        match = search(block, line_end + 1)


def _decoded(line: bytes, stats: ScanStats) -> str:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        stats.undecodable += 1
        return line.decode("utf-8", "replace")


def _field(record: dict[str, Any], name: str) -> Any:
    """`record[name]`, else the nested path `a.b` (`log.level` is flat in ECS, nested elsewhere)."""
    if name in record:
        return record[name]
    value: Any = record
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


_JSON_STRING = rb'"((?:[^"\\]|\\.)*)"'


def _loose_field(line: bytes, name: str) -> Any:
    """A field's value from a line that is not valid JSON (cut, or with bytes around it)."""
    pattern = re.compile(
        b'"' + re.escape(name.encode("utf-8")) + rb'"\s*:\s*(?:' + _JSON_STRING + rb"|([-+\w.:]+))"
    )
    match = pattern.search(line)
    if match is None:
        return None
    if match.group(1) is not None:
        try:
            return orjson.loads(b'"' + match.group(1) + b'"')
        except orjson.JSONDecodeError:
            return match.group(1).decode("utf-8", "replace")
    raw = match.group(2).decode("ascii", "replace")
    try:
        return float(raw) if any(c in raw for c in ".eE") else int(raw)
    except ValueError:
        return raw


def _count_json_line(
    line: bytes, log_format: LogFormat, tally: Tally, stats: ScanStats, now_epoch: float
) -> None:
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        record = None
        text = _decoded(line, stats)
        try:
            record = orjson.loads(text)
        except orjson.JSONDecodeError:
            record = None
    if isinstance(record, dict):
        level = _field(record, log_format.level_field)
        stamp = _field(record, log_format.timestamp_field)
        message = _field(record, log_format.message_field)
    else:
        level = _loose_field(line, log_format.level_field)
        if level is None:
            stats.unparsable += 1
            return
        stamp = _loose_field(line, log_format.timestamp_field)
        message = _loose_field(line, log_format.message_field)
    if level is None or str(level).upper() not in log_format.levels:
        return
    if not isinstance(message, str):
        message = _decoded(line, ScanStats()) if message is None else str(message)
    _count_error(stamp, message, log_format, tally, stats, now_epoch)


def _count_regex_line(
    line: bytes, log_format: LogFormat, tally: Tally, stats: ScanStats, now_epoch: float
) -> None:
    assert log_format.pattern is not None
    text = _decoded(line, stats)
    match = log_format.pattern.search(text)
    if match is None:
        stats.unparsable += 1
        return
    groups = match.groupdict()
    level = groups.get("level")
    if level is None or level.upper() not in log_format.levels:
        return
    _count_error(
        groups.get("timestamp"), groups.get("message") or text, log_format, tally, stats, now_epoch
    )


def _count_error(
    stamp: Any,
    message: str,
    log_format: LogFormat,
    tally: Tally,
    stats: ScanStats,
    now_epoch: float,
) -> None:
    epoch = parse_epoch(stamp, log_format.timestamp_format, log_format.timezone)
    if epoch is None:
        stats.untimed += 1
        epoch = now_epoch
    stats.error_lines += 1
    tally.add(epoch, message)

"""Reading a user's text file strictly: bad bytes are named by offset, never shown."""

from __future__ import annotations

import codecs
from pathlib import Path

from moltbot.errors import InputError

_UTF8_BOM = codecs.BOM_UTF8


def read_text_file(path: str | Path, *, what: str, encoding: str = "utf-8") -> str:
    """The text of a user's file, decoded strictly; a UTF-8 byte-order mark is dropped.

    Args:
        path: the file.
        what: how the user gave it (a parameter name such as ``events_file``), for messages.
        encoding: the encoding the file must be in.

    Raises:
        InputError: a missing or unreadable file, or bytes that are not valid `encoding` (the
            message names the file, the encoding and the byte offset, never the content).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} {str(path)!r} does not exist")
    try:
        data = path.read_bytes()
    except OSError as exc:
        message = f"{what} {path.name}: unreadable ({type(exc).__name__})"
    else:
        text, offset = decode_strictly(data, encoding)
        if text is not None:
            return text
        message = f"{path.name}: {not_valid(encoding, offset)}"
    # Raised outside the except block, so nothing is chained to it: a UnicodeDecodeError's
    # repr holds the file's bytes, and Prefect logs exceptions with their repr.
    raise InputError(message)


def not_valid(encoding: str, offset: int) -> str:
    return (
        f"not valid {encoding} at byte {offset} "
        "(save it as UTF-8; a CP949/EUC-KR export must be converted)"
    )


def decode_strictly(data: bytes, encoding: str) -> tuple[str | None, int]:
    """The decoded text and 0, or None and the offset (in `data`) of the first bad byte."""
    skipped = 0
    # Spreadsheet and Windows editors often start UTF-8 files with a byte-order mark. It is
    # stripped here rather than with "utf-8-sig", whose error offsets would not count it.
    if codecs.lookup(encoding).name == "utf-8" and data.startswith(_UTF8_BOM):
        skipped = len(_UTF8_BOM)
    try:
        return data[skipped:].decode(encoding), 0
    except UnicodeDecodeError as exc:
        return None, skipped + exc.start

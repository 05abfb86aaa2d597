"""The project config file (`moltbot.toml` in the working directory): its tables and key lines."""

from __future__ import annotations

import copy
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moltbot.errors import InputError
from moltbot.textfiles import read_text_file

CONFIG_FILE_NAME = "moltbot.toml"

# One TOML key: bare, "basic" (with escapes) or 'literal'.
_SIMPLE_KEY = r"""(?:[A-Za-z0-9_\-]+|"(?:[^"\\\n]|\\.)*"|'[^'\n]*')"""
_DOTTED_KEY = rf"{_SIMPLE_KEY}(?:\s*\.\s*{_SIMPLE_KEY})*"
_TABLE_HEADER = re.compile(rf"^\s*(?P<open>\[\[?)\s*(?P<key>{_DOTTED_KEY})\s*\]\]?\s*(?:#.*)?$")
_KEY_LINE = re.compile(rf"^\s*(?P<key>{_DOTTED_KEY})\s*=(?P<value>.*)$")

# A key path: table and key names, with the index of an array-of-tables entry.
KeyPath = tuple[str | int, ...]

# Parsed documents by their text: a run reads the file once per route lookup and effects
# runtime, and parsing it (TOML, then the line scan) costs ~8 ms where reading it costs ~0.1 ms.
_PARSED: dict[str, tuple[dict[str, Any], dict[KeyPath, int], dict[KeyPath, int]]] = {}
_PARSED_MAX = 16


@dataclass(frozen=True)
class ProjectConfig:
    """The parsed `moltbot.toml` and where each table and key is written in it.

    tomllib keeps no positions, so the text is scanned once for table headers and ``key =``
    lines: good enough to point an error at the right line (keys inside inline tables take the
    line of the key that holds the inline table).

    Attributes:
        path: the file (it may not exist: then `data` is empty).
        data: the parsed document.
        found: whether the file exists.
    """

    path: Path
    data: dict[str, Any]
    found: bool
    _lines: dict[KeyPath, int] = field(default_factory=dict, repr=False)
    _value_starts: dict[KeyPath, int] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, path: str | Path | None = None) -> ProjectConfig:
        """Read `path` (default: `moltbot.toml` in the working directory); absent is empty.

        Raises:
            InputError: the file is not valid TOML (tomllib's message names line and column).
        """
        path = Path(path) if path is not None else Path.cwd() / CONFIG_FILE_NAME
        if not path.is_file():
            return cls(path=path, data={}, found=False)
        text = read_text_file(path, what="config")
        parsed = _PARSED.get(text)
        if parsed is None:
            try:
                data = tomllib.loads(text)
            except tomllib.TOMLDecodeError as exc:
                raise InputError(f"{path.name}: not valid TOML: {exc}") from None
            parsed = (data, *_scan(text))
            if len(_PARSED) >= _PARSED_MAX:
                _PARSED.clear()
            _PARSED[text] = parsed
        data, lines, starts = parsed
        # Each caller gets its own copy of the document, as if it had parsed the file itself.
        return cls(
            path=path, data=copy.deepcopy(data), found=True, _lines=lines, _value_starts=starts
        )

    def table(self, *keys: str) -> dict[str, Any] | None:
        """The table at `keys` (``table("ticket_creation", "mappings")``), or None.

        Raises:
            InputError: something other than a table is written there.
        """
        value: Any = self.data
        for depth, key in enumerate(keys):
            if not isinstance(value, dict):
                name = ".".join(keys[:depth])
                raise InputError(f"{self.where(*keys[:depth])}: '{name}' is not a table")
            if key not in value:
                return None
            value = value[key]
        if not isinstance(value, dict):
            raise InputError(f"{self.where(*keys)}: '{'.'.join(keys)}' must be a table")
        return value

    def line_of(self, *keys: str | int) -> int | None:
        """The line (1-based) where `keys` is written, else that of its nearest written parent."""
        for end in range(len(keys), 0, -1):
            line = self._lines.get(tuple(keys[:end]))
            if line is not None:
                return line
        return None

    def value_line(self, keys: KeyPath, line_in_value: int) -> int | None:
        """The file line of line `line_in_value` (1-based) of the string written at `keys`.

        A multi-line string whose opening quotes end their line starts on the next line, as TOML
        drops that first newline.
        """
        start = self._value_starts.get(tuple(keys))
        if start is None:
            return self.line_of(*keys)
        return start + max(line_in_value, 1) - 1

    def where(self, *keys: str | int, line: int | None = None) -> str:
        """``moltbot.toml line 14`` for `keys` (or the given `line`); the bare name if unknown."""
        line = line if line is not None else self.line_of(*keys)
        return f"{self.path.name} line {line}" if line is not None else self.path.name


def _parse_key(text: str) -> tuple[str, ...]:
    """The parts of a dotted TOML key, decoded by tomllib itself (quotes and escapes)."""
    parsed: Any = tomllib.loads(f"{text} = 0")
    parts: list[str] = []
    while isinstance(parsed, dict):
        [(name, parsed)] = parsed.items()
        parts.append(name)
    return tuple(parts)


def _scan(text: str) -> tuple[dict[KeyPath, int], dict[KeyPath, int]]:
    """Line of every table header and ``key =`` line; first line of multi-line string values."""
    lines: dict[KeyPath, int] = {}
    starts: dict[KeyPath, int] = {}
    arrays: dict[tuple[str, ...], int] = {}
    table: KeyPath = ()
    closing: str | None = None  # the delimiter of the multi-line string we are inside
    for number, line in enumerate(text.splitlines(), start=1):
        if closing is not None:
            if closing in line:
                closing = None
            continue
        if header := _TABLE_HEADER.match(line):
            keys = _parse_key(header["key"])
            if header["open"] == "[[":
                arrays[keys] = arrays.get(keys, -1) + 1
                table = (*keys, arrays[keys])
            else:
                table = keys
            lines.setdefault(table, number)
            continue
        if found := _KEY_LINE.match(line):
            keys = (*table, *_parse_key(found["key"]))
            lines.setdefault(keys, number)
            value = found["value"].strip()
            for quotes in ('"""', "'''"):
                if value.startswith(quotes):
                    rest = value[len(quotes) :]
                    starts[keys] = number + 1 if not rest.strip() else number
                    if quotes not in rest:
                        closing = quotes
                    break
            else:
                starts.setdefault(keys, number)
    return lines, starts

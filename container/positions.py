"""Where in a JSON file each key and value starts (line and column), and a problem located there.

A person fixing a configuration needs ``FILE:LINE:COLUMN: path: what is wrong``, not a JSON
pointer. stdlib :mod:`json` stays the parser of record; a small scanner walks the text json
already accepted and notes where each key and value starts (no dependency of ours supplies
source maps, and the scanner is a few dozen lines).
"""

from __future__ import annotations

import bisect
import json
import re
from dataclasses import dataclass
from json.decoder import scanstring  # type: ignore[attr-defined]  # not in typeshed
from pathlib import Path

from container.validation import Finding, JsonPath, format_key_path

__all__ = ["Problem", "SourceMap", "line_starts", "locate"]


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a configuration file, located for the person who has to fix it."""

    file: str
    line: int
    column: int
    path: JsonPath
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        return f"{where}: {format_key_path(self.path)}: {self.message}"


def locate(finding: Finding, source: SourceMap, file: str) -> Problem:
    """A finding at the position of its key (or value) in the file it came from."""
    line, column = source.position(finding.path, at_key=finding.at_key)
    return Problem(file, line, column, finding.path, finding.message)


_WHITESPACE = re.compile(r"[ \t\n\r]*")
_SCALARS = json.JSONDecoder()


class _PositionScanner:
    """Walks JSON text that stdlib json already accepted, noting where each key and value starts.

    Only offsets are collected; values come from ``json.loads``. Duplicate keys are remembered
    because json silently keeps the last one, which hides a mistake in a configuration.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.values: dict[JsonPath, int] = {}
        self.keys: dict[JsonPath, int] = {}
        self.duplicates: list[tuple[JsonPath, int]] = []

    def skip(self, pos: int) -> int:
        match = _WHITESPACE.match(self.text, pos)
        return match.end() if match else pos

    def value(self, pos: int, path: JsonPath) -> int:
        pos = self.skip(pos)
        self.values[path] = pos
        char = self.text[pos]
        if char == "{":
            return self.object(pos + 1, path)
        if char == "[":
            return self.array(pos + 1, path)
        if char == '"':
            end: int = scanstring(self.text, pos + 1)[1]
            return end
        return _SCALARS.raw_decode(self.text, pos)[1]

    def object(self, pos: int, path: JsonPath) -> int:
        first_seen: dict[str, int] = {}
        pos = self.skip(pos)
        if self.text[pos] == "}":
            return pos + 1
        while True:
            key, end = scanstring(self.text, self.skip(pos) + 1)
            key_path = (*path, key)
            self.keys[key_path] = self.skip(pos)
            if key in first_seen:
                self.duplicates.append((key_path, first_seen[key]))
            first_seen.setdefault(key, self.keys[key_path])
            pos = self.skip(self.value(self.skip(end) + 1, key_path))
            if self.text[pos] == "}":
                return pos + 1
            pos += 1

    def array(self, pos: int, path: JsonPath) -> int:
        pos = self.skip(pos)
        if self.text[pos] == "]":
            return pos + 1
        index = 0
        while True:
            pos = self.skip(self.value(pos, (*path, index)))
            if self.text[pos] == "]":
                return pos + 1
            pos, index = pos + 1, index + 1


@dataclass(frozen=True)
class SourceMap:
    """Where each key and value of a parsed JSON document starts, as line and column (1-based)."""

    values: dict[JsonPath, int]
    keys: dict[JsonPath, int]
    duplicates: list[tuple[JsonPath, int]]
    line_starts: list[int]

    @classmethod
    def of(cls, text: str) -> SourceMap:
        scanner = _PositionScanner(text)
        scanner.value(0, ())
        return cls(scanner.values, scanner.keys, scanner.duplicates, line_starts(text))

    def line_column(self, offset: int) -> tuple[int, int]:
        line = bisect.bisect_right(self.line_starts, offset)
        return line, offset - self.line_starts[line - 1] + 1

    def position(self, path: JsonPath, *, at_key: bool = False) -> tuple[int, int]:
        """The key (or value) at ``path``; for a path that does not exist, its nearest ancestor."""
        if at_key and path in self.keys:
            return self.line_column(self.keys[path])
        while path not in self.values and path:
            path = path[:-1]
        return self.line_column(self.values.get(path, 0))


def line_starts(text: str) -> list[int]:
    return [0, *(match.end() for match in re.finditer("\n", text))]


def locate_in_file(file: str, findings: list[Finding]) -> list[Problem]:
    """Findings made elsewhere (key paths: Crossbar.io's, from a router child) at their places
    in ``file``, read again now."""
    try:
        source = SourceMap.of(Path(file).read_text(encoding="utf-8-sig"))
    except (OSError, ValueError):  # changed since it was checked: say it without positions
        return [Problem(file, 1, 1, finding.path, finding.message) for finding in findings]
    return [locate(finding, source, file) for finding in findings]

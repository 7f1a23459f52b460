"""What every configuration check shares: one way to write where in a document a problem is,
and where in the file that place is (line and column).

A key path reads like the document: ``workers[1].options.restart``; a key that is not a plain
name is quoted (``paths["/"]``); the document itself is ``(root)``.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from json.decoder import scanstring

__all__ = ["JsonPath", "KeyPath", "SourceMap", "format_key_path", "line_starts"]

KeyPath = Sequence[str | int]
JsonPath = tuple[str | int, ...]

_PLAIN_KEY = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$-]*$")


def format_key_path(path: KeyPath, root: str = "") -> str:
    """``("workers", 1, "options", "restart")`` -> ``workers[1].options.restart``."""
    text = root
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _PLAIN_KEY.match(part):
            text += f".{part}" if text else part
        else:
            text += f"[{json.dumps(part, ensure_ascii=False)}]"
    return text or "(root)"


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
            return scanstring(self.text, pos + 1)[1]
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

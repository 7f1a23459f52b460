"""Benchmark components: the same classes run in our container and in Crossbar.io's.

Stamps go to the file named by ``extra["stamp_file"]`` (one line per event, appended with a
single ``write`` so lines from many components never interleave): ``EVENT KEY MONOTONIC``,
where MONOTONIC is ``time.monotonic()`` (CLOCK_MONOTONIC: one clock for every process of the
machine, so the runner can compare it with its own launch time).
"""

from __future__ import annotations

import os
import time
from typing import Any, ClassVar

from autobahn.twisted.wamp import ApplicationSession


def stamp(extra: dict[str, Any] | None, event: str, key: str) -> None:
    """Append ``EVENT KEY T`` to the stamp file, if the component has one."""
    path = (extra or {}).get("stamp_file")
    if not path:
        return
    line = f"{event} {key} {time.monotonic():.6f}\n".encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


class Quiet(ApplicationSession):
    """Joins and does nothing: the cheapest component (API start, memory)."""


class Stamp(ApplicationSession):
    """Writes ``join KEY T`` once joined (node cold start)."""

    def onJoin(self, details: Any) -> None:
        extra = self.config.extra or {}
        stamp(extra, "join", str(extra.get("key", "")))


class CrashOnce(ApplicationSession):
    """Joins, then aborts its transport ``crash_after`` seconds later, once per ``key``.

    Writes ``crash KEY T`` just before the abort and ``join KEY T`` on every join, so the
    first restart's latency is the first ``join`` after the ``crash`` of the same key.
    """

    crashed: ClassVar[set[str]] = set()

    def onJoin(self, details: Any) -> None:
        extra = self.config.extra or {}
        key = str(extra.get("key", ""))
        stamp(extra, "join", key)
        if key not in CrashOnce.crashed:
            from twisted.internet import reactor

            reactor.callLater(float(extra.get("crash_after", 0.5)), self._crash, key)

    def _crash(self, key: str) -> None:
        CrashOnce.crashed.add(key)
        stamp(self.config.extra, "crash", key)
        self._transport.transport.abortConnection()


class CrashLoop(ApplicationSession):
    """Joins, then drops its transport right away, every time: a crash loop."""

    def onJoin(self, details: Any) -> None:
        from twisted.internet import reactor

        extra = self.config.extra or {}
        stamp(extra, "join", str(extra.get("key", "")))
        reactor.callLater(0, self._transport.transport.abortConnection)

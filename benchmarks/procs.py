"""Child processes of the benchmark: spawned with Twisted, read line by line, stopped by pid.

Every child is registered in :data:`CHILDREN` when it is spawned. :meth:`Child.stop` sends
SIGTERM to the child, waits for it (bounded), then SIGKILLs it, and does the same to every
descendant it had (a node's router and worker processes) that outlives it.
:func:`kill_all_sync` is the last resort the runner calls on its way out, whatever happened,
so no process the benchmark started survives it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

#: Every child spawned and not yet known to be gone (pid -> Child).
CHILDREN: dict[int, Child] = {}
#: Every descendant of a child seen so far (pid -> process), whether or not its parent is gone.
DESCENDANTS: dict[int, psutil.Process] = {}

STOP_TIMEOUT = 20.0
_STDERR_TAIL = 32_768


class ChildError(RuntimeError):
    """A child exited or stayed silent when the benchmark needed it."""


def sleep(seconds: float) -> Deferred[None]:
    return deferLater(reactor, seconds, lambda: None)


class Child(ProcessProtocol):
    """One child process: stdout as lines, stderr into a log file, ``exited`` with its code."""

    def __init__(self, name: str, log_path: Path | None) -> None:
        self.name = name
        self.pid: int | None = None
        self.lines: list[str] = []
        self.exit_code: int | None = None
        self.exited: Deferred[int] = Deferred()
        self._buffer = b""
        self._stderr_tail = b""
        self._log = open(log_path, "ab") if log_path else None  # noqa: SIM115 - closed on exit
        self._waiters: list[tuple[Callable[[str], bool], Deferred[str]]] = []
        self._descendants: list[psutil.Process] = []

    # -- ProcessProtocol -------------------------------------------------------------------

    def outReceived(self, data: bytes) -> None:
        self._buffer += data
        while b"\n" in self._buffer:
            raw, self._buffer = self._buffer.split(b"\n", 1)
            line = raw.decode("utf-8", "replace")
            self.lines.append(line)
            for waiter in list(self._waiters):
                predicate, deferred = waiter
                if predicate(line):
                    self._waiters.remove(waiter)
                    deferred.callback(line)

    def errReceived(self, data: bytes) -> None:
        self._stderr_tail = (self._stderr_tail + data)[-_STDERR_TAIL:]
        if self._log is not None:
            self._log.write(data)

    def processEnded(self, reason: Failure) -> None:
        status = reason.value
        code = status.exitCode if status.exitCode is not None else -(status.signal or 0)
        self.exit_code = code
        if self._log is not None:
            self._log.close()
        if self.pid is not None:
            CHILDREN.pop(self.pid, None)
        for _, deferred in self._waiters:
            deferred.errback(ChildError(f"{self.name} exited with {code}: {self.stderr_tail()}"))
        self._waiters.clear()
        self.exited.callback(code)

    # -- use ------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.exit_code is None

    def stderr_tail(self, lines: int = 15) -> str:
        text = self._stderr_tail.decode("utf-8", "replace")
        return "\n".join(text.splitlines()[-lines:])

    async def wait_line(self, predicate: Callable[[str], bool], timeout: float) -> str:
        """The first line (already received or to come) that satisfies ``predicate``."""
        for line in self.lines:
            if predicate(line):
                return line
        if not self.running:
            raise ChildError(f"{self.name} exited with {self.exit_code}: {self.stderr_tail()}")
        deferred: Deferred[str] = Deferred()
        waiter = (predicate, deferred)
        self._waiters.append(waiter)
        try:
            return await deferred.addTimeout(timeout, reactor)
        except Exception as error:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            if isinstance(error, ChildError):
                raise
            raise ChildError(
                f"{self.name}: no expected output within {timeout:g} s; stderr:\n"
                f"{self.stderr_tail()}"
            ) from None

    def write_line(self, text: str) -> None:
        if self.running and self.transport is not None:
            self.transport.write(text.encode() + b"\n")

    def signal(self, signum: int) -> None:
        if self.pid is not None and self.running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def descendants(self) -> list[psutil.Process]:
        """Remember (and return) the child's descendants: they are stopped with it."""
        if self.pid is None or not self.running:
            return list(self._descendants)
        try:
            found = psutil.Process(self.pid).children(recursive=True)
        except psutil.Error:
            found = []
        known = {p.pid for p in self._descendants}
        for process in found:
            if process.pid not in known:
                self._descendants.append(process)
                DESCENDANTS[process.pid] = process
        return list(self._descendants)

    async def wait_exit(self, timeout: float) -> bool:
        """True if the child exited within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while self.running and time.monotonic() < deadline:
            await sleep(0.02)
        return not self.running

    async def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, wait up to ``timeout``, SIGKILL; then the same for leftover descendants."""
        self.descendants()
        if self.running:
            self.signal(signal.SIGTERM)
            if not await self.wait_exit(timeout):
                self.signal(signal.SIGKILL)
                await self.wait_exit(5.0)
        await stop_processes(self._descendants, timeout)
        return self.exit_code


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


async def stop_processes(processes: list[psutil.Process], timeout: float) -> None:
    """Give processes a moment to exit by themselves, then SIGTERM, then SIGKILL, by pid."""
    for sig, grace in ((None, 3.0), (signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        alive = [p for p in processes if _alive(p)]
        if not alive:
            return
        if sig is not None:
            for process in alive:
                with contextlib.suppress(psutil.Error):
                    process.send_signal(sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(_alive(p) for p in alive):
            await sleep(0.05)


def spawn(
    name: str,
    args: list[str],
    *,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    log_path: Path | None = None,
) -> Child:
    """Start ``args`` (stdin/stdout/stderr piped); the child is registered for cleanup."""
    child = Child(name, log_path)
    environment = {**os.environ, **(env or {})}
    transport = reactor.spawnProcess(child, args[0], args, env=environment, path=cwd)
    child.pid = transport.pid
    CHILDREN[transport.pid] = child
    return child


def kill_all_sync(grace: float = 5.0) -> None:
    """Stop every registered child and its descendants, blocking; for the runner's exit."""
    victims: list[psutil.Process] = []
    for child in list(CHILDREN.values()):
        child.descendants()
        if child.pid is not None:
            with contextlib.suppress(psutil.Error):
                victims.append(psutil.Process(child.pid))
    victims.extend(p for p in DESCENDANTS.values() if _alive(p))
    CHILDREN.clear()
    DESCENDANTS.clear()
    for process in victims:
        with contextlib.suppress(psutil.Error):
            process.terminate()
    _, alive = psutil.wait_procs(victims, timeout=grace)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(alive, timeout=grace)


def rss(pid: int) -> int:
    """Resident set size of a process, in bytes."""
    return int(psutil.Process(pid).memory_info().rss)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (its own, not its children's)."""
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def find_descendant(pid: int, predicate: Callable[[psutil.Process], bool]) -> psutil.Process | None:
    """The first descendant of ``pid`` for which ``predicate`` holds (None if none yet)."""
    try:
        candidates = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return None
    for process in candidates:
        with contextlib.suppress(psutil.Error):
            if predicate(process):
                return process
    return None


def cmdline_contains(text: str) -> Callable[[psutil.Process], bool]:
    def check(process: psutil.Process) -> bool:
        return any(text in part for part in process.cmdline())

    return check


__all__: list[Any] = [
    "CHILDREN",
    "DESCENDANTS",
    "Child",
    "ChildError",
    "cmdline_contains",
    "cpu_seconds",
    "find_descendant",
    "kill_all_sync",
    "rss",
    "sleep",
    "spawn",
    "stop_processes",
]

"""A fake reactor for the node's process supervision: a ``task.Clock`` whose ``spawnProcess``
connects the protocol to a fake transport the test ends (``end``), and ``tick`` for code that
polls once a second."""

from __future__ import annotations

import signal
from typing import Any

from twisted.internet.error import ProcessTerminated
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from container.node.procs import ChildProcess


def tick(clock: Clock, polls: int) -> None:
    """One poll per advance: a LoopingCall that is late skips the polls it missed."""
    for _ in range(polls):
        clock.advance(1.0)


class FakeTransport:
    """What ChildProcess uses of a Twisted process transport."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.signals: list[int] = []
        self.written = b""
        self.stdin_closed = False
        self.closed_fds: list[int] = []

    def signalProcess(self, signum: int) -> None:
        self.signals.append(signum)

    def write(self, data: bytes) -> None:
        self.written += data

    def closeStdin(self) -> None:
        self.stdin_closed = True

    def closeChildFD(self, fd: int) -> None:
        self.closed_fds.append(fd)


class FakeReactor(Clock):
    """A clock whose spawnProcess connects the protocol to a fake transport."""

    def __init__(self) -> None:
        super().__init__()
        self.children: list[tuple[ChildProcess, FakeTransport]] = []

    def spawnProcess(self, protocol: ChildProcess, *args: Any, **kwargs: Any) -> FakeTransport:
        transport = FakeTransport(100 + len(self.children))
        protocol.makeConnection(transport)
        self.children.append((protocol, transport))
        return transport

    def end(self, index: int, signum: int = signal.SIGTERM) -> None:
        protocol, _ = self.children[index]
        protocol.processEnded(Failure(ProcessTerminated(None, signum)))

"""Child processes started from inside the test reactor, stopped by pid."""

from __future__ import annotations

import os
import signal
from typing import Any

from twisted.internet import protocol, reactor
from twisted.internet.defer import Deferred


class ChildProcess(protocol.ProcessProtocol):
    """Collects a child's output; ``exited`` fires with its exit code (or -signal)."""

    def __init__(self) -> None:
        self.exited: Deferred[int] = Deferred()
        self.output = bytearray()
        self.pid: int | None = None

    def outReceived(self, data: bytes) -> None:
        self.output += data

    errReceived = outReceived

    def processEnded(self, reason: Any) -> None:
        status = reason.value
        code = status.exitCode if status.exitCode is not None else -(status.signal or 0)
        self.exited.callback(code)

    @property
    def text(self) -> str:
        return self.output.decode("utf-8", "replace")

    def signal(self, signum: int = signal.SIGTERM) -> None:
        if self.pid is not None and not self.exited.called:
            os.kill(self.pid, signum)

    async def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout``."""
        self.signal(signal.SIGTERM)
        try:
            return await _chain(self.exited).addTimeout(timeout, reactor)
        except Exception:
            self.signal(signal.SIGKILL)
            return await _chain(self.exited)


def _chain(deferred: Deferred[int]) -> Deferred[int]:
    copy: Deferred[int] = Deferred()
    deferred.addBoth(lambda result: (copy.callback(result), result)[1])
    return copy


def spawn(
    args: list[str], env: dict[str, str] | None = None, cwd: str | None = None
) -> ChildProcess:
    child = ChildProcess()
    environment = {**os.environ, **(env or {})}
    process = reactor.spawnProcess(child, args[0], args, env=environment, path=cwd)
    child.pid = process.pid
    return child

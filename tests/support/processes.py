"""The one process helper: child processes the tests start, always stopped by pid.

Two kinds, for two kinds of test:

- ``Children.spawn`` (the ``children`` fixture) starts a child on the reactor
  (``ChildProcess``), for tests that talk to the child while it runs: its output is read
  without blocking the reactor and ``exited`` is a Deferred. The fixture stops every child it
  spawned in its teardown.
- ``terminate`` stops a ``subprocess.Popen`` child (SIGTERM by pid, then SIGKILL), for the
  helpers that need a child before the reactor runs (the router, ``container run``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from typing import Any

from twisted.internet import protocol, reactor
from twisted.internet.defer import Deferred

from tests.support.wampclient import poll

#: How long a SIGTERM'd child may take to exit before it is killed.
STOP_TIMEOUT = 30.0


class ChildProcess(protocol.ProcessProtocol):
    """Collects a child's output; ``exited`` fires with its exit code (or -signal)."""

    def __init__(self) -> None:
        self.exited: Deferred[int] = Deferred()
        self.output = bytearray()  # stdout and stderr, as they came
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.pid: int | None = None

    def outReceived(self, data: bytes) -> None:
        self.output += data
        self.stdout += data

    def errReceived(self, data: bytes) -> None:
        self.output += data
        self.stderr += data

    def processEnded(self, reason: Any) -> None:
        status = reason.value
        code = status.exitCode if status.exitCode is not None else -(status.signal or 0)
        self.exited.callback(code)

    @property
    def text(self) -> str:
        """Everything it wrote, stdout and stderr together."""
        return self.output.decode("utf-8", "replace")

    @property
    def out(self) -> str:
        return self.stdout.decode("utf-8", "replace")

    @property
    def err(self) -> str:
        return self.stderr.decode("utf-8", "replace")

    async def wait_for(self, text: str, stream: str = "text", timeout: float = 60.0) -> None:
        """Wait until ``text`` is in ``stream`` ("text", "out" or "err")."""
        try:
            await poll(lambda: text in getattr(self, stream), timeout=timeout)
        except AssertionError:
            raise AssertionError(f"{text!r} not in {stream}; out={self.out!r} "
                                 f"err={self.err!r}") from None

    def signal(self, signum: int = signal.SIGTERM) -> None:
        if self.pid is not None and not self.exited.called:
            os.kill(self.pid, signum)

    async def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout``. Safe to call twice:
        a child that has exited is not signalled again and its exit code is returned."""
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


class Children:
    """What the ``children`` fixture gives a test: ``spawn`` as above, and every child it
    started is stopped (by pid) in the fixture's teardown."""

    def __init__(self) -> None:
        self.started: list[ChildProcess] = []

    def spawn(self, args: list[str], env: dict[str, str] | None = None,
              cwd: str | None = None, inherit: bool = True) -> ChildProcess:
        """Start ``args`` on the reactor; ``env`` adds to this process's environment (or, with
        ``inherit=False``, is the whole environment)."""
        child = ChildProcess()
        environment = {**os.environ, **(env or {})} if inherit else dict(env or {})
        child.pid = reactor.spawnProcess(child, args[0], args, env=environment, path=cwd).pid
        self.started.append(child)
        return child

    async def stop_all(self) -> None:
        for child in reversed(self.started):
            await child.stop()


def signal_pid(pid: int, signum: int) -> None:
    """Signal ``pid`` if it is still there (a child not yet reaped counts as there)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def terminate(popen: subprocess.Popen[Any], timeout: float = STOP_TIMEOUT) -> int:
    """SIGTERM ``popen`` by pid and wait; SIGKILL if it has not exited within ``timeout``.
    Returns its exit code; safe to call on a child that has already exited."""
    if popen.poll() is None:
        signal_pid(popen.pid, signal.SIGTERM)
        try:
            popen.wait(timeout)
        except subprocess.TimeoutExpired:
            signal_pid(popen.pid, signal.SIGKILL)
            popen.wait(timeout)
    return popen.returncode


def kill(popen: subprocess.Popen[Any], timeout: float = STOP_TIMEOUT) -> int:
    """SIGKILL ``popen`` by pid (a crash: no clean end) and reap it."""
    if popen.poll() is None:
        signal_pid(popen.pid, signal.SIGKILL)
        popen.wait(timeout)
    return popen.returncode

"""The node's child processes: spawned with Twisted, their output as lines, their exit as events.

:class:`ChildProcess` is one OS process (a ``ProcessProtocol``): every line it writes and
its exit reach the node as callbacks, and :meth:`ChildProcess.stop` is bounded (SIGTERM,
then SIGKILL after a deadline). :class:`Supervised` keeps one child alive the way
supervisord's process state machine does: an exit nobody asked for is followed by a new
spawn after a backoff delay (:class:`container.policy.Backoff`), until a restart limit
(OTP restart intensity) says to give up; a flag tells a requested stop from a crash.

Every child starts through a tiny detaching shim that puts it in its own process group (a
Ctrl-C on the node's terminal reaches only the node, which then stops the children in
order: workers first, so their components can still say GOODBYE to the router) and asks
the kernel to SIGTERM it if the node dies (so a node killed with -9 leaves no orphans).
The shim then ``exec``s the real command, so the pid the node sees is the child's own.

:class:`Stdio` says what happens to a child's standard streams once it is spawned. Every
child of the node so far gets its stdin closed at once and its output read; a guest worker
may instead be handed a payload on stdin (kept open if it asks) or have its stdout/stderr
closed, as Crossbar.io's guest options allow.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, cast

from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from container.node.plan import Launch
from container.policy import Backoff, RestartLimit, RestartWindow

OnLine = Callable[[str, str], None]  # (stream "stdout"/"stderr", line)

log = Logger()


class _ProcessTransport(Protocol):
    """What :class:`ChildProcess` uses of Twisted's process transport (its zope interface
    does not type-check without the mypy-zope plugin)."""

    pid: int | None

    def write(self, data: bytes) -> None: ...

    def closeStdin(self) -> None: ...

    def closeChildFD(self, descriptor: int) -> None: ...

    def signalProcess(self, signalID: str | int) -> None: ...


@dataclass(frozen=True)
class Stdio:
    """What the node does with a child's standard streams right after the spawn.

    ``stdin`` is written first, then stdin is closed if ``close_stdin`` (the child reads
    EOF). A closed stdout/stderr is Crossbar.io's ``"close"``: the child keeps a valid
    descriptor (a pipe nobody reads, so no file it opens later can land on fd 1 or 2), and
    its writes fail with EPIPE, as they do under Crossbar.io. The default is what every
    node child has always had: stdin closed at once, stdout and stderr read line by line.
    """

    stdin: bytes = b""
    close_stdin: bool = True
    close_stdout: bool = False
    close_stderr: bool = False


DEFAULT_STDIO = Stdio()

# setpgid: out of the terminal's foreground group; prctl(PR_SET_PDEATHSIG=1, SIGTERM): die
# with the node; the parent check closes the race of a node that died before the prctl. An
# interpreter that cannot be executed (options.python) exits 2, "bad arguments": no restart.
_DETACH = """\
import os, sys
os.setpgid(0, 0)
try:
    import ctypes
    ctypes.CDLL(None).prctl(1, 15)
except Exception:
    pass
if os.getppid() != int(sys.argv[1]):
    sys.exit(70)
try:
    os.execv(sys.argv[2], sys.argv[2:])
except OSError as error:
    sys.stderr.write("cannot execute %s: %s\\n" % (sys.argv[2], error.strerror))
    sys.exit(2)
"""


@dataclass(frozen=True)
class ExitStatus:
    """How a child ended: an exit code, or the signal that killed it."""

    code: int | None
    signal: int | None = None

    @property
    def clean(self) -> bool:
        return self.code == 0

    def describe(self) -> str:
        if self.signal is not None:
            return f"killed by {_signal_name(self.signal)}"
        return f"exited with status {self.code}"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _exit_status(reason: Failure) -> ExitStatus:
    value = reason.value
    return ExitStatus(getattr(value, "exitCode", None), getattr(value, "signal", None))


class ChildProcess(ProcessProtocol):
    """One spawned child: its output arrives line by line, its exit fires :attr:`exited`."""

    def __init__(self, name: str, on_line: OnLine, stdio: Stdio = DEFAULT_STDIO) -> None:
        self.name = name
        self.pid: int | None = None
        self.status: ExitStatus | None = None
        self.exited: Deferred[ExitStatus] = Deferred()
        self._on_line = on_line
        self._stdio = stdio
        self._partial: dict[int, bytes] = {1: b"", 2: b""}

    @property
    def running(self) -> bool:
        return self.pid is not None and self.status is None

    @property
    def _process(self) -> _ProcessTransport:
        return cast(_ProcessTransport, self.transport)

    def connectionMade(self) -> None:
        transport = self._process
        self.pid = transport.pid
        stdio = self._stdio
        if stdio.stdin:
            transport.write(stdio.stdin)
        if stdio.close_stdin:
            transport.closeStdin()  # after the write: Twisted flushes it first
        for fd, close in ((1, stdio.close_stdout), (2, stdio.close_stderr)):
            if close:
                transport.closeChildFD(fd)

    def childDataReceived(self, fd: int, data: bytes) -> None:
        lines = (self._partial.get(fd, b"") + data).split(b"\n")
        self._partial[fd] = lines.pop()
        for line in lines:
            self._emit(fd, line)

    def _emit(self, fd: int, line: bytes) -> None:
        text = line.decode("utf-8", "replace").rstrip("\r")
        self._on_line("stdout" if fd == 1 else "stderr", text)

    def processEnded(self, reason: Failure) -> None:
        for fd, rest in self._partial.items():
            if rest:
                self._emit(fd, rest)
        self._partial = {}
        self.status = _exit_status(reason)
        self.exited.callback(self.status)

    def send(self, signum: int) -> None:
        """Signal the child by its pid; a child that already exited is left alone."""
        if not self.running:
            return
        with contextlib.suppress(ProcessExitedAlready, OSError):
            self._process.signalProcess(signum)

    async def stop(self, reactor: Any, timeout: float) -> ExitStatus:
        """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL; returns how it ended."""
        if self.status is not None:
            return self.status
        self.send(signal.SIGTERM)
        if await _wait(reactor, self.exited, timeout):
            return self.status or ExitStatus(None)
        self.send(signal.SIGKILL)
        await _wait(reactor, self.exited, 10.0)
        return self.status or ExitStatus(None, signal.SIGKILL)


async def _wait(reactor: Any, exited: Deferred[ExitStatus], timeout: float) -> bool:
    """True if ``exited`` fired within ``timeout`` (without consuming its result)."""
    waiter: Deferred[None] = Deferred()

    def wake() -> None:
        if not waiter.called:
            waiter.callback(None)

    def fired(result: Any) -> Any:
        wake()
        return result

    timer = reactor.callLater(timeout, wake)
    exited.addBoth(fired)
    await waiter
    if timer.active():
        timer.cancel()
    return exited.called


def spawn(reactor: Any, launch: Launch, protocol: ChildProcess) -> ChildProcess:
    """Start ``launch`` through the detaching shim; exits are reported through ``protocol``."""
    argv = [sys.executable, "-S", "-c", _DETACH, str(os.getpid()), *launch.argv]
    child_fds: dict[int, Any] = {0: "w", 1: "r", 2: "r", **launch.fds}
    reactor.spawnProcess(protocol, argv[0], argv, env=launch.env, path=launch.cwd,
                         childFDs=child_fds)
    return protocol


class SupervisionListener(Protocol):
    """What a :class:`Supervised` child tells its owner."""

    def spawned(self, child: Supervised, process: ChildProcess) -> None: ...

    def exited(self, child: Supervised, status: ExitStatus, restart_in: float | None) -> None: ...


#: A crashed child comes back at once; a crash loop backs off to one spawn every 10 s.
PROCESS_BACKOFF = Backoff(first=0.0, initial=0.5, max=10.0, jitter=0.1, stable_after=10.0)
#: More than 10 crashes in a minute: something is wrong that a restart will not fix.
PROCESS_RESTART_LIMIT = RestartLimit(max_restarts=10, period=60.0)


@dataclass(frozen=True)
class RestartRules:
    """When a child that exited by itself is spawned again, and how soon."""

    restartable: Callable[[ExitStatus], bool]
    backoff: Backoff = PROCESS_BACKOFF
    limit: RestartLimit = PROCESS_RESTART_LIMIT


class Supervised:
    """One child process kept alive: a crash is followed by a new spawn after a backoff.

    ``requested`` is set before any stop the node asks for, so such an exit never restarts.
    ``generation`` counts spawns (0 = the first), so the owner can tell a respawn apart.
    :meth:`restart` replaces the child at once (its sources changed): that exit is reported
    with ``restart_in`` 0.0 while :attr:`restarting` is true, and counts as no crash.
    """

    def __init__(
        self,
        reactor: Any,
        name: str,
        launch: Callable[[], Launch],
        rules: RestartRules,
        listener: SupervisionListener,
        on_line: OnLine,
        stdio: Stdio = DEFAULT_STDIO,
    ) -> None:
        self.reactor = reactor
        self.name = name
        self.generation = -1
        self.process: ChildProcess | None = None
        self.requested = False
        self.gave_up = False
        self.final: ExitStatus | None = None
        self._launch = launch
        self._rules = rules
        self._listener = listener
        self._on_line = on_line
        self._stdio = stdio
        self._window = RestartWindow(rules.limit)
        self._attempt = 0
        self._spawned_at = 0.0
        self._pending: Any = None
        self._restarting = False

    @property
    def restarting(self) -> bool:
        """True from a :meth:`restart` until its new child is spawned (so the listener's
        ``exited`` and ``spawned`` can tell a requested restart from a crash)."""
        return self._restarting

    @property
    def pid(self) -> int | None:
        process = self.process
        return process.pid if process is not None and process.running else None

    def start(self) -> ChildProcess:
        self.generation += 1
        self._spawned_at = self.reactor.seconds()
        protocol = ChildProcess(self.name, self._on_line, self._stdio)
        process = spawn(self.reactor, self._launch(), protocol)
        self.process = process
        process.exited.addCallback(self._exited, process)
        process.exited.addErrback(self._exit_not_handled, process)
        self._listener.spawned(self, process)
        return process

    def _exit_not_handled(self, failure: Failure, process: ChildProcess) -> ExitStatus | None:
        """The owner failed while handling an exit: log it with the child it was about, and
        keep the exit status for whoever waits for the process (a stop)."""
        log.failure("{name}: handling the exit of process {pid} failed", failure,
                    name=self.name, pid=process.pid)
        return process.status

    def _exited(self, status: ExitStatus, process: ChildProcess) -> ExitStatus:
        if process is not self.process:
            return status
        if self._restarting and not self.requested:
            self._listener.exited(self, status, 0.0)
            return status
        delay = self._restart_delay(status)
        if delay is None:
            self.final = status
        else:
            self._pending = self.reactor.callLater(delay, self._respawn)
        self._listener.exited(self, status, delay)
        return status

    def _restart_delay(self, status: ExitStatus) -> float | None:
        if self.requested or not self._rules.restartable(status):
            return None
        now = self.reactor.seconds()
        if now - self._spawned_at >= self._rules.backoff.stable_after:
            self._attempt = 0
        if not self._window.allow(now):
            self.gave_up = True
            return None
        self._attempt += 1
        return self._rules.backoff.delay(self._attempt)

    def _respawn(self) -> None:
        self._pending = None
        if not self.requested:
            self.start()

    async def restart(self, timeout: float) -> ExitStatus | None:
        """Replace the child now: stop it (SIGTERM, SIGKILL after ``timeout``), spawn anew.

        For a change the owner asked for (a watched file changed), so it is no crash: the
        backoff starts over and the restart limit does not count it. A child that is waiting
        for a backoff respawn, or that was given up, comes back at once. Does nothing after
        :meth:`stop`, or while another restart is under way (one change burst, one restart).
        Returns how the old child ended (None if none was running).
        """
        if self.requested or self._restarting:
            return None
        self._restarting = True
        try:
            status = await self._stop_current(timeout)
            if not self.requested:
                self._attempt = 0
                self.gave_up = False
                self.final = None
                self.start()
            return status
        finally:
            self._restarting = False

    async def _stop_current(self, timeout: float) -> ExitStatus | None:
        if self._pending is not None and self._pending.active():
            self._pending.cancel()
        self._pending = None
        process = self.process
        if process is None or not process.running:
            return None
        return await process.stop(self.reactor, timeout)

    async def stop(self, timeout: float) -> ExitStatus | None:
        """Stop for good: no restart, SIGTERM, SIGKILL after ``timeout``."""
        self.requested = True
        if self._pending is not None and self._pending.active():
            self._pending.cancel()
        self._pending = None
        process = self.process
        if process is None:
            return None
        status = await process.stop(self.reactor, timeout)
        self.final = self.final or status
        return status

    def kill(self) -> None:
        """SIGKILL at once (a second Ctrl-C): no restart."""
        self.requested = True
        if self.process is not None:
            self.process.send(signal.SIGKILL)

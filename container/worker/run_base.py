"""The connection half of a hosted component's session run: connect, leave, end, stop.

A :class:`RunBase` builds the component's session, connects it, times the start out, and
follows the session to its end: a leave of the component's own, the router closing it, the
transport going away, a stop the container asked for (GOODBYE, close, abort). What the facts
mean (the stop reason, the start error) is decided in :mod:`container.worker.outcome`; when
the session is ready is decided by :class:`~container.worker.run.SessionRun`, which adds the
join code to this.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from autobahn.twisted.wamp import ApplicationSession
from autobahn.wamp.types import CloseDetails, ComponentConfig, SessionDetails
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.python.failure import Failure

from container import connector
from container.components import ComponentSpec
from container.context import _running
from container.errors import ComponentStartFailed, ContainerError
from container.worker import outcome
from container.worker.builders import SessionBuilder
from container.worker.outcome import CONNECTING, JOINING, OwnLeave, SessionEnd, start_cancelled
from container.worker.session import share_class_logger

# told once how a session that was ready ended: (owner, run, end)
EndListener = Callable[[Any, "RunBase", SessionEnd], None]


class RunBase:
    """One session of a component and its connection, from connect to its end; used once."""

    __slots__ = (
        "_build", "_close_details", "_closed", "_closed_waiters", "_component_config",
        "_connecting", "_crash", "_end_told", "_left_by_leave", "_on_end", "_opened",
        "_own_leave", "_owner",
        "_ready_reached", "_start_error", "_start_timer", "_stop_requested", "connection",
        "log", "phase", "reactor", "ready", "session", "spec",
    )

    def __init__(
        self,
        reactor: Any,
        spec: ComponentSpec,
        build: SessionBuilder,
        component_config: ComponentConfig,
        log: Any,
        on_end: EndListener,
        owner: Any = None,
    ) -> None:
        self.reactor = reactor
        self.spec = spec
        self.log = log
        self.session: ApplicationSession | None = None
        self.connection: connector.ClientConnection | None = None
        # cancelling it (a caller that gives up) stops the timers; the owner stops the run
        self.ready: Deferred[SessionDetails] = Deferred(self._ready_cancelled)
        self.phase: str | None = None
        # plain callbacks rather than Deferreds: a worker holds one run per component
        self._on_end = on_end
        self._owner = owner  # passed back to on_end: no closure per run
        self._end_told = False
        self._closed_waiters: list[Deferred[None]] | None = None
        self._build = build
        self._component_config = component_config
        self._connecting: Deferred[Any] | None = None
        self._opened = False
        self._closed = False
        self._stop_requested = False
        self._own_leave: OwnLeave | None = None
        self._left_by_leave = False  # the component's own session.leave(), not reactor.stop()
        self._close_details: CloseDetails | None = None
        self._start_error: ContainerError | None = None
        self._ready_reached = False
        self._start_timer: Any = None
        self._crash: str | None = None
        self._init_state()

    def _init_state(self) -> None:
        """A subclass's own fields (set here, so the constructor is written once)."""

    @property
    def component_id(self) -> str | None:
        return getattr(self._owner, "id", None)

    @property
    def closed(self) -> bool:
        """Whether its transport is gone (the reactor.stop guard skips such runs)."""
        return self._closed

    # -- starting ---------------------------------------------------------------------------

    def start(self, timeout: float) -> Deferred[SessionDetails]:
        """Connect and join; the Deferred fires with the session details once ready."""
        session = self._build_session()
        if self._own_leave is not None:  # its constructor called reactor.stop()
            raise ComponentStartFailed(
                f"component left before it was ready: {self._leave_text()}", cause="left"
            )
        session._container_run = self  # type: ignore[attr-defined]
        share_class_logger(session)
        self.session = session
        self.phase = CONNECTING
        self.connection, self._connecting = connector.connect(
            self.reactor, self.spec.transport, self._session_for_transport,
            self._transport_closed,
        )
        self._connecting.addCallbacks(self._connected, self._connect_failed)
        # a plain timer rather than Deferred.addTimeout: fewer objects per pending start
        self._start_timer = self.reactor.callLater(timeout, self._start_timed_out, timeout)
        return self.ready

    def _build_session(self) -> ApplicationSession:
        """The component's session, built as the component's own code."""
        token = _running.set(self)
        try:
            return self._build(self._component_config)
        except (Exception, SystemExit) as error:
            raise ComponentStartFailed(
                f"component constructor raised {outcome.describe_error(error)}",
                cause="constructor",
            ) from None
        finally:
            _running.reset(token)

    def _settle(self, result: SessionDetails | Failure | BaseException) -> None:
        """Fire ``ready`` once, with the details or the error, and stop the start timers."""
        self._cancel_timers()
        if self.ready.called:
            return
        if isinstance(result, SessionDetails):
            self.ready.callback(result)
        else:
            self.ready.errback(result)

    def _cancel_timers(self) -> None:
        """Stop the timers of the start (a subclass adds its own)."""
        timer, self._start_timer = self._start_timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _ready_cancelled(self, ready: Deferred[SessionDetails]) -> None:
        self._cancel_timers()

    def _session_for_transport(self) -> Any:
        assert self.session is not None
        return self.session

    def _connected(self, connection: connector.ClientConnection) -> None:
        self._connecting = None  # nothing left to cancel, and a transport to close

    def _connect_failed(self, failure: Failure) -> None:
        self.phase = None
        # a cancelled TCP connect fails with ConnectingCancelledError, not CancelledError:
        # whatever the error, a connect that a stop cut short is a cancelled start
        if self._stop_requested or isinstance(failure.value, CancelledError):
            failure = Failure(start_cancelled())  # type: ignore[no-untyped-call]
        self._settle(failure)

    def _start_timed_out(self, timeout: float) -> None:
        self._start_timer = None
        if self._stop_requested:
            error: ContainerError = start_cancelled()
        else:
            error = ComponentStartFailed(
                f"component did not become ready within {timeout:g} s "
                f"({outcome.whereabouts(self.phase, self.spec)})",
                cause="timeout",
            )
        self._settle(error)
        self._abort()

    def transport_opened(self) -> None:
        self._opened = True
        self.phase = JOINING

    def _ending(self) -> bool:
        return bool(self._stop_requested or self._own_leave is not None or self._closed
                    or self._close_details is not None or self._crash is not None)

    def _fail_start(self, error: ContainerError) -> None:
        if self._start_error is None:
            self._start_error = error
        self._settle(error)

    # -- leaving ----------------------------------------------------------------------------

    def component_exit(self, why: str) -> None:
        """The component's code called ``reactor.stop()`` or raised ``SystemExit``: that
        ends this component (it leaves, reason ``left``), never the worker."""
        if self._ending():
            self.log.debug("{why}: the session is already ending", why=why)
            return
        self.log.info("{why}: this component stops (the worker and the other components "
                      "keep running)", why=why)
        self._own_leave = ("wamp.close.normal", why)
        if self.session is not None:
            # as reactor.stop() would, let the code that called it run to its end first
            # (a procedure's answer goes out before the GOODBYE)
            self.reactor.callLater(0, self._leave_now, why)

    def _leave_now(self, why: str) -> None:
        if not (self._stop_requested or self._closed):
            self._close_session("wamp.close.normal", why)

    def leaving(self, reason: str | None, message: str | None) -> None:
        if not self._stop_requested and self._own_leave is None:
            self._own_leave = (reason or "wamp.close.normal", message or "")
            self._left_by_leave = True

    def left(self, details: CloseDetails) -> None:
        self._close_details = details
        if not self.ready.called:
            self._ended_before_ready()

    def _ended_before_ready(self) -> None:
        """The session closed before the run was ready: a failed start (a run that joined
        may count it otherwise: :class:`~container.worker.run.SessionRun`)."""
        self._fail_start(self._left_before_ready())

    def _left_cleanly(self) -> bool:
        """It called ``leave()`` itself with a ``wamp.close.*`` reason (a client that did its
        work in ``onJoin`` and left, as autobahn's RPC examples do): nobody stopped it, and
        neither ``reactor.stop()`` nor ``SystemExit`` nor an error reason is involved."""
        return (self._left_by_leave and not self._stop_requested and self._own_leave is not None
                and self._own_leave[0].startswith("wamp.close."))

    def _left_before_ready(self) -> ContainerError:
        return outcome.left_before_ready(self._stop_requested, self._own_leave,
                                         self._close_details)

    def _leave_text(self) -> str:
        return outcome.leave_text(self._own_leave, self._close_details)

    def _transport_closed(self, reason: BaseException) -> None:
        self._closed = True
        self.phase = None
        self._session_gone()
        if not self._ready_reached:
            self._fail_start(self._closed_before_ready())
        elif not self._end_told:
            self._end_told = True
            self._on_end(self._owner, self, outcome.session_end(
                self._stop_requested, self._crash, self._own_leave, self._close_details))
        waiters, self._closed_waiters = self._closed_waiters, None
        for waiter in waiters or ():
            if not waiter.called:
                waiter.callback(None)

    def _session_gone(self) -> None:
        """The transport is closed: stop whatever of the session still runs (a subclass's
        join code)."""

    def _closed_before_ready(self) -> ContainerError:
        if not self._opened and not self._stop_requested:
            why = self.connection.close_reason if self.connection else ""
            return outcome.handshake_refused(self.spec.transport, why)
        return self._left_before_ready()

    # -- stopping ---------------------------------------------------------------------------

    def stop(self, timeout: float) -> Deferred[None]:
        """Leave (GOODBYE) and close the transport; abort it after ``timeout`` seconds.

        Fires once the transport is closed, and after ``timeout`` at the latest. A run that
        never got a transport (its connect failed, or the stop cancelled it) is stopped at
        once: there is nothing to close.
        """
        self._stop_requested = True
        connecting = self._connecting  # None once connected
        if connecting is not None and not connecting.called:
            connecting.cancel()
        connection = self.connection
        if connection is None or connection.is_closed or connecting is not None:
            if connection is not None:
                self._settle(start_cancelled())
            return succeed(None)
        self._close_session("wamp.close.normal", "stopped by the container")
        waiter = self._when_closed()
        waiter.addTimeout(timeout, self.reactor, onTimeoutCancel=self._stop_timed_out)
        return waiter

    def _stop_timed_out(self, result: Any, timeout: float) -> None:
        self.log.warn("did not close within {timeout} s: aborting its transport", timeout=timeout)
        self._abort()
        # the abort drops the transport now; the stop does not wait for it to say so

    def _when_closed(self) -> Deferred[None]:
        """Fires once the transport is closed (at once if it already is)."""
        if self.connection is None or self.connection.is_closed:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        if self._closed_waiters is None:
            self._closed_waiters = []
        self._closed_waiters.append(waiter)
        return waiter

    def _close_session(self, reason: str, message: str) -> None:
        """GOODBYE if joined, else close the transport."""
        session: Any = self.session
        if session is not None and session.is_attached() and not session._goodbye_sent:
            try:
                session.leave(reason, message)
                return
            except Exception as error:
                self.log.warn("leave failed ({error}): closing the transport", error=error)
        if self.connection is not None:
            self.connection.close()

    def _abort(self) -> None:
        if self._connecting is not None and not self._connecting.called:
            self._connecting.cancel()
        if self.connection is not None:
            self.connection.abort()

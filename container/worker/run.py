"""One run of a hosted component's WAMP session: connect, join, ready, and how it ended.

autobahn swallows an exception from ``onJoin`` and still fires "ready", and tells the
session nothing when a WebSocket handshake fails. The container needs both facts, so the
session is wrapped (:class:`~container.worker.session.SupervisedSession`) and its hooks
report to the :class:`SessionRun`, and the transport's end comes from the connector
(:class:`~container.worker.run_base.RunBase`, the connection half). A ``SessionRun`` is
used once.

Ready means joined and then: the join code (``join`` handlers, then ``onJoin``) finished,
or the component said so (``container.context.ready``), or its join code kept running for
the ready grace period.
"""

from __future__ import annotations

from typing import Any

import txaio
from autobahn.wamp.types import SessionDetails
from twisted.internet.defer import Deferred, DeferredList
from twisted.python.failure import Failure

from container.errors import ComponentStartFailed
from container.worker.outcome import (
    JOINED,
    ONJOIN_RUNNING,
    READY_BY_CALL,
    READY_BY_GRACE,
    READY_BY_LEAVE,
    READY_BY_ONJOIN,
    describe_error,
    describe_exit,
)
from container.worker.run_base import RunBase

DEFAULT_READY_GRACE = 1.0


class SessionRun(RunBase):
    """Build, connect and watch one session of a component, from connect to its end.

    Ready means joined, and then either its ``onJoin`` (with every join handler) finished,
    or it said so (``container.context.ready``), or it kept running its join code for the
    ready grace period: a component that lives inside ``onJoin`` is running, not starting.
    A failure of the join code before that is a failed start; after it, a crash.
    """

    __slots__ = ("_details", "_grace", "_grace_timer", "_join_code", "_join_failed", "ready_by")

    def _init_state(self) -> None:
        self.ready_by: str | None = None
        self._grace = DEFAULT_READY_GRACE
        self._grace_timer: Any = None
        self._details: SessionDetails | None = None
        self._join_code: Deferred[Any] | None = None  # the join handlers or onJoin, running
        self._join_failed = False

    def start(
        self, timeout: float, ready_grace: float = DEFAULT_READY_GRACE
    ) -> Deferred[SessionDetails]:
        """Connect and join; the Deferred fires with the session details once ready."""
        self._grace = ready_grace
        return super().start(timeout)

    def _cancel_timers(self) -> None:
        super()._cancel_timers()
        timer, self._grace_timer = self._grace_timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _session_gone(self) -> None:
        timer, self._grace_timer = self._grace_timer, None
        if timer is not None and timer.active():
            timer.cancel()
        code, self._join_code = self._join_code, None
        if code is not None and not code.called:
            code.cancel()  # nothing of the session stays running: its onJoin loop included

    # -- the join code: join handlers, then onJoin ------------------------------------------

    def run_join_handlers(
        self, session: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Deferred[list[Any]]:
        """Do what autobahn's ``fire("join")`` does, and mark the join.

        Every ``join`` handler of the session and of its parents (a ``Component``'s) runs;
        the first one that fails is reported at once (autobahn would only log it once all
        had finished, then run ``onJoin`` anyway).
        """
        self.joined(args[1] if len(args) > 1 else session._session_details)
        handlers = []
        observable = session
        while observable is not None:
            handlers += (observable._listeners or {}).get("join", [])
            observable = observable._parent
        futures = []
        for handler in handlers:
            if self._join_failed or self._ending():
                break  # no more handlers on a session whose join failed or that is ending
            future = txaio.as_future(handler, *args, **kwargs)
            future.addErrback(self.join_failed, f"join handler {_name(handler)}")
            futures.append(future)
        gathered: Deferred[Any] = DeferredList(futures)
        gathered.addCallback(lambda results: [value for _, value in results])
        if self._closed:
            gathered.cancel()
        self.join_code_pending(gathered)
        return gathered

    def joined(self, details: SessionDetails) -> None:
        self._details = details
        self.phase = ONJOIN_RUNNING
        if self._grace <= 0:
            self._become_ready(READY_BY_GRACE)

    def join_code_pending(self, code: Deferred[Any]) -> None:
        """The join code (handlers or onJoin) did not finish at once: it may run for long."""
        if code.called:
            return
        self._join_code = code
        if not self.ready.called and self._grace_timer is None:
            self._grace_timer = self.reactor.callLater(self._grace, self._grace_elapsed)

    def join_code_may_run(self) -> bool:
        return not (self._join_failed or self._stop_requested or self._closed)

    def _grace_elapsed(self) -> None:
        self._grace_timer = None
        if not self.ready.called:
            self.log.info("joined; its onJoin is still running after {grace} s: it is "
                          "running", grace=self._grace)
        self._become_ready(READY_BY_GRACE)

    def declare_ready(self) -> bool:
        """The component says it is ready (``container.context.ready``)."""
        if self._details is not None and not self._closed and not self.ready.called:
            self._become_ready(READY_BY_CALL)
        return self._ready_reached and not self._closed

    def _become_ready(self, by: str) -> None:
        if self.ready.called or self._details is None:
            return
        ending = self._stop_requested or self._own_leave is not None or self._close_details
        if ending and not self._left_cleanly():
            self._fail_start(self._left_before_ready())
            return
        self.ready_by = by
        self._ready_reached = True
        self._settle(self._details)

    def _ended_before_ready(self) -> None:
        """A component that joined and then left cleanly by itself, before its join code
        finished, did what it was for: it started, then left (the end is told as ``left``)."""
        if self._details is not None and self._left_cleanly():
            self._become_ready(READY_BY_LEAVE)
        else:
            super()._ended_before_ready()

    def join_finished(self, result: Any) -> None:
        self._join_code = None
        self.phase = JOINED
        self._become_ready(READY_BY_ONJOIN)

    def join_failed(self, failure: Failure, where: str = "onJoin") -> Deferred[None] | None:
        """The join code raised: a failed start before ready, a crash after.

        An error that follows the end of the session (a loop publishing on a session that
        was stopped, the cancellation of a join code still running at the end) is none of
        those. ``SystemExit`` ends the component as if it had left.
        """
        self._join_code = None
        error = failure.value
        if self._ending():
            self.log.debug("{where} ended after the session: {error_type}: {error}",
                           where=where, error_type=type(error).__name__, error=error)
        elif isinstance(error, SystemExit):
            self.component_exit(f"{where} raised {describe_exit(error)}")
        else:
            self._join_crashed(where, error)
        # a join handler's failure is handled: the gathered handlers then count as done;
        # onJoin's never fires, so autobahn's "ready" event never follows a failed onJoin
        return None if where != "onJoin" else Deferred()

    def _join_crashed(self, where: str, error: BaseException | None) -> None:
        self._join_failed = True
        text = f"{where} raised {describe_error(error) if error is not None else 'an error'}"
        self.log.error("{problem}", problem=text)
        if self._ready_reached:
            self._crash = text
            self._close_session("crossbar.error.component_failed", text)
        else:
            self._fail_start(ComponentStartFailed(text, cause="onJoin"))
            self._close_session("crossbar.error.cannot_start", text)


def _name(handler: Any) -> str:
    return getattr(handler, "__qualname__", None) or type(handler).__name__

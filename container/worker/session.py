"""One run of a hosted component's WAMP session: connect, join, ready, and how it ended.

autobahn swallows an exception from ``onJoin`` and still fires "ready", and tells the
session nothing when a WebSocket handshake fails. The container needs both facts, so the
user's session class is wrapped (a subclass with :class:`SupervisedSession` first in the
MRO, cached per class and named like it) whose hooks report to the :class:`SessionRun`,
and the transport's end comes from the connector. A ``SessionRun`` is used once.

Ready means joined and then: the join code (``join`` handlers, then ``onJoin``) finished,
or the component said so (``container.context.ready``), or its join code kept running for
the ready grace period. What ``classname`` names -- a session class, an autobahn
``Component`` or ``Application`` object -- becomes a session builder here
(:func:`session_builder`). :class:`ReactorStopGuard` makes a component's
``reactor.stop()`` end that component only.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import txaio
from autobahn.twisted.wamp import ApplicationSession
from autobahn.wamp import auth as wamp_auth
from autobahn.wamp import protocol
from autobahn.wamp.auth import create_authenticator
from autobahn.wamp.interfaces import IAuthenticator
from autobahn.wamp.types import CloseDetails, ComponentConfig, SessionDetails
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    DeferredList,
    maybeDeferred,
    succeed,
)
from twisted.python.failure import Failure

from container import connector
from container.config import ComponentSpec
from container.context import _running
from container.errors import (
    CannotConnect,
    ComponentStartFailed,
    ContainerError,
    StartCancelled,
)
from container.policy import StopReason

SHUTDOWN_REASONS = ("wamp.close.system_shutdown",)


@dataclass(frozen=True)
class SessionEnd:
    """How a session that was ready came to an end."""

    reason: StopReason
    message: str


class SupervisedSession:
    """Mixin placed before the user's session class; reports to its ``SessionRun``.

    Everything the transport hands the session (its opening, each message, its end) runs
    with the component's context set (``container.context``), so any code of the component
    -- handlers, ``onJoin`` and the coroutines it starts -- is known to be that component's.
    """

    _container_run: SessionRun

    def onOpen(self, transport: Any) -> None:
        run = self._container_run
        run.transport_opened()
        token = _running.set(run)
        try:
            super().onOpen(transport)  # type: ignore[misc]
        finally:
            _running.reset(token)

    def onMessage(self, msg: Any) -> None:
        token = _running.set(self._container_run)
        try:
            super().onMessage(msg)  # type: ignore[misc]
        finally:
            _running.reset(token)

    def onClose(self, wasClean: bool) -> None:
        token = _running.set(self._container_run)
        try:
            super().onClose(wasClean)  # type: ignore[misc]
        finally:
            _running.reset(token)

    def onConnect(self) -> Any:
        spec = self._container_run.spec
        if spec.auth is None and spec.role is None:
            return super().onConnect()  # type: ignore[misc]
        authid, authrole, methods = _join_arguments(spec)
        self.join(  # type: ignore[attr-defined]
            spec.realm, authmethods=methods, authid=authid, authrole=authrole
        )
        return None

    def onChallenge(self, challenge: Any) -> Any:
        auth = self._container_run.spec.auth or {}
        if challenge.method == "ticket" and "ticket" in auth:
            return auth["ticket"]["ticket"]
        if challenge.method == "wampcra" and "wampcra" in auth:
            return _wampcra_signature(auth["wampcra"]["secret"], challenge.extra)
        return super().onChallenge(challenge)  # type: ignore[misc]

    def fire(self, event: str, *args: Any, **kwargs: Any) -> Any:
        """autobahn fires ``join`` once welcomed, before ``onJoin``: that is the join."""
        if event != "join":
            return super().fire(event, *args, **kwargs)  # type: ignore[misc]
        return self._container_run.run_join_handlers(self, args, kwargs)

    def onJoin(self, details: SessionDetails) -> Deferred[None]:
        run = self._container_run
        if not run.join_code_may_run():
            return Deferred()  # the join failed or the session is ending: no "ready" event
        result = maybeDeferred(super().onJoin, details)  # type: ignore[misc]
        result.addCallbacks(run.join_finished, run.join_failed, errbackArgs=("onJoin",))
        run.join_code_pending(result)
        return result

    def leave(self, reason: str | None = None, message: str | None = None) -> Any:
        self._container_run.leaving(reason, message)
        return super().leave(reason, message)  # type: ignore[misc]

    def onLeave(self, details: CloseDetails) -> Any:
        self._container_run.left(details)
        result = maybeDeferred(super().onLeave, details)  # type: ignore[misc]
        result.addBoth(lambda _: self.disconnect())  # type: ignore[attr-defined]
        return result

    def onUserError(self, fail: Any, msg: str) -> None:
        """A handler raised: ``SystemExit`` ends this component, anything else is logged."""
        error = getattr(fail, "value", None)
        if isinstance(error, SystemExit):
            self._container_run.component_exit(f"a handler raised {_describe_exit(error)}")
            return
        super().onUserError(fail, msg)  # type: ignore[misc]


def _join_arguments(spec: ComponentSpec) -> tuple[str | None, str | None, list[str]]:
    auth = spec.auth or {"anonymous": {"authrole": spec.role}}
    first = next(iter(auth.values()))
    return first.get("authid"), first.get("authrole", spec.role), list(auth)


def _wampcra_signature(secret: str, extra: dict[str, Any]) -> str:
    key = secret.encode("utf8")
    if "salt" in extra:
        key = wamp_auth.derive_key(secret, extra["salt"], extra["iterations"], extra["keylen"])
    return wamp_auth.compute_wcs(key, extra["challenge"].encode("utf8")).decode("ascii")


class FunctionSession(ApplicationSession):
    """The session of a ``function`` component: its callbacks stand in for the methods.

    The ``join`` callback runs as ``onJoin`` (so its failure is a start failure); the
    others are observers as in autobahn: ``connect(session, transport)``,
    ``ready(session)``, ``leave(session, details)``, ``disconnect(session, was_clean)``.
    """

    def __init__(self, config: ComponentConfig, callbacks: dict[str, Callable[..., Any]]):
        super().__init__(config)
        self._join_callback = callbacks.get("join")
        for event, callback in callbacks.items():
            if event != "join":
                self.on(event, callback)

    def onJoin(self, details: SessionDetails) -> Any:
        if self._join_callback is not None:
            return self._join_callback(self, details)
        return None


_wrapped_classes: dict[type, type] = {}


def supervised_class(session_class: type[protocol.ApplicationSession]) -> type:
    """The user's class with :class:`SupervisedSession` in front, cached per class object."""
    wrapped = _wrapped_classes.get(session_class)
    if wrapped is None:
        wrapped = type(
            session_class.__name__,
            (SupervisedSession, session_class),
            {"__module__": session_class.__module__, "__qualname__": session_class.__qualname__},
        )
        _wrapped_classes[session_class] = wrapped
    return wrapped


SessionBuilder = Callable[[ComponentConfig], ApplicationSession]


def session_builder(code: Any) -> SessionBuilder:
    """How to build a session for what a ``class`` component's ``classname`` names.

    - a session class (``ApplicationSession``, ``Session``, a subclass): the class itself;
    - an ``autobahn.twisted.component.Component`` object: a session from its
      ``session_factory``, with its handlers (``join``, ``ready``, ``leave``, ``connect``,
      ``disconnect``; ``main`` runs as the join code), its ``authentication`` (unless the
      configuration has ``auth``) and its ``extra`` (unless the configuration has one);
      its transports, realm and reconnect settings are not used: the container connects;
    - an ``autobahn.twisted.wamp.Application`` object: its session, one at a time.
    """
    if isinstance(code, type):
        return supervised_class(code)  # type: ignore[no-any-return]
    from autobahn.twisted.wamp import Application

    if isinstance(code, Application):
        return _application_builder(code)
    return _component_builder(code)


def _supervised_session(factory: Any, config: ComponentConfig) -> ApplicationSession:
    """A session from ``factory`` (a session class or any callable returning a session)
    with :class:`SupervisedSession` in front of its class."""
    if isinstance(factory, type) and issubclass(factory, protocol.ApplicationSession):
        return supervised_class(factory)(config)  # type: ignore[no-any-return]
    session = factory(config)
    if not isinstance(session, protocol.ApplicationSession):
        raise TypeError(f"the session factory {factory!r} returned {session!r}, which is not "
                        "an autobahn ApplicationSession")
    if not isinstance(session, SupervisedSession):
        session.__class__ = supervised_class(type(session))
    return session  # type: ignore[return-value]


def _component_builder(component: Any) -> SessionBuilder:
    def build(config: ComponentConfig) -> ApplicationSession:
        if config.extra is None:
            config.extra = component._extra
        session = _supervised_session(component.session_factory, config)
        for name, settings in (component._authentication or {}).items():
            if isinstance(settings, IAuthenticator):
                session.add_authenticator(settings)  # type: ignore[attr-defined]
            else:
                session.add_authenticator(  # type: ignore[attr-defined]
                    create_authenticator(name, **settings))
        # the component's handlers hear the session's events, as under Component.start()
        session._parent = component
        if session._listeners is None:  # autobahn's fire() skips the parent without them
            session._listeners = {}
        if component._entry is not None:
            session.on("join", _main_runner(component._entry))
        return session

    return build


def _main_runner(main: Callable[..., Any]) -> Callable[..., Any]:
    """A ``Component``'s ``main(reactor, session)``: the session leaves once it returns."""

    def run_main(session: Any, details: SessionDetails) -> Deferred[Any]:
        reactor = session._container_run.reactor
        result = maybeDeferred(main, reactor, session)

        def finished(value: Any) -> Any:
            reactor.callLater(0, _leave_if_attached, session)
            return value

        return result.addCallback(finished)

    return run_main


def _leave_if_attached(session: Any) -> None:
    if session.is_attached() and not session._goodbye_sent:
        session.leave()


def _application_builder(application: Any) -> SessionBuilder:
    from autobahn.twisted.wamp import _ApplicationSession

    session_class = supervised_class(_ApplicationSession)

    def build(config: ComponentConfig) -> ApplicationSession:
        application.session = None  # autobahn's Application holds one session at a time
        session = session_class(config, application)
        application.session = session
        return session  # type: ignore[no-any-return]

    return build


_class_loggers: dict[type, Any] = {}


def share_class_logger(session: ApplicationSession) -> None:
    """Give the session the logger its class's other sessions use.

    autobahn makes a txaio logger for every session (``self.log``, named after the session
    class): about 1.5 KiB of bound methods each, a tenth of a hosted component. All
    sessions of one class get an identical logger (same namespace, global level), so they
    share the first one. A logger the session made under another name or gave its own
    level is kept.
    """
    session_class = type(session)
    own = getattr(session, "log", None)
    namespace = getattr(getattr(own, "_logger", None), "namespace", None)
    if namespace != f"{session_class.__module__}.{session_class.__name__}" or getattr(
        own, "_log_level_set_explicitly", False
    ):
        return
    shared = _class_loggers.setdefault(session_class, own)
    if shared is not own:
        session.log = shared


# where a session run is (``SessionRun.phase``, shown by get_component)
CONNECTING = "connecting"  # establishing the transport
JOINING = "joining"  # transport open, HELLO sent, not welcomed yet
ONJOIN_RUNNING = "onjoin_running"  # joined; its join handlers / onJoin still running
JOINED = "joined"  # joined; onJoin finished

# how a run became ready (``SessionRun.ready_by``)
READY_BY_ONJOIN = "onjoin"  # onJoin (and every join handler) finished
READY_BY_GRACE = "grace"  # onJoin still running after the ready grace period
READY_BY_CALL = "ready_call"  # the component called container.context.ready()

DEFAULT_READY_GRACE = 1.0


def _describe_exit(error: SystemExit) -> str:
    return f"SystemExit({error.code!r})" if error.code is not None else "SystemExit"


class SessionRun:
    """Build, connect and watch one session of a component, from connect to its end.

    Ready means joined, and then either its ``onJoin`` (with every join handler) finished,
    or it said so (``container.context.ready``), or it kept running its join code for the
    ready grace period: a component that lives inside ``onJoin`` is running, not starting.
    A failure of the join code before that is a failed start; after it, a crash.
    """

    __slots__ = (
        "_build",
        "_close_details",
        "_closed",
        "_closed_waiters",
        "_component_config",
        "_connecting",
        "_crash",
        "_details",
        "_end_told",
        "_grace",
        "_grace_timer",
        "_join_code",
        "_join_failed",
        "_on_end",
        "_opened",
        "_own_leave",
        "_owner",
        "_ready_reached",
        "_start_error",
        "_start_timer",
        "_stop_requested",
        "connection",
        "log",
        "phase",
        "reactor",
        "ready",
        "ready_by",
        "session",
        "spec",
    )

    def __init__(
        self,
        reactor: Any,
        spec: ComponentSpec,
        build: SessionBuilder,
        component_config: ComponentConfig,
        log: Any,
        on_end: Callable[[Any, SessionRun, SessionEnd], None],
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
        self.ready_by: str | None = None
        # told once how a session that was ready ended (plain callbacks rather than
        # Deferreds: a worker holds one run per component, thousands of them)
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
        self._own_leave: tuple[str, str] | None = None
        self._close_details: CloseDetails | None = None
        self._start_error: ContainerError | None = None
        self._ready_reached = False
        self._start_timer: Any = None
        self._grace = DEFAULT_READY_GRACE
        self._grace_timer: Any = None
        self._details: SessionDetails | None = None
        self._join_code: Deferred[Any] | None = None  # the join handlers or onJoin, running
        self._join_failed = False
        self._crash: str | None = None

    @property
    def component_id(self) -> str | None:
        return getattr(self._owner, "id", None)

    # -- starting ---------------------------------------------------------------------------

    def start(
        self, timeout: float, ready_grace: float = DEFAULT_READY_GRACE
    ) -> Deferred[SessionDetails]:
        """Connect and join; the Deferred fires with the session details once ready."""
        self._grace = ready_grace
        token = _running.set(self)
        try:
            session = self._build(self._component_config)
        except (Exception, SystemExit) as error:
            raise ComponentStartFailed(
                f"component constructor raised {type(error).__name__}: {error}",
                cause="constructor",
            ) from None
        finally:
            _running.reset(token)
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
        # a plain timer rather than Deferred.addTimeout: a pending start holds one object
        # instead of half a dozen, which counts when a thousand starts are under way
        self._start_timer = self.reactor.callLater(timeout, self._start_timed_out, timeout)
        return self.ready

    def _settle(self, outcome: SessionDetails | Failure | BaseException) -> None:
        """Fire ``ready`` once, with the details or the error, and stop the start timers."""
        self._cancel_timers()
        if self.ready.called:
            return
        if isinstance(outcome, SessionDetails):
            self.ready.callback(outcome)
        else:
            self.ready.errback(outcome)

    def _cancel_timers(self) -> None:
        for timer in (self._start_timer, self._grace_timer):
            if timer is not None and timer.active():
                timer.cancel()
        self._start_timer = self._grace_timer = None

    def _ready_cancelled(self, ready: Deferred[SessionDetails]) -> None:
        self._cancel_timers()

    def _session_for_transport(self) -> ApplicationSession:
        assert self.session is not None
        return self.session

    def _connected(self, connection: connector.ClientConnection) -> None:
        self._connecting = None  # nothing left to cancel, and a transport to close

    def _connect_failed(self, failure: Failure) -> None:
        self.phase = None
        # a cancelled TCP connect fails with ConnectingCancelledError, not CancelledError:
        # whatever the error, a connect that a stop cut short is a cancelled start
        if self._stop_requested or failure.check(CancelledError):
            failure = Failure(StartCancelled("the start was cancelled by a stop request"))
        self._settle(failure)

    def _start_timed_out(self, timeout: float) -> None:
        self._start_timer = None
        if self._stop_requested:
            error: ContainerError = StartCancelled("the start was cancelled by a stop request")
        else:
            error = ComponentStartFailed(
                f"component did not become ready within {timeout:g} s "
                f"({self._whereabouts()})",
                cause="timeout",
            )
        self._settle(error)
        self._abort()

    def _whereabouts(self) -> str:
        """Where a start that is taking too long is, truthfully."""
        where = self.spec.transport.describe()
        if self.phase == ONJOIN_RUNNING:
            return (f"joined realm '{self.spec.realm}' over {where}; its onJoin is still "
                    f"running and it did not say it is ready")
        if self.phase == JOINING:
            return f"joining realm '{self.spec.realm}' over {where}"
        return f"connecting to {where}"

    def transport_opened(self) -> None:
        self._opened = True
        self.phase = JOINING

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
        if self._stop_requested or self._own_leave is not None or self._close_details:
            self._fail_start(self._left_before_ready())
            return
        self.ready_by = by
        self._ready_reached = True
        self._settle(self._details)

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
            self.component_exit(f"{where} raised {_describe_exit(error)}")
        else:
            self._join_failed = True
            self.log.error("{where} raised {error_type}: {error}", where=where,
                           error_type=type(error).__name__, error=error)
            text = f"{where} raised {type(error).__name__}: {error}"
            if self._ready_reached:
                self._crash = text
                self._close_session("crossbar.error.component_failed", text)
            else:
                self._fail_start(ComponentStartFailed(text, cause="onJoin"))
                self._close_session("crossbar.error.cannot_start", text)
        # a join handler's failure is handled: the gathered handlers then count as done;
        # onJoin's never fires, so autobahn's "ready" event never follows a failed onJoin
        return None if where != "onJoin" else Deferred()

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

    def left(self, details: CloseDetails) -> None:
        self._close_details = details
        if not self.ready.called:
            self._fail_start(self._left_before_ready())

    def _left_before_ready(self) -> ContainerError:
        if self._stop_requested:
            return StartCancelled("the start was cancelled by a stop request")
        return ComponentStartFailed(
            f"component left before it was ready: {self._leave_text()}", cause="left"
        )

    def _leave_text(self) -> str:
        if self._own_leave is not None:
            reason, message = self._own_leave
        elif self._close_details is not None:
            reason, message = self._close_details.reason, self._close_details.message or ""
        else:
            return "session closed"
        return f"{reason} {message}".strip()

    def _transport_closed(self, reason: BaseException) -> None:
        self._closed = True
        self.phase = None
        timer, self._grace_timer = self._grace_timer, None
        if timer is not None and timer.active():
            timer.cancel()
        code, self._join_code = self._join_code, None
        if code is not None and not code.called:
            code.cancel()  # nothing of the session stays running: its onJoin loop included
        if not self._ready_reached:
            self._fail_start(self._closed_before_ready(reason))
        elif not self._end_told:
            self._end_told = True
            self._on_end(self._owner, self, self._end())
        waiters, self._closed_waiters = self._closed_waiters, None
        for waiter in waiters or ():
            if not waiter.called:
                waiter.callback(None)

    def _closed_before_ready(self, reason: BaseException) -> ContainerError:
        if not self._opened and not self._stop_requested:
            why = self.connection.close_reason if self.connection else ""
            return CannotConnect(
                f"cannot connect to {self.spec.transport.describe()}: the router closed the "
                f"connection during the opening handshake{': ' + why if why else ''}",
                transport=self.spec.transport.kind,
                url=self.spec.transport.url or None,
            )
        return self._left_before_ready()

    def _end(self) -> SessionEnd:
        if self._stop_requested:
            return SessionEnd(StopReason.REQUESTED, "stop requested")
        if self._crash is not None:
            return SessionEnd(StopReason.FAILED, self._crash)
        if self._own_leave is not None:
            reason, message = self._own_leave
            clean = reason.startswith("wamp.close.")
            text = f"component left: {reason} {message}".strip()
            return SessionEnd(StopReason.LEFT if clean else StopReason.FAILED, text)
        if self._close_details is not None and self._close_details.reason != (
            CloseDetails.REASON_TRANSPORT_LOST
        ):
            details = self._close_details
            text = f"router closed the session: {details.reason} {details.message or ''}"
            lost = details.reason in SHUTDOWN_REASONS
            return SessionEnd(StopReason.LOST if lost else StopReason.FAILED, text.strip())
        return SessionEnd(StopReason.LOST, "transport to the router was lost")

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
                self._settle(StartCancelled("the start was cancelled by a stop request"))
            return succeed(None)
        self._close_session("wamp.close.normal", "stopped by the container")
        waiter = self._when_closed()
        waiter.addTimeout(timeout, self.reactor, onTimeoutCancel=self._stop_timed_out)
        return waiter

    def _stop_timed_out(self, result: Any, timeout: float) -> None:
        self.log.warn("did not close within {timeout} s: aborting its transport", timeout=timeout)
        self._abort()
        # the abort drops the transport now; the stop does not wait for it to say so
        return None

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
        session = self.session
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


def _name(handler: Any) -> str:
    return getattr(handler, "__qualname__", None) or repr(handler)


# -- one component must not stop the process ----------------------------------------------


class _Ambiguous:
    """Component code called ``reactor.stop()``, but which component's cannot be told."""

    def __init__(self, module: str, ids: list[str]) -> None:
        self.module = module
        self.ids = ids


RunSource = Callable[[], Iterable[SessionRun]]


class ReactorStopGuard:
    """``reactor.stop()`` called by a hosted component's code ends that component only.

    Installed on the worker's reactor (:func:`guard_reactor_stop`), it replaces the
    reactor's ``stop``. A call is traced to a component by, in turn:

    1. the component context (``container.context``) the container sets around all of a
       component's code -- construction, every message the router sends it, its
       transport's end -- and which Twisted carries through its coroutines;
    2. the call stack: a frame whose ``self`` or ``session`` is a hosted session;
    3. the call stack: a frame of a module a hosted component was loaded from (imported
       after the guard was installed, so never the worker's or a library's), when only one
       running component comes from it (when several do, the call is refused and logged:
       it is some component's, never the worker's).

    A traced call makes that component leave its realm (stop reason ``left``); any other
    call -- the worker's own, at its end -- stops the reactor. ``reactor.callLater(t,
    reactor.stop)`` made by a component is traced when it is made.
    """

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        self._real_stop = reactor.stop
        self._real_call_later = reactor.callLater
        self._sources: list[RunSource] = []
        # modules loaded before any component (the worker's, its libraries') are never a
        # component's own, whatever a classname says
        self._baseline = frozenset(sys.modules)

    def install(self) -> None:
        self._reactor.stop = self.stop
        self._reactor.callLater = self.call_later

    def add_source(self, source: RunSource) -> None:
        """Where the runs to search come from (a supervisor's components)."""
        self._sources.append(source)

    def remove_source(self, source: RunSource) -> None:
        if source in self._sources:
            self._sources.remove(source)

    def stop(self) -> None:
        self._stop_for(self.attribute(), "called reactor.stop()")

    def call_later(self, delay: float, function: Any, *args: Any, **kwargs: Any) -> Any:
        if function == self.stop:
            owner = self.attribute()
            if owner is not None:
                return self._real_call_later(delay, self._stop_for, owner,
                                             "called reactor.stop() (from reactor.callLater)")
        return self._real_call_later(delay, function, *args, **kwargs)

    def _stop_for(self, owner: SessionRun | _Ambiguous | None, what: str) -> None:
        if owner is None:
            self._real_stop()
        elif isinstance(owner, _Ambiguous):
            _guard_log.warn(
                "code of module {module}, shared by components {ids}, {what}: ignored; the "
                "worker and its components keep running", module=owner.module,
                ids=", ".join(owner.ids), what=what)
        else:
            owner.component_exit(f"the component {what}")

    def attribute(self) -> SessionRun | _Ambiguous | None:
        """The run whose component's code is calling, if any (see the class docstring)."""
        run = _running.get()
        if run is not None:
            return run  # type: ignore[no-any-return]
        frame = sys._getframe(1)
        by_module: dict[str, list[SessionRun]] | None = None
        while frame is not None:
            code = frame.f_code
            for name in ("self", "session"):
                if name in code.co_varnames:
                    candidate = frame.f_locals.get(name)
                    if isinstance(candidate, SupervisedSession):
                        return candidate._container_run
            if by_module is None:
                by_module = self._runs_by_module()
            runs = by_module.get(frame.f_globals.get("__name__", ""))
            if runs:
                if len(runs) == 1:
                    return runs[0]
                return _Ambiguous(frame.f_globals["__name__"],
                                  sorted(str(run.component_id) for run in runs))
            frame = frame.f_back  # type: ignore[assignment]
        return None

    def _runs_by_module(self) -> dict[str, list[SessionRun]]:
        by_module: dict[str, list[SessionRun]] = {}
        for source in self._sources:
            for run in source():
                if not run._closed:
                    for module in run.spec.modules:
                        if module not in self._baseline:
                            by_module.setdefault(module, []).append(run)
        return by_module


_guard_log = txaio.make_logger()


def guard_reactor_stop(reactor: Any, source: RunSource) -> ReactorStopGuard:
    """Install the :class:`ReactorStopGuard` on ``reactor`` (once) and search ``source``."""
    guard = getattr(reactor, "_container_stop_guard", None)
    if guard is None:
        guard = ReactorStopGuard(reactor)
        guard.install()
        reactor._container_stop_guard = guard
    guard.add_source(source)
    return guard  # type: ignore[no-any-return]

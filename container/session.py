"""One run of a hosted component's WAMP session: connect, join, ready, and how it ended.

autobahn swallows an exception from ``onJoin`` and still fires "ready", and tells the
session nothing when a WebSocket handshake fails. The container needs both facts, so the
user's session class is wrapped (a subclass with :class:`SupervisedSession` first in the
MRO, cached per class and named like it) whose hooks report to the :class:`SessionRun`,
and the transport's end comes from the connector. A ``SessionRun`` is used once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from autobahn.twisted.wamp import ApplicationSession
from autobahn.wamp import auth as wamp_auth
from autobahn.wamp.types import CloseDetails, ComponentConfig, SessionDetails
from twisted.internet.defer import CancelledError, Deferred, maybeDeferred, succeed
from twisted.python.failure import Failure

from container import connector
from container.config import ComponentSpec
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
    """Mixin placed before the user's session class; reports to its ``SessionRun``."""

    _container_run: SessionRun

    def onOpen(self, transport: Any) -> None:
        self._container_run.transport_opened()
        super().onOpen(transport)  # type: ignore[misc]

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

    def onJoin(self, details: SessionDetails) -> Deferred[None]:
        run = self._container_run
        result = maybeDeferred(super().onJoin, details)  # type: ignore[misc]
        result.addCallbacks(lambda _: run.join_finished(details), run.join_failed)
        return result

    def leave(self, reason: str | None = None, message: str | None = None) -> Any:
        self._container_run.leaving(reason, message)
        return super().leave(reason, message)  # type: ignore[misc]

    def onLeave(self, details: CloseDetails) -> Any:
        self._container_run.left(details)
        result = maybeDeferred(super().onLeave, details)  # type: ignore[misc]
        result.addBoth(lambda _: self.disconnect())  # type: ignore[attr-defined]
        return result


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


def supervised_class(session_class: type[ApplicationSession]) -> type:
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


class SessionRun:
    """Build, connect and watch one session of a component, from connect to its end."""

    __slots__ = (
        "_build",
        "_close_details",
        "_closed_waiters",
        "_component_config",
        "_connecting",
        "_end_told",
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
        "reactor",
        "ready",
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
        self.ready: Deferred[SessionDetails] = Deferred()
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
        self._stop_requested = False
        self._own_leave: tuple[str, str] | None = None
        self._close_details: CloseDetails | None = None
        self._start_error: ContainerError | None = None
        self._ready_reached = False
        self._start_timer: Any = None

    # -- starting ---------------------------------------------------------------------------

    def start(self, timeout: float) -> Deferred[SessionDetails]:
        """Connect and join; the Deferred fires with the session details once ready."""
        try:
            session = self._build(self._component_config)
        except Exception as error:
            raise ComponentStartFailed(
                f"component constructor raised {type(error).__name__}: {error}",
                cause="constructor",
            ) from None
        session._container_run = self  # type: ignore[attr-defined]
        share_class_logger(session)
        self.session = session
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
        """Fire ``ready`` once, with the details or the error, and stop the start timer."""
        timer, self._start_timer = self._start_timer, None
        if timer is not None and timer.active():
            timer.cancel()
        if self.ready.called:
            return
        if isinstance(outcome, SessionDetails):
            self.ready.callback(outcome)
        else:
            self.ready.errback(outcome)

    def _session_for_transport(self) -> ApplicationSession:
        assert self.session is not None
        return self.session

    def _connected(self, connection: connector.ClientConnection) -> None:
        self._connecting = None  # nothing left to cancel

    def _connect_failed(self, failure: Failure) -> None:
        if failure.check(CancelledError):
            failure = Failure(StartCancelled("the start was cancelled by a stop request"))
        self._settle(failure)

    def _start_timed_out(self, timeout: float) -> None:
        self._start_timer = None
        if self._stop_requested:
            error: ContainerError = StartCancelled("the start was cancelled by a stop request")
        else:
            doing = "joining" if self._opened else "connecting to"
            error = ComponentStartFailed(
                f"component did not become ready within {timeout:g} s "
                f"({doing} {self.spec.transport.describe()})",
                cause="timeout",
            )
        self._settle(error)
        self._abort()

    def transport_opened(self) -> None:
        self._opened = True

    def join_finished(self, details: SessionDetails) -> None:
        if self._stop_requested or self._own_leave is not None or self._close_details:
            self._fail_start(self._left_before_ready())
            return
        if not self.ready.called:
            self._ready_reached = True
            self._settle(details)

    def join_failed(self, failure: Failure) -> None:
        error = failure.value
        self.log.error(
            "onJoin raised {error_type}: {error}",
            error_type=type(error).__name__,
            error=error,
        )
        self._fail_start(
            ComponentStartFailed(
                f"onJoin raised {type(error).__name__}: {error}", cause="onJoin"
            )
        )
        self._close_session("crossbar.error.cannot_start", f"onJoin raised: {error}")

    def _fail_start(self, error: ContainerError) -> None:
        if self._start_error is None:
            self._start_error = error
        self._settle(error)

    # -- leaving ----------------------------------------------------------------------------

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
        """Leave (GOODBYE) and close the transport; abort it after ``timeout`` seconds."""
        self._stop_requested = True
        if self._connecting is not None and not self._connecting.called:
            self._connecting.cancel()
        if self.connection is None or self.connection.is_closed:
            return succeed(None)
        self._close_session("wamp.close.normal", "stopped by the container")
        waiter = self._when_closed()
        waiter.addTimeout(timeout, self.reactor, onTimeoutCancel=self._stop_timed_out)
        return waiter

    def _stop_timed_out(self, result: Any, timeout: float) -> Deferred[None]:
        self.log.warn("did not close within {timeout} s: aborting its transport", timeout=timeout)
        self._abort()
        return self._when_closed()

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


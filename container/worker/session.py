"""The session classes the container runs: the user's, wrapped to report to its run.

autobahn swallows an exception from ``onJoin`` and still fires "ready", and it does not say
whose code is running. So the user's session class is wrapped: a subclass with
:class:`SupervisedSession` first in the MRO (cached per class and named like it) whose hooks
report to the component's :class:`~container.worker.run.SessionRun` and set the component's
context around all of its code. :class:`FunctionSession` is the session of a ``function``
component. Sessions of one class share one logger (:func:`share_class_logger`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from autobahn.twisted.wamp import ApplicationSession
from autobahn.wamp import auth as wamp_auth
from autobahn.wamp import protocol
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import CloseDetails, ComponentConfig, SessionDetails
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.python.failure import Failure

from container.components import ComponentSpec
from container.context import _running
from container.worker.outcome import describe_exit

if TYPE_CHECKING:
    from container.worker.run import SessionRun


class SupervisedSession:
    """Mixin placed before the user's session class; reports to its ``SessionRun``.

    Everything the transport hands the session (its opening, each message, its end) runs
    with the component's context set (``container.context``), so any code of the component
    -- handlers, ``onJoin`` and the coroutines it starts -- is known to be that component's.
    """

    _container_run: SessionRun

    def _container_base(self) -> Any:
        """The user's session class's own methods: this class is a mixin in front of it
        (named so that no session class of a user has the same attribute)."""
        return super()

    def onOpen(self, transport: Any) -> None:
        run = self._container_run
        run.transport_opened()
        token = _running.set(run)
        try:
            self._container_base().onOpen(transport)
        finally:
            _running.reset(token)

    def onMessage(self, msg: Any) -> None:
        token = _running.set(self._container_run)
        try:
            self._container_base().onMessage(msg)
        finally:
            _running.reset(token)

    def onClose(self, wasClean: bool) -> None:
        token = _running.set(self._container_run)
        try:
            self._container_base().onClose(wasClean)
        finally:
            _running.reset(token)

    def onConnect(self) -> Any:
        spec = self._container_run.spec
        if spec.auth is None and spec.role is None:
            return self._container_base().onConnect()
        authid, authrole, methods = _join_arguments(spec)
        session: Any = self
        session.join(spec.realm, authmethods=methods, authid=authid, authrole=authrole)
        return None

    def onChallenge(self, challenge: Any) -> Any:
        auth = self._container_run.spec.auth or {}
        if challenge.method == "ticket" and "ticket" in auth:
            return auth["ticket"]["ticket"]
        if challenge.method == "wampcra" and "wampcra" in auth:
            return _wampcra_signature(auth["wampcra"]["secret"], challenge.extra)
        return self._container_base().onChallenge(challenge)

    def fire(self, event: str, *args: Any, **kwargs: Any) -> Any:
        """autobahn fires ``join`` once welcomed, before ``onJoin``: that is the join."""
        if event != "join":
            return self._container_base().fire(event, *args, **kwargs)
        return self._container_run.run_join_handlers(self, args, kwargs)

    def onJoin(self, details: SessionDetails) -> Deferred[None]:
        run = self._container_run
        if not run.join_code_may_run():
            return Deferred()  # the join failed or the session is ending: no "ready" event
        result: Deferred[None] = maybeDeferred(self._container_base().onJoin, details)
        result.addCallbacks(run.join_finished, run.join_failed, errbackArgs=("onJoin",))
        run.join_code_pending(result)
        return result

    def leave(self, reason: str | None = None, message: str | None = None) -> Any:
        self._container_run.leaving(reason, message)
        return self._container_base().leave(reason, message)

    def onLeave(self, details: CloseDetails) -> Any:
        run = self._container_run
        run.left(details)
        result: Deferred[Any] = maybeDeferred(self._container_base().onLeave, details)
        session: Any = self

        def disconnect(outcome: object) -> None:
            session.disconnect()

        result.addErrback(_log_handler_failure, run.log, "onLeave")
        result.addBoth(disconnect)
        return result

    def onUserError(self, fail: Any, msg: str) -> None:
        """A handler raised: ``SystemExit`` ends this component; a WAMP error (a procedure's
        deliberate answer, which its caller got) is one line, as autobahn logs it; anything
        else is logged with its traceback. Every line names the component."""
        error = getattr(fail, "value", None)
        log = self._container_run.log
        if isinstance(error, SystemExit):
            self._container_run.component_exit(f"a handler raised {describe_exit(error)}")
        elif isinstance(error, ApplicationError):
            log.warn("a handler raised {error}", error=error.error_message().rstrip(": "))
        elif error is not None and str(error) and str(error) in msg:
            log.error("{msg}\n{traceback}", msg=msg, traceback=fail.getTraceback())
        else:
            _log_handler_failure(fail, log, msg)


def _log_handler_failure(failure: Failure, log: Any, where: str) -> None:
    """A user handler (``onLeave``, a ``leave`` or ``disconnect`` observer, ...) raised: say
    so with the component's id (``log`` is its tagged logger), the error and the traceback."""
    log.error("{where} raised {error_type}: {error}\n{traceback}", where=where,
              error_type=type(failure.value).__name__, error=failure.value,
              traceback=failure.getTraceback())


def _join_arguments(spec: ComponentSpec) -> tuple[str | None, str | None, list[str]]:
    auth = spec.auth or {"anonymous": {"authrole": spec.role}}
    first = next(iter(auth.values()))
    return first.get("authid"), first.get("authrole", spec.role), list(auth)


def _wampcra_signature(secret: str, extra: dict[str, Any]) -> str:
    key = secret.encode("utf8")
    if "salt" in extra:
        key = wamp_auth.derive_key(secret, extra["salt"], extra["iterations"], extra["keylen"])
    signature: bytes = wamp_auth.compute_wcs(key, extra["challenge"].encode("utf8"))
    return signature.decode("ascii")


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
                self.on(event, callback)  # type: ignore[no-untyped-call]

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


_class_loggers: dict[type, Any] = {}


def share_class_logger(session: ApplicationSession) -> None:
    """Give the session the logger its class's other sessions use.

    autobahn makes a txaio logger for every session (``self.log``, named after the session
    class): a dozen bound methods each, a visible share of a hosted component's memory
    (docs/benchmarks.md). All sessions of one class get an identical logger (same
    namespace, global level), so they share the first one. A logger the session made under
    another name or gave its own level is kept.
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


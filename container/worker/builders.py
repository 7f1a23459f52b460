"""What a component's configuration names, turned into a function that builds its session.

A ``class`` component's ``classname`` names a session class, an autobahn ``Component``
object or an ``Application`` object; a ``function`` component names callbacks. Each becomes
a :data:`SessionBuilder`: ``ComponentConfig -> session``, the session always wrapped by
:class:`~container.worker.session.SupervisedSession`, so the container runs every shape the
same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from autobahn.twisted.wamp import ApplicationSession
from autobahn.wamp import protocol
from autobahn.wamp.auth import create_authenticator
from autobahn.wamp.interfaces import IAuthenticator
from autobahn.wamp.types import ComponentConfig, SessionDetails
from twisted.internet.defer import Deferred, maybeDeferred

from container.components import ComponentSpec
from container.worker.loader import describe_object, load_callbacks, load_class_component
from container.worker.session import FunctionSession, SupervisedSession, supervised_class

SessionBuilder = Callable[[ComponentConfig], ApplicationSession]


def builder_for(spec: ComponentSpec) -> SessionBuilder:
    """Import the code ``spec`` names and return how to build its sessions.

    Raises ``ClassImportFailed`` when the code cannot be imported or is of no known shape.
    """
    if spec.kind == "class":
        return session_builder(load_class_component(spec.classname))
    return _function_builder(load_callbacks(spec.callbacks))


def _function_builder(callbacks: dict[str, Callable[..., Any]]) -> SessionBuilder:
    function_class = supervised_class(FunctionSession)

    def build(config: ComponentConfig) -> ApplicationSession:
        return cast(ApplicationSession, function_class(config, callbacks))

    return build


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
        return supervised_class(code)
    from autobahn.twisted.wamp import Application

    if isinstance(code, Application):
        return _application_builder(code)
    return _component_builder(code)


def _supervised_session(factory: Any, config: ComponentConfig) -> ApplicationSession:
    """A session from ``factory`` (a session class or any callable returning a session)
    with :class:`SupervisedSession` in front of its class."""
    if isinstance(factory, type) and issubclass(factory, protocol.ApplicationSession):
        return cast(ApplicationSession, supervised_class(factory)(config))
    session = factory(config)
    if not isinstance(session, protocol.ApplicationSession):
        raise TypeError(f"the session factory, {describe_object(factory)}, returned "
                        f"{describe_object(session)}, which is not an autobahn ApplicationSession")
    if not isinstance(session, SupervisedSession):
        session.__class__ = supervised_class(type(session))
    return cast(ApplicationSession, session)


def _component_builder(component: Any) -> SessionBuilder:
    def build(config: ComponentConfig) -> ApplicationSession:
        if config.extra is None:
            config.extra = component._extra
        built = _supervised_session(component.session_factory, config)
        session: Any = built  # autobahn's private attributes are set below
        for name, settings in (component._authentication or {}).items():
            if isinstance(settings, IAuthenticator):
                session.add_authenticator(settings)
            else:
                session.add_authenticator(create_authenticator(name, **settings))
        # the component's handlers hear the session's events, as under Component.start()
        session._parent = component
        if session._listeners is None:  # autobahn's fire() skips the parent without them
            session._listeners = {}
        if component._entry is not None:
            session.on("join", _main_runner(component._entry))
        return built

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
        return cast(ApplicationSession, session)

    return build



"""Fakes for the session-run tests on a fake clock: a component spec, its owner, a log that
keeps its lines, a session whose onJoin returns a Deferred the test fires, and ``Harness``: a
session run on a ``task.Clock`` with a stand-in transport the test closes.

autobahn's welcome is played by calling the session's ``fire("join")`` and then its
``onJoin``, in autobahn's order (``Harness.welcome``).
"""

from __future__ import annotations

from typing import Any

from autobahn.twisted.wamp import ApplicationSession
from autobahn.wamp.types import ComponentConfig, SessionDetails
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from container import connector
from container.components import parse_component
from container.worker.builders import session_builder
from container.worker.run import SessionRun

SPEC = parse_component({"type": "class", "classname": "x.Y", "realm": "realm1",
                        "transport": {"type": "rawsocket", "endpoint": {
                            "type": "tcp", "host": "127.0.0.1", "port": 9}}})


class Owner:
    id = "c1"


class Log:
    """A logger (any level) that keeps the formatted lines."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __getattr__(self, level: str) -> Any:
        return lambda text, **fields: self.lines.append(text.format(**fields))


class JoinsOnCue(ApplicationSession):
    """Its onJoin returns the Deferred the test holds (``cue``)."""

    cue: Deferred[Any]

    def onJoin(self, details: SessionDetails) -> Deferred[Any]:
        self.cue = Deferred()
        return self.cue


DETAILS = SessionDetails(realm="realm1", session=42)


class FakeConnection(connector.ClientConnection):
    """A transport that closes when told to (close, abort) and says so."""

    def close(self) -> None:
        self.transport_closed(None, Failure(ConnectionDone()))  # type: ignore[arg-type]

    abort = close


class Harness:
    def __init__(self, monkeypatch: Any, session_class: Any = JoinsOnCue,
                 grace: float = 1.0, timeout: float = 30.0) -> None:
        self.clock = Clock()
        self.ends: list[Any] = []
        self.connection: FakeConnection | None = None
        monkeypatch.setattr(connector, "connect", self._connect)
        self.run = SessionRun(self.clock, SPEC, session_builder(session_class),
                              ComponentConfig(realm="realm1"), Log(),
                              lambda owner, run, end: self.ends.append(end), Owner())
        self.ready = self.run.start(timeout, grace)
        self.session: Any = self.run.session

    def _connect(self, reactor: Any, spec: Any, factory: Any, on_closed: Any) -> Any:
        self.connection = FakeConnection(on_closed)
        return self.connection, succeed(self.connection)

    def welcome(self) -> None:
        """autobahn after WELCOME: the join handlers, then onJoin."""
        self.run.transport_opened()
        joined = self.session.fire("join", self.session, DETAILS)
        joined.addCallback(lambda _: self.session.onJoin(DETAILS))

    def outcome(self) -> Any:
        results: list[Any] = []
        self.ready.addBoth(results.append)
        return results[0] if results else None

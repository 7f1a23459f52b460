"""A session run's stop answers within its timeout, whatever the run is doing (issue 12).

The run connects through a stand-in connector whose connect the test never completes, or
whose transport never reports its close: the stop must answer anyway. Every test ends with
no timer left.
"""

from __future__ import annotations

from typing import Any

from autobahn.wamp.types import ComponentConfig
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectingCancelledError
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from container import connector
from container.errors import CannotConnect, StartCancelled
from container.worker.builders import session_builder
from container.worker.run import SessionRun
from tests.support.sessions import SPEC, JoinsOnCue, Log, Owner


class SilentConnection(connector.ClientConnection):
    """A transport that never reports its close, whatever it is told (close, abort)."""

    def close(self) -> None:
        self.closes = getattr(self, "closes", 0) + 1

    abort = close


class Harness:
    def __init__(self, monkeypatch: Any, connected: bool) -> None:
        self.clock = Clock()
        self.connected = connected
        monkeypatch.setattr(connector, "connect", self._connect)
        self.run = SessionRun(self.clock, SPEC, session_builder(JoinsOnCue),
                              ComponentConfig(realm="realm1"), Log(),
                              lambda owner, run, end: None, Owner())
        self.ready = self.run.start(30.0, 1.0)
        self.outcomes: list[Any] = []
        self.ready.addBoth(self.outcomes.append)

    def _connect(self, reactor: Any, spec: Any, factory: Any, on_closed: Any) -> Any:
        self.connection = SilentConnection(on_closed)
        if self.connected:
            return self.connection, succeed(self.connection)

        def cancel(attempt: Deferred[Any]) -> None:
            # what a TCP endpoint does: a failed connect, not a CancelledError
            attempt.errback(ConnectingCancelledError(("127.0.0.1", 9)))

        def failed(failure: Failure) -> Failure:
            raise CannotConnect(f"cannot connect: {failure.value}")

        attempt: Deferred[Any] = Deferred(cancel)
        return self.connection, attempt.addErrback(failed)


def test_a_stop_while_connecting_answers_at_once_and_cancels_the_start(monkeypatch):
    h = Harness(monkeypatch, connected=False)
    answers: list[Any] = []
    h.run.stop(5.0).addBoth(answers.append)
    assert answers == [None]
    (outcome,) = h.outcomes
    assert isinstance(outcome.value, StartCancelled)  # not CannotConnect
    assert h.clock.getDelayedCalls() == []


def test_a_stop_after_a_failed_connect_answers_at_once(monkeypatch):
    h = Harness(monkeypatch, connected=False)
    h.clock.advance(30.0)  # the start timed out while connecting
    assert h.outcomes and not isinstance(h.outcomes[0].value, StartCancelled)
    answers: list[Any] = []
    h.run.stop(5.0).addBoth(answers.append)
    assert answers == [None]
    assert h.clock.getDelayedCalls() == []


def test_a_transport_that_never_closes_is_given_up_at_the_stop_timeout(monkeypatch):
    h = Harness(monkeypatch, connected=True)
    answers: list[Any] = []
    h.run.stop(5.0).addBoth(answers.append)
    h.clock.advance(4.999)
    assert answers == []
    h.clock.advance(0.001)
    assert answers == [None]  # aborted, and answered without waiting for the close
    assert h.connection.closes == 2  # closed, then aborted
    h.clock.advance(30.0)  # the start timer (it never joined) ends too
    assert h.clock.getDelayedCalls() == []

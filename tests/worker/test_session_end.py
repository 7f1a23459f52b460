"""How a session run ended, on a fake clock: a start that never got ready fails with the error
its caller can act on; a session that was ready ends with the stop reason the restart policy
acts on (only ends the container did not cause may restart it). Every test ends with no
timer left."""

from __future__ import annotations

from typing import Any

import pytest
from autobahn.twisted.wamp import ApplicationSession
from autobahn.wamp.types import CloseDetails, ComponentConfig
from twisted.internet.task import Clock

from container.errors import CannotConnect, ComponentStartFailed, StartCancelled
from container.policy import StopReason
from container.worker.builders import session_builder
from container.worker.run import SessionRun
from tests.support.sessions import SPEC, Harness, Log, Owner

# -- before it was ready: the start fails -----------------------------------------------------


class Exploding(ApplicationSession):
    def __init__(self, config: ComponentConfig) -> None:
        raise ValueError("no database URL in extra")


def test_a_constructor_that_raises_fails_the_start_before_connecting():
    clock = Clock()
    run = SessionRun(clock, SPEC, session_builder(Exploding), ComponentConfig(realm="realm1"),
                     Log(), lambda owner, run, end: None, Owner())
    with pytest.raises(ComponentStartFailed) as caught:
        run.start(30.0)
    assert str(caught.value) == "component constructor raised ValueError: no database URL in extra"
    assert caught.value.details["cause"] == "constructor"
    assert run.connection is None
    assert clock.getDelayedCalls() == []


def test_a_router_that_closes_during_the_handshake_is_a_failed_connect(monkeypatch):
    h = Harness(monkeypatch)
    assert h.connection is not None
    h.connection.close_reason = "WebSocket connection upgrade failed (404)"
    h.connection.close()  # before the transport opened: WebSocket/RawSocket refused it
    error = h.outcome().value
    assert isinstance(error, CannotConnect)
    assert str(error) == ("cannot connect to rawsocket cbor over tcp 127.0.0.1:9: the router "
                          "closed the connection during the opening handshake: WebSocket "
                          "connection upgrade failed (404)")
    assert h.ends == []
    assert h.clock.getDelayedCalls() == []


def test_a_join_the_router_refuses_fails_the_start_with_its_reason(monkeypatch):
    h = Harness(monkeypatch)
    assert h.connection is not None
    h.run.transport_opened()
    h.run.left(CloseDetails(reason="wamp.error.not_authorized", message="no such role"))
    h.connection.close()
    error = h.outcome().value
    assert isinstance(error, ComponentStartFailed)
    assert str(error) == ("component left before it was ready: wamp.error.not_authorized "
                          "no such role")
    assert error.details["cause"] == "left"
    assert h.ends == []  # it never ran: its end is the start's error, told once
    assert h.clock.getDelayedCalls() == []


def test_a_transport_lost_while_joining_fails_the_start(monkeypatch):
    h = Harness(monkeypatch)
    assert h.connection is not None
    h.run.transport_opened()
    h.connection.close()
    error = h.outcome().value
    assert isinstance(error, ComponentStartFailed)
    assert str(error) == "component left before it was ready: session closed"
    assert h.clock.getDelayedCalls() == []


def test_a_stop_before_ready_cancels_the_start_and_is_no_end(monkeypatch):
    h = Harness(monkeypatch)
    h.run.transport_opened()
    h.run.stop(5.0)
    assert isinstance(h.outcome().value, StartCancelled)
    assert h.ends == []
    assert h.clock.getDelayedCalls() == []


# -- after it was ready: the end, and why ------------------------------------------------------


def _transport_lost(h: Harness) -> None:
    pass


def _router_shutting_down(h: Harness) -> None:
    h.run.left(CloseDetails(reason="wamp.close.system_shutdown", message="router stops"))


def _router_killed_it(h: Harness) -> None:
    h.run.left(CloseDetails(reason="wamp.close.killed", message="by an operator"))


def _left_cleanly(h: Harness) -> None:
    h.run.leaving("wamp.close.normal", "work done")


def _left_with_an_error(h: Harness) -> None:
    h.run.leaving("com.example.error.no_database", "lost it")


@pytest.mark.parametrize(("ending", "reason", "message"), [
    (_transport_lost, StopReason.LOST, "transport to the router was lost"),
    (_router_shutting_down, StopReason.LOST,
     "router closed the session: wamp.close.system_shutdown router stops"),
    (_router_killed_it, StopReason.FAILED,
     "router closed the session: wamp.close.killed by an operator"),
    (_left_cleanly, StopReason.LEFT, "component left: wamp.close.normal work done"),
    (_left_with_an_error, StopReason.FAILED,
     "component left: com.example.error.no_database lost it"),
])
def test_how_a_ready_session_ended_is_its_stop_reason(monkeypatch, ending: Any,
                                                      reason: StopReason, message: str):
    h = Harness(monkeypatch, grace=0)
    assert h.connection is not None
    h.welcome()
    assert h.outcome() is not None and h.run.ready_by == "grace"
    ending(h)
    h.connection.close()
    assert [(end.reason, end.message) for end in h.ends] == [(reason, message)]
    assert h.clock.getDelayedCalls() == []


def test_a_requested_stop_of_a_ready_session_ends_it_as_requested(monkeypatch):
    h = Harness(monkeypatch, grace=0)
    h.welcome()
    stopped: list[Any] = []
    h.run.stop(5.0).addBoth(stopped.append)
    assert stopped == [None]  # the transport closed at once
    assert [(end.reason, end.message) for end in h.ends] == [
        (StopReason.REQUESTED, "stop requested")]
    assert h.clock.getDelayedCalls() == []


def test_the_end_is_told_once(monkeypatch):
    h = Harness(monkeypatch, grace=0)
    assert h.connection is not None
    h.welcome()
    h.connection.close()
    h.connection.transport_closed(None, None)  # type: ignore[arg-type]  # a late second report
    assert len(h.ends) == 1
    assert h.clock.getDelayedCalls() == []

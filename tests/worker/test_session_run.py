"""One session run on a fake clock: when a component is ready (its onJoin finished, it said
so, or its onJoin kept running for the ready grace period), and what a failure of its join
code means before and after that.

The transport is a stand-in the test closes (``run_harness``). Every test ends with no
timer left.
"""

from __future__ import annotations

from typing import Any

from autobahn.twisted.wamp import Session
from autobahn.wamp.types import ComponentConfig
from twisted.internet.defer import CancelledError, Deferred

from container.context import _running, current_component, outside_components, ready
from container.errors import ComponentStartFailed, StartCancelled
from container.policy import StopReason
from tests.support.sessions import DETAILS, Harness


def test_an_onjoin_still_running_after_the_grace_period_is_ready(monkeypatch):
    h = Harness(monkeypatch, grace=1.0)
    h.welcome()
    assert h.run.phase == "onjoin_running"
    h.clock.advance(0.999)
    assert not h.ready.called
    h.clock.advance(0.001)
    assert h.outcome() is DETAILS
    assert (h.run.ready_by, h.run.phase) == ("grace", "onjoin_running")
    assert h.clock.getDelayedCalls() == []  # the start timeout went with it
    h.session.cue.callback(None)
    assert h.run.phase == "joined"
    assert h.clock.getDelayedCalls() == []


def test_an_onjoin_that_finishes_first_is_ready_then_and_leaves_no_timer(monkeypatch):
    h = Harness(monkeypatch)
    h.welcome()
    h.clock.advance(0.5)
    h.session.cue.callback(None)
    assert h.outcome() is DETAILS
    assert (h.run.ready_by, h.run.phase) == ("onjoin", "joined")
    assert h.clock.getDelayedCalls() == []


def test_a_component_that_says_ready_is_ready_at_once(monkeypatch):
    h = Harness(monkeypatch, grace=60)
    h.welcome()
    assert ready(h.session) is True
    assert h.outcome() is DETAILS and h.run.ready_by == "ready_call"
    assert ready(h.session) is True  # saying it again changes nothing
    assert h.clock.getDelayedCalls() == []


def test_ready_without_a_session_means_the_component_whose_code_runs(monkeypatch):
    h = Harness(monkeypatch, grace=60)
    assert ready() is False and current_component() is None  # the container's own code
    token = _running.set(h.run)
    try:
        assert ready() is False  # not joined yet
        h.welcome()
        assert current_component() == "c1"
        assert outside_components(current_component) is None
        assert ready() is True
    finally:
        _running.reset(token)
    assert h.run.ready_by == "ready_call"
    assert h.clock.getDelayedCalls() == []


def test_a_zero_grace_is_ready_once_joined(monkeypatch):
    h = Harness(monkeypatch, grace=0)
    h.welcome()
    assert h.outcome() is DETAILS and h.run.ready_by == "grace"
    assert h.clock.getDelayedCalls() == []


def test_onjoin_raising_before_ready_fails_the_start(monkeypatch):
    h = Harness(monkeypatch)
    h.welcome()
    h.session.cue.errback(RuntimeError("no database"))
    error = h.outcome().value
    assert isinstance(error, ComponentStartFailed)
    assert error.details["cause"] == "onJoin"
    assert str(error) == "onJoin raised RuntimeError: no database"
    assert h.clock.getDelayedCalls() == []


def test_onjoin_raising_after_ready_is_a_crash(monkeypatch):
    h = Harness(monkeypatch, grace=0.5)
    h.welcome()
    h.clock.advance(0.5)
    h.session.cue.errback(RuntimeError("sensor unplugged"))
    assert [(end.reason, end.message) for end in h.ends] == [
        (StopReason.FAILED, "onJoin raised RuntimeError: sensor unplugged")]
    assert h.clock.getDelayedCalls() == []


def test_system_exit_from_onjoin_after_ready_ends_the_component_as_left(monkeypatch):
    h = Harness(monkeypatch, grace=0.5)
    h.welcome()
    h.clock.advance(0.5)
    h.session.cue.errback(SystemExit(3))
    h.clock.advance(0)  # it leaves once the code that exited has run to its end
    assert [(end.reason, end.message) for end in h.ends] == [
        (StopReason.LEFT, "component left: wamp.close.normal onJoin raised SystemExit(3)")]
    assert h.clock.getDelayedCalls() == []


def test_a_start_that_times_out_in_onjoin_says_so(monkeypatch):
    h = Harness(monkeypatch, grace=60, timeout=5)
    h.welcome()
    h.clock.advance(5)
    error = h.outcome().value
    assert isinstance(error, ComponentStartFailed)
    assert "did not become ready within 5 s (joined realm 'realm1'" in str(error)
    assert "its onJoin is still running" in str(error)
    assert h.session.cue.called  # closing the transport cancelled the onJoin still running
    h.outcome()
    assert h.clock.getDelayedCalls() == []


def test_a_start_that_times_out_while_joining_says_joining(monkeypatch):
    h = Harness(monkeypatch, timeout=5)
    h.run.transport_opened()
    h.clock.advance(5)
    assert "(joining realm 'realm1' over rawsocket" in str(h.outcome().value)
    assert h.clock.getDelayedCalls() == []


def test_cancelling_the_start_stops_its_timers(monkeypatch):
    h = Harness(monkeypatch)
    h.welcome()
    h.ready.cancel()
    assert h.outcome().check(CancelledError)
    assert h.clock.getDelayedCalls() == []
    h.run.stop(5)
    assert h.run.session.cue.called  # the session's end cancels its onJoin
    assert h.clock.getDelayedCalls() == []


def test_a_stop_during_a_long_onjoin_cancels_the_start(monkeypatch):
    h = Harness(monkeypatch, grace=60)
    h.welcome()
    h.run.stop(5)
    assert isinstance(h.outcome().value, StartCancelled)
    assert h.ends == []
    assert h.clock.getDelayedCalls() == []


class Handlers(Session):
    """A ``Session`` with join handlers of its own, as a Component's decorators add."""

    def __init__(self, config: ComponentConfig) -> None:
        super().__init__(config)
        self.gate: Deferred[None] = Deferred()
        self.on("join", lambda session, details: self.gate)
        self.on("join", self._failing)
        self.joined = False

    def _failing(self, session: Any, details: Any) -> None:
        if (self.config.extra or {}).get("fail"):
            raise ValueError("bad handler")

    def on_join(self, details: Any) -> None:
        self.joined = True


def test_join_handlers_still_running_count_as_join_code(monkeypatch):
    h = Harness(monkeypatch, session_class=Handlers, grace=1)
    h.welcome()
    h.clock.advance(1)
    assert h.run.ready_by == "grace" and not h.session.joined
    h.session.gate.callback(None)
    assert h.session.joined and h.run.phase == "joined"
    assert h.clock.getDelayedCalls() == []


def test_a_failing_join_handler_fails_the_start_at_once(monkeypatch):
    h = Harness(monkeypatch, session_class=Handlers)
    h.run._component_config.extra = {"fail": True}
    h.session.config.extra = {"fail": True}
    h.welcome()
    error = h.outcome().value
    assert str(error) == "join handler Handlers._failing raised ValueError: bad handler"
    assert h.session.gate.called  # the other handler was cancelled with the session
    assert not h.session.joined  # onJoin does not run after a failed join
    assert h.clock.getDelayedCalls() == []

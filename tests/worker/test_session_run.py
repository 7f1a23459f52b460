"""One session run on a fake clock: when a component is ready (its onJoin finished, it said
so, or its onJoin kept running for the ready grace period), what a failure of its join code
means before and after that, and how a component's reactor.stop() or SystemExit ends it.

The transport is a stand-in the test closes; autobahn's welcome is played by calling the
session's ``fire("join")`` and then its ``onJoin``, in autobahn's order. Every test ends with
no timer left.
"""

from __future__ import annotations

from typing import Any

import pytest
from autobahn.twisted.wamp import ApplicationSession, Session
from autobahn.wamp.types import ComponentConfig, SessionDetails
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from container import connector
from container.config import parse_component
from container.context import _running, current_component, outside_components, ready
from container.errors import ComponentStartFailed, StartCancelled
from container.policy import StopReason
from container.worker import session as session_module
from container.worker.session import (
    ReactorStopGuard,
    SessionRun,
    guard_reactor_stop,
    session_builder,
)

SPEC = parse_component({"type": "class", "classname": "x.Y", "realm": "realm1",
                        "transport": {"type": "rawsocket", "endpoint": {
                            "type": "tcp", "host": "127.0.0.1", "port": 9}}})
DETAILS = SessionDetails(realm="realm1", session=42)


class Owner:
    id = "c1"


class Log:
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
        monkeypatch.setattr(session_module.connector, "connect", self._connect)
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


# -- the reactor.stop guard ------------------------------------------------------------------


class FakeReactor:
    def __init__(self) -> None:
        self.stopped = 0
        self.clock = Clock()

    def stop(self) -> None:
        self.stopped += 1

    def callLater(self, delay: float, function: Any, *args: Any, **kwargs: Any) -> Any:
        return self.clock.callLater(delay, function, *args, **kwargs)


class FakeRun:
    def __init__(self, component_id: str, modules: tuple[str, ...] = ()) -> None:
        self.component_id = component_id
        self.spec = type("Spec", (), {"modules": modules})()
        self._closed = False
        self.exits: list[str] = []

    def component_exit(self, why: str) -> None:
        self.exits.append(why)


def guarded(runs: list[FakeRun]) -> tuple[FakeReactor, ReactorStopGuard]:
    reactor = FakeReactor()
    guard = guard_reactor_stop(reactor, lambda: runs)
    return reactor, guard


def test_a_stop_outside_any_component_stops_the_reactor():
    reactor, _ = guarded([FakeRun("a", ("somewhere_else",))])
    reactor.stop()
    assert reactor.stopped == 1


def test_a_stop_in_a_components_context_ends_that_component_only():
    run = FakeRun("a")
    reactor, _ = guarded([run])
    token = _running.set(run)
    try:
        reactor.stop()
        reactor.callLater(0, reactor.stop)
    finally:
        _running.reset(token)
    reactor.clock.advance(0)
    assert reactor.stopped == 0
    assert run.exits == ["the component called reactor.stop()",
                         "the component called reactor.stop() (from reactor.callLater)"]


def test_a_stop_from_a_hosted_sessions_method_is_traced_by_the_stack(monkeypatch):
    h = Harness(monkeypatch)
    reactor, _ = guarded([])

    def method_like(self: Any) -> None:
        reactor.stop()

    h.welcome()
    method_like(h.session)
    assert reactor.stopped == 0
    assert h.run._own_leave == ("wamp.close.normal", "the component called reactor.stop()")
    h.clock.advance(0)
    assert "left before it was ready" in str(h.outcome().value)
    assert h.clock.getDelayedCalls() == []


def _module_code(name: str, reactor: FakeReactor) -> Any:
    namespace: dict[str, Any] = {"__name__": name, "reactor": reactor}
    exec("def stop_now():\n    reactor.stop()\n", namespace)  # code "of" that module
    return namespace["stop_now"]


def test_a_stop_from_a_components_module_is_traced_by_the_stack():
    run = FakeRun("a", ("stopper_module",))
    reactor, _ = guarded([run, FakeRun("b", ("other",))])
    _module_code("stopper_module", reactor)()
    assert reactor.stopped == 0 and run.exits == ["the component called reactor.stop()"]


def test_a_stop_from_a_module_shared_by_two_components_is_refused():
    runs = [FakeRun("a", ("shared_module",)), FakeRun("b", ("shared_module",))]
    reactor, _ = guarded(runs)
    _module_code("shared_module", reactor)()
    assert reactor.stopped == 0 and runs[0].exits == runs[1].exits == []


def test_a_module_loaded_before_the_guard_is_never_taken_for_a_components():
    run = FakeRun("a", ("json",))  # a classname may name anything, a library included
    reactor, _ = guarded([run])
    _module_code("json", reactor)()
    assert reactor.stopped == 1 and run.exits == []


def test_the_guard_is_installed_once_per_reactor():
    reactor, first = guarded([])
    second = guard_reactor_stop(reactor, lambda: [])
    assert first is second
    assert reactor.stop == first.stop


@pytest.mark.parametrize("name", ["published.Greeter", "component_object.component",
                                  "app_object.app"])
def test_every_hosted_shape_builds_a_supervised_session(name):
    from container.worker.loader import load_class_component
    from container.worker.session import SupervisedSession

    built = session_builder(load_class_component(name))(ComponentConfig(realm="realm1"))
    assert isinstance(built, SupervisedSession)


def test_a_session_factory_that_is_a_function_is_wrapped_too():
    from autobahn.twisted.component import Component

    from container.worker.session import SupervisedSession

    component = Component(session_factory=lambda config: Session(config))
    built = session_builder(component)(ComponentConfig(realm="realm1"))
    assert isinstance(built, SupervisedSession) and isinstance(built, Session)
    assert built._parent is component


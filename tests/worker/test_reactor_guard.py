"""A hosted component's ``reactor.stop()`` ends that component only: how the guard traces a
call to the component that made it, on a stand-in reactor with a fake clock."""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock

from container.context import _running
from container.worker.reactor_guard import ReactorStopGuard, guard_reactor_stop
from tests.support.sessions import Harness


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
        self.closed = False
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
    assert reactor.clock.getDelayedCalls() == []


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
    assert reactor.clock.getDelayedCalls() == []


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
    assert reactor.clock.getDelayedCalls() == []


def test_a_stop_from_a_module_shared_by_two_components_is_refused():
    runs = [FakeRun("a", ("shared_module",)), FakeRun("b", ("shared_module",))]
    reactor, _ = guarded(runs)
    _module_code("shared_module", reactor)()
    assert reactor.stopped == 0 and runs[0].exits == runs[1].exits == []
    assert reactor.clock.getDelayedCalls() == []


def test_a_module_loaded_before_the_guard_is_never_taken_for_a_components():
    run = FakeRun("a", ("json",))  # a classname may name anything, a library included
    reactor, _ = guarded([run])
    _module_code("json", reactor)()
    assert reactor.stopped == 1 and run.exits == []
    assert reactor.clock.getDelayedCalls() == []


def test_the_guard_is_installed_once_per_reactor():
    reactor, first = guarded([])
    second = guard_reactor_stop(reactor, lambda: [])
    assert first is second
    assert reactor.stop == first.stop
    assert reactor.clock.getDelayedCalls() == []

"""Work that nobody awaits logs its failure, saying whose work it was and what it was doing.

Each background task of the worker (a restart on the clock, a reload after a source change,
a shutdown set off by a policy or a signal, the leave after a shutdown, closing the
management connection, resuming the checkpoint, the source watcher's loop, the stops and
restarts a shutdown or a reload gathers) is fed an error here; the test reads the log
through a Twisted log observer, never stderr.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import pytest
from autobahn.wamp.types import SessionDetails
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.logger import LogEvent, capturedLogs, formatEvent

from container import cli
from container.components import parse_component
from container.errors import ComponentStartFailed
from container.management import parse_management_url
from container.options import parse_container_options
from container.policy import StopReason
from container.worker.component import HostedComponent
from container.worker.loader import SourceWatcher
from container.worker.outcome import SessionEnd
from container.worker.process import Worker, WorkerSettings
from container.worker.supervisor import Supervisor

SPEC = parse_component({"type": "class", "classname": "hello.Quiet", "realm": "realm1",
                        "transport": {"type": "rawsocket", "endpoint": {
                            "type": "tcp", "host": "127.0.0.1", "port": 9}}})


class Broken(Exception):
    """The error fed to a background task."""


def lines(events: Sequence[LogEvent]) -> list[str]:
    return [formatEvent(event) for event in events]


def logged(events: Sequence[LogEvent], text: str) -> bool:
    return any(text in line for line in lines(events))


async def broken(*args: Any, **kwargs: Any) -> Any:
    raise Broken("broken on purpose")


def raise_broken(*args: Any, **kwargs: Any) -> Any:
    raise Broken("broken on purpose")


# -- a component's restart on the clock ---------------------------------------------------


class Run:
    """A session run the test drives: ready when told, ends when told."""

    def __init__(self, reactor: Any, spec: Any, build: Any, config: Any, log: Any,
                 on_end: Any, owner: Any) -> None:
        self.ready: Deferred[SessionDetails] = Deferred()
        self.on_end, self.owner = on_end, owner
        self.phase, self.ready_by = "connecting", "onjoin"
        RUNS.append(self)

    def start(self, timeout: float, ready_grace: float) -> Deferred[SessionDetails]:
        return self.ready

    def stop(self, timeout: float) -> Deferred[None]:
        return succeed(None)

    def crash(self) -> None:
        self.on_end(self.owner, self, SessionEnd(StopReason.FAILED, "boom"))


RUNS: list[Run] = []


def running_supervisor() -> tuple[Clock, Supervisor]:
    """A supervisor with one component running that restarts after a crash."""
    RUNS.clear()
    clock = Clock()
    supervisor = Supervisor(clock, parse_container_options({"restart": "restart-always"}),
                            emit=lambda topic, payload: None,
                            request_shutdown=lambda code, why: None, run_factory=Run,
                            load_builder=lambda spec: (lambda config: None))
    Deferred.fromCoroutine(supervisor.start("c1", SPEC))
    RUNS[-1].ready.callback(SessionDetails(realm="realm1", session=1))
    return clock, supervisor


def stopped(clock: Clock, supervisor: Supervisor) -> list[Any]:
    """Stop what is left; the clock's delayed calls afterwards."""
    Deferred.fromCoroutine(supervisor.shutdown())
    return clock.getDelayedCalls()


def test_a_restart_that_breaks_is_logged_with_its_component(monkeypatch):
    clock, supervisor = running_supervisor()
    monkeypatch.setattr(HostedComponent, "begin_attempt", raise_broken)
    with capturedLogs() as events:
        RUNS[-1].crash()
        clock.advance(0)  # the restart is due
    assert logged(events, "[component c1] restarting failed: broken on purpose"), lines(events)
    assert stopped(clock, supervisor) == []


def test_a_failed_restart_attempt_whose_handling_breaks_is_logged(monkeypatch):
    clock, supervisor = running_supervisor()
    monkeypatch.setattr(HostedComponent, "_attempt_failed", raise_broken)
    with capturedLogs() as events:
        RUNS[-1].crash()
        clock.advance(0)
        RUNS[-1].ready.errback(ComponentStartFailed("onJoin raised RuntimeError: x"))
    assert logged(events, "[component c1] handling a failed restart attempt failed: broken "
                          "on purpose"), lines(events)
    assert stopped(clock, supervisor) == []


def test_a_restart_after_a_reload_that_fails_names_its_component(monkeypatch):
    clock, supervisor = running_supervisor()
    monkeypatch.setattr(supervisor.reloader, "reload", lambda modules: None)
    monkeypatch.setattr(supervisor, "restart", broken)
    with capturedLogs() as events:
        Deferred.fromCoroutine(supervisor.reload_and_restart(["hello"]))
    assert logged(events, "[component c1] restart after reload failed: broken on purpose")
    assert stopped(clock, supervisor) == []


def test_a_stop_at_shutdown_that_fails_names_its_component(monkeypatch):
    clock, supervisor = running_supervisor()
    monkeypatch.setattr(supervisor, "stop", broken)
    with capturedLogs() as events:
        shutting_down = Deferred.fromCoroutine(supervisor.shutdown())
    assert shutting_down.result == ["c1"]
    assert logged(events, "[component c1] stopping it at shutdown failed: broken on purpose")
    assert clock.getDelayedCalls() == []


# -- the worker process ---------------------------------------------------------------------


@pytest.fixture
def worker() -> Worker:
    settings = WorkerSettings(worker_id="w1", management=parse_management_url("rs://127.0.0.1:9"))
    return Worker(Clock(), settings)


def test_a_reload_after_a_source_change_that_breaks_is_logged(worker, monkeypatch):
    monkeypatch.setattr(worker.supervisor, "reload_and_restart", broken)
    with capturedLogs() as events:
        worker._sources_changed(["hello"])
    assert logged(events, "worker w1: reloading hello and restarting failed: broken on purpose")
    assert worker.reactor.getDelayedCalls() == []


def test_a_policy_shutdown_that_breaks_is_logged(worker, monkeypatch):
    monkeypatch.setattr(worker, "shutdown", broken)
    with capturedLogs() as events:
        worker._policy_shutdown(1, "shutdown-on-any-component-failed: component 'c1' failed")
    assert logged(events, "worker w1: shutting down (shutdown-on-any-component-failed: "
                          "component 'c1' failed) failed: broken on purpose"), lines(events)
    assert worker.reactor.getDelayedCalls() == []


def test_leaving_after_a_shutdown_that_breaks_is_logged(worker, monkeypatch):
    monkeypatch.setattr(worker, "_leave_and_exit", broken)
    with capturedLogs() as events:
        Deferred.fromCoroutine(worker.shutdown())
        worker.reactor.advance(0)  # it leaves once the caller has its answer
    assert logged(events, "worker w1: leaving the management realm and exiting failed: broken "
                          "on purpose"), lines(events)
    assert worker.reactor.getDelayedCalls() == []


def test_closing_the_management_connection_that_fails_is_logged(worker, monkeypatch):
    service = SimpleNamespace(running=True, stopService=lambda: fail(Broken("broken on purpose")))
    monkeypatch.setattr(worker, "_service", service)
    with capturedLogs() as events:
        worker._stop_service()
    assert logged(events, "worker w1: closing the management connection failed: broken on "
                          "purpose")
    assert worker.reactor.getDelayedCalls() == []


def test_resuming_a_component_that_fails_is_logged_with_its_id(worker, monkeypatch):
    monkeypatch.setattr(worker.checkpoint, "take_resumable",
                        lambda: {"bad": {"type": "carrier-pigeon"}})
    with capturedLogs() as events:
        worker._resume_checkpoint()
    assert logged(events, "worker w1: resuming component bad failed: "), lines(events)
    assert worker.supervisor.components == {}
    assert worker.reactor.getDelayedCalls() == []


def test_a_shutdown_on_a_signal_that_breaks_is_logged():
    stand_in = SimpleNamespace(settings=SimpleNamespace(worker_id="w9"), shutdown=broken)
    with capturedLogs() as events:
        cli._shut_down_worker(stand_in, "SIGTERM")
    assert logged(events, "worker w9: shutting down on SIGTERM failed: broken on purpose")


def test_a_source_watcher_whose_check_breaks_is_logged():
    clock = Clock()
    reloader = SimpleNamespace(changed=raise_broken)
    watcher = SourceWatcher(clock, reloader, lambda modules: None, 1.0, 0.5)  # type: ignore[arg-type]
    with capturedLogs() as events:
        watcher.start()
        clock.advance(1.0)
    assert logged(events, "watching the component sources for changes failed: broken on "
                          "purpose")
    assert clock.getDelayedCalls() == []

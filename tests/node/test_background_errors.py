"""No failure of the node's background work ends unseen: each background task is fed an error
here, on a fake reactor, and its report must name what failed (the worker, component, guest
or child, and what was being done).

The node's own tasks report on its error stream (:meth:`NodeOutput.errback`); the watcher's
and the supervision's, which have no console of their own, go to the Twisted log.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.logger import LogEvent, formatEvent, globalLogPublisher

from container.errors import ExitCode
from container.node.components import ComponentStarter
from container.node.config import load_node_config
from container.node.controller import Node
from container.node.guest import GuestLaunch
from container.node.output import NodeOutput
from container.node.plan import Launch, build_plan
from container.node.procs import ChildProcess, ExitStatus, RestartRules, Supervised
from container.node.readiness import NodeSettings
from container.node.realm import Secrets
from container.node.watch import restart_on_change
from tests.support.fake_reactor import FakeReactor, tick
from tests.support.node import hello_config


class FakeLink:
    """The management link as the node uses it: every call answers ``answer``."""

    def __init__(self, answer: Any = None) -> None:
        self.answer = answer
        self.session = object()
        self.close_error: Exception | None = None

    def call(self, prefix: str, procedure: str, *args: Any, **kwargs: Any) -> Deferred[Any]:
        return succeed(self.answer)

    async def close(self) -> None:
        if self.close_error is not None:
            raise self.close_error


class BrokenBar(NodeOutput):
    """A console whose progress bar fails (a bug in the reporting, after a good start)."""

    def progress_advance(self, worker: str, component: str) -> None:
        raise RuntimeError("the bar broke")


def fake_node(tmp_path: Path, output_class: type[NodeOutput] = NodeOutput,
              answer: Any = None) -> tuple[FakeReactor, Node, io.StringIO]:
    path = tmp_path / "node.json"
    path.write_text(json.dumps(hello_config(8080)))
    config = load_node_config(path, crossbar=False)
    plan = build_plan(config, tmp_path / "run", Secrets.fixed("s", ["w1"]), environ={})
    err = io.StringIO()
    output = output_class(out=io.StringIO(), err=err, progress=False)
    reactor = FakeReactor()
    node = Node(reactor, plan, output, NodeSettings(), {}, [])
    node.link = FakeLink(answer)
    node.starter = ComponentStarter(reactor, node.link, output, node)
    return reactor, node, err


def logged(events: list[LogEvent]) -> str:
    return "\n".join(str(formatEvent(event)) for event in events)


def test_a_failure_after_a_component_start_names_the_worker_and_component(tmp_path):
    reactor, node, err = fake_node(tmp_path, BrokenBar, answer={"id": "greeter"})
    node._on_event("crossbar.worker.w1.on_worker_ready", {})
    assert "worker 'w1': while starting component 'greeter': RuntimeError: the bar broke" in (
        err.getvalue())
    assert node.workers["w1"].in_flight == set()
    assert reactor.getDelayedCalls() == []


def test_a_failure_after_a_status_probe_names_the_worker(tmp_path, monkeypatch):
    reactor, node, err = fake_node(tmp_path, answer={"id": "w1"})
    node.workers["w1"].child.start()

    def lost(worker: Any) -> None:
        raise RuntimeError("lost")

    assert node.starter is not None
    monkeypatch.setattr(node.starter, "start_pending", lost)
    node._on_joined()
    assert "worker 'w1': while asking for its status: RuntimeError: lost" in err.getvalue()
    assert reactor.getDelayedCalls() == []


def test_a_resumed_checkpoint_that_cannot_be_checked_is_reported(tmp_path):
    reactor, node, err = fake_node(tmp_path, answer={"checkpoint": "not an object"})
    worker = node.workers["w1"]
    worker.child.start()
    worker.ready_once, worker.pending = True, {}  # its first process was ready before
    node._on_event("crossbar.worker.w1.on_worker_ready", {})
    assert "worker 'w1': cannot check its resumed checkpoint: AttributeError" in err.getvalue()
    assert reactor.getDelayedCalls() == []


def test_a_failing_stop_names_the_child_and_the_stop_goes_on(tmp_path):
    reactor, node, err = fake_node(tmp_path)

    async def broken(timeout: float) -> ExitStatus | None:
        raise RuntimeError("cannot signal")

    node.workers["w1"].child.stop = broken  # type: ignore[method-assign]
    node.link.close_error = ValueError("half closed")
    node.finish(ExitCode.OK, "asked to")
    assert "while stopping worker 'w1': RuntimeError: cannot signal" in err.getvalue()
    assert "while closing the management link: ValueError: half closed" in err.getvalue()
    assert node.done.called and node.exit_code == 0
    assert reactor.getDelayedCalls() == []


def test_a_failed_restart_after_a_change_is_logged_with_the_guest(tmp_path):
    events: list[LogEvent] = []
    globalLogPublisher.addObserver(events.append)
    try:
        reactor = FakeReactor()
        guest = GuestLaunch("g1", Launch(["tool"], {}, "/"), watch=(tmp_path,),
                            watch_restart=True)

        class Unrestartable:
            async def restart(self, timeout: float) -> None:
                raise RuntimeError("no restart")

        watcher = restart_on_change(reactor, guest, Unrestartable(),  # type: ignore[arg-type]
                                    5.0, lambda path, restarting: None)
        assert watcher is not None
        watcher.start()
        (tmp_path / "app.py").write_text("changed\n")
        tick(reactor, 2)
        watcher.stop()
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert "guest g1: restart after a change failed" in logged(events)
    assert reactor.getDelayedCalls() == []


def test_a_failing_exit_handler_is_logged_with_the_child(tmp_path):
    class FailingListener:
        def spawned(self, child: Supervised, process: ChildProcess) -> None:
            pass

        def exited(self, child: Supervised, status: ExitStatus, restart_in: float | None
                   ) -> None:
            raise RuntimeError("listener broke")

    events: list[LogEvent] = []
    globalLogPublisher.addObserver(events.append)
    try:
        reactor = FakeReactor()
        child = Supervised(reactor, "g1", lambda: Launch(["tool"], {}, "/"),
                           RestartRules(lambda status: False), FailingListener(),
                           lambda stream, line: None)
        process = child.start()
        reactor.end(0)
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert "g1: handling the exit of process 100 failed" in logged(events)
    assert process.exited.called
    assert reactor.getDelayedCalls() == []

"""The supervisor's policies on a fake clock, with session runs the test ends at will.

Each fake run stands for one connection of a component: the test decides when it is ready,
fails, or ends and why. Every test ends by checking no timer is left behind.
"""

from __future__ import annotations

from typing import Any

import pytest
from autobahn.wamp.types import SessionDetails
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from container.components import parse_component
from container.errors import CannotConnect, ComponentStartFailed
from container.options import parse_container_options
from container.policy import StopReason
from container.worker.outcome import SessionEnd
from container.worker.supervisor import Supervisor

CONFIG = {"type": "class", "classname": "hello.Quiet", "realm": "realm1",
          "transport": {"type": "rawsocket",
                        "endpoint": {"type": "tcp", "host": "127.0.0.1", "port": 9}}}


class FakeRun:
    """One connection attempt; ``runs`` lists them in order for the test to drive."""

    runs: list[FakeRun]

    def __init__(self, reactor: Any, spec: Any, build: Any, config: Any, log: Any,
                 on_end: Any, owner: Any) -> None:
        self.ready: Deferred[SessionDetails] = Deferred()
        self.on_end = on_end
        self.owner = owner
        self.stopped = False
        self.phase: str | None = "connecting"
        self.ready_by: str | None = None
        self.stopping: Deferred[None] | None = None  # set to make the stop take its time
        FakeRun.runs.append(self)

    def start(self, timeout: float, ready_grace: float) -> Deferred[SessionDetails]:
        self.ready_grace = ready_grace
        return self.ready

    def join(self, session_id: int = 1, ready_by: str = "onjoin") -> None:
        self.phase = "joined" if ready_by == "onjoin" else "onjoin_running"
        self.ready_by = ready_by
        self.ready.callback(SessionDetails(realm="realm1", session=session_id))

    def end(self, reason: StopReason, message: str = "") -> None:
        self.on_end(self.owner, self, SessionEnd(reason, message))

    # how a run answers a stop: "plain" (at once, its start left as it is), "cannot_connect"
    # (a start still connecting fails with CannotConnect, as a cancelled TCP connect does),
    # "hangs" (never answers, and neither does its start)
    stop_mode = "plain"

    def stop(self, timeout: float) -> Deferred[None]:
        self.stopped = True
        if self.stopping is not None:
            return self.stopping
        if FakeRun.stop_mode == "cannot_connect" and not self.ready.called:
            self.ready.errback(CannotConnect("cannot connect: ConnectingCancelledError"))
        if FakeRun.stop_mode == "hangs":
            self.stopping = Deferred()
            return self.stopping
        return succeed(None)


class Harness:
    def __init__(self, options: dict[str, Any]) -> None:
        self.clock = Clock()
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.shutdowns: list[tuple[int, str]] = []
        FakeRun.runs = []
        FakeRun.stop_mode = "plain"
        self.supervisor = Supervisor(
            self.clock, parse_container_options(options), emit=self._emit,
            request_shutdown=lambda code, why: self.shutdowns.append((code, why)),
            uniform=lambda: 0.5, run_factory=FakeRun,
            load_builder=lambda spec: (lambda config: None),  # no imports needed
        )

    def _emit(self, topic: str, payload: dict[str, Any]) -> None:
        self.events.append((topic, payload))

    def start(self, component_id: str = "c1", **kwargs: Any) -> Deferred[Any]:
        return Deferred.fromCoroutine(
            self.supervisor.start(component_id, parse_component(dict(CONFIG)), **kwargs))

    def started(self, component_id: str = "c1") -> FakeRun:
        result = self.start(component_id)
        FakeRun.runs[-1].join()
        assert result.called
        return FakeRun.runs[-1]

    def state(self, component_id: str = "c1") -> str:
        return self.supervisor.get(component_id)["state"]

    def pending_delays(self) -> list[float]:
        return [call.getTime() - self.clock.seconds() for call in self.clock.getDelayedCalls()]

    def topics(self, name: str) -> list[dict[str, Any]]:
        return [payload for topic, payload in self.events if topic == name]


def crash_and_rejoin(h: Harness, times: int) -> list[float]:
    """Crash the latest run ``times`` times, letting each restart join; returns the delays."""
    delays = []
    for _ in range(times):
        FakeRun.runs[-1].end(StopReason.FAILED, "boom")
        (delay,) = h.pending_delays()
        delays.append(round(delay, 6))
        h.clock.advance(delay)
        FakeRun.runs[-1].join()
    return delays


def test_crash_loop_restarts_with_growing_delays():
    h = Harness({"restart": "restart-always",
                 "restart_backoff": {"initial": 0.1, "max": 1.0, "jitter": 0.0}})
    h.started()
    assert crash_and_rejoin(h, 7) == [0.0, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert h.supervisor.get("c1")["restarts"] == 7
    restart_events = h.topics("on_component_restart")
    assert [e["attempt"] for e in restart_events] == [1, 2, 3, 4, 5, 6, 7]
    assert [round(e["delay"], 6) for e in restart_events] == [0.0, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert h.state() == "running"
    assert h.clock.getDelayedCalls() == []


def test_backoff_resets_after_a_stable_run():
    h = Harness({"restart": "restart-always",
                 "restart_backoff": {"initial": 1.0, "jitter": 0.0, "stable_after": 5}})
    h.started()
    assert crash_and_rejoin(h, 3) == [0.0, 1.0, 2.0]
    h.clock.advance(5)  # ran stably
    assert crash_and_rejoin(h, 2) == [0.0, 1.0]
    assert h.clock.getDelayedCalls() == []


def test_restart_limit_gives_up_and_reports_failed():
    h = Harness({"restart": "restart-always",
                 "restart_limit": {"max_restarts": 3, "period": 60},
                 "restart_backoff": {"jitter": 0.0}})
    h.started()
    crash_and_rejoin(h, 3)
    FakeRun.runs[-1].end(StopReason.FAILED, "boom again")
    assert h.state() == "failed"
    record = h.supervisor.get("c1")
    assert "gave up after 3 restarts within 60 s" in record["last_error"]
    last_stop = h.topics("on_component_stop")[-1]
    assert last_stop["gave_up"] is True
    assert last_stop["will_restart"] is False
    assert h.clock.getDelayedCalls() == []


def test_requested_stop_is_never_restarted():
    h = Harness({"restart": "restart-always"})
    run = h.started()
    stopped = Deferred.fromCoroutine(h.supervisor.stop("c1"))
    assert stopped.called and run.stopped
    run.end(StopReason.REQUESTED)
    assert h.supervisor.list() == []
    assert h.clock.getDelayedCalls() == []
    assert h.topics("on_component_stop")[-1]["reason"] == "requested"
    assert h.clock.getDelayedCalls() == []


def test_restart_failed_restarts_a_crash_but_not_a_clean_leave():
    h = Harness({"restart": "restart-failed"})
    h.started()
    FakeRun.runs[-1].end(StopReason.LOST, "transport lost")
    assert h.state() == "restarting"
    h.clock.advance(0)
    FakeRun.runs[-1].join()
    FakeRun.runs[-1].end(StopReason.LEFT, "component left: wamp.close.normal")
    assert h.state() == "stopped"
    assert h.clock.getDelayedCalls() == []


def test_connect_failures_retry_without_counting_toward_the_limit():
    h = Harness({"restart": "restart-failed",
                 "restart_limit": {"max_restarts": 1, "period": 60},
                 "restart_backoff": {"initial": 0.1, "max": 0.4, "jitter": 0.0}})
    h.started()
    FakeRun.runs[-1].end(StopReason.LOST, "router went away")  # counts: 1 of 1
    delays = []
    for _ in range(5):  # the router is down: every attempt cannot connect
        (delay,) = h.pending_delays()
        delays.append(round(delay, 6))
        h.clock.advance(delay)
        FakeRun.runs[-1].ready.errback(CannotConnect("connection refused"))
    assert delays == [0.0, 0.1, 0.2, 0.4, 0.4]
    assert h.state() == "restarting"
    h.clock.advance(h.pending_delays()[0])
    FakeRun.runs[-1].join()
    assert h.state() == "running"
    assert h.clock.getDelayedCalls() == []


def test_a_failing_restart_attempt_counts_as_a_crash():
    h = Harness({"restart": "restart-always", "restart_backoff": {"jitter": 0.0}})
    h.started()
    FakeRun.runs[-1].end(StopReason.FAILED, "boom")
    h.clock.advance(0)
    FakeRun.runs[-1].ready.errback(ComponentStartFailed("onJoin raised RuntimeError: x"))
    assert h.state() == "restarting"
    assert "onJoin raised" in h.supervisor.get("c1")["last_error"]
    assert h.supervisor.get("c1")["attempt"] == 2
    Deferred.fromCoroutine(h.supervisor.stop("c1"))  # it waits to restart: stop it
    assert h.clock.getDelayedCalls() == []


def test_stop_while_waiting_to_restart_cancels_the_restart():
    h = Harness({"restart": "restart-always", "restart_backoff": {"first": 5.0}})
    h.started()
    FakeRun.runs[-1].end(StopReason.FAILED, "boom")
    assert len(h.clock.getDelayedCalls()) == 1
    Deferred.fromCoroutine(h.supervisor.stop("c1"))
    assert h.clock.getDelayedCalls() == []
    assert h.supervisor.list() == []
    assert h.clock.getDelayedCalls() == []


@pytest.mark.parametrize(
    ("shutdown", "ending", "expected"),
    [
        ("shutdown-on-any-component-stopped", StopReason.LEFT, [0]),
        ("shutdown-on-any-component-failed", StopReason.FAILED, [1]),
        ("shutdown-on-any-component-failed", StopReason.LEFT, []),
        ("shutdown-on-last-component-stopped", StopReason.LEFT, []),  # one is left
    ],
)
def test_shutdown_policies(shutdown, ending, expected):
    h = Harness({"shutdown": shutdown})
    first = h.started("c1")
    h.started("c2")
    first.end(ending, "ended")
    assert [code for code, _ in h.shutdowns] == expected
    assert h.clock.getDelayedCalls() == []


def test_shutdown_on_last_component_stopped_exit_code_follows_the_last_cause():
    h = Harness({"shutdown": "shutdown-on-last-component-stopped"})
    first, second = h.started("c1"), h.started("c2")
    first.end(StopReason.LEFT)
    assert h.shutdowns == []
    second.end(StopReason.FAILED, "crash")
    assert [code for code, _ in h.shutdowns] == [1]
    assert h.clock.getDelayedCalls() == []


def test_wait_for_router_retries_the_first_connect():
    h = Harness({"restart_backoff": {"initial": 0.5, "jitter": 0.0}})
    starting = h.start(wait_for_router=True)
    FakeRun.runs[-1].ready.errback(CannotConnect("refused"))
    assert h.state() == "restarting" and not starting.called
    h.clock.advance(0)
    FakeRun.runs[-1].ready.errback(CannotConnect("refused"))
    h.clock.advance(0.5)
    FakeRun.runs[-1].join()
    assert starting.called and starting.result["state"] == "running"
    assert h.clock.getDelayedCalls() == []


def test_a_start_that_cannot_connect_leaves_no_entry():
    h = Harness({})
    starting = h.start()
    FakeRun.runs[-1].ready.errback(CannotConnect("refused"))
    assert isinstance(starting.result.value, CannotConnect)
    starting.addErrback(lambda _: None)
    assert h.supervisor.list() == []
    assert h.clock.getDelayedCalls() == []


def test_component_log_lines_are_tagged_with_the_component_id():
    from twisted.logger import capturedLogs, formatEvent

    h = Harness({"restart": "restart-failed"})
    h.started("tagged")
    with capturedLogs() as events:
        FakeRun.runs[-1].end(StopReason.FAILED, "boom")
    lines = [formatEvent(event) for event in events]
    assert any(line.startswith("[component tagged] session ended (failed): boom")
               for line in lines), lines
    Deferred.fromCoroutine(h.supervisor.stop("tagged"))  # it waits to restart: stop it
    assert h.clock.getDelayedCalls() == []


def test_a_second_stop_waits_for_the_first_and_gets_the_same_answer():
    h = Harness({})
    run = h.started()
    leaving: Deferred[None] = Deferred()
    run.stop = lambda timeout: leaving
    first = Deferred.fromCoroutine(h.supervisor.stop("c1", caller={"authid": "a"}))
    second = Deferred.fromCoroutine(h.supervisor.stop("c1", caller={"authid": "b"}))
    assert not first.called and not second.called
    leaving.callback(None)
    assert first.result == second.result
    assert first.result["caller"] == {"authid": "a"}
    assert h.topics("on_component_stop")[-1]["caller"] == {"authid": "a"}
    assert h.clock.getDelayedCalls() == []


# -- readiness and cancelled starts -----------------------------------------------------------


def test_the_ready_grace_is_the_components_or_else_the_containers():
    h = Harness({"ready_grace": 2.5})
    h.start("c1")
    assert FakeRun.runs[-1].ready_grace == 2.5
    config = {**CONFIG, "ready_grace": 0.25}
    Deferred.fromCoroutine(h.supervisor.start("c2", parse_component(config)))
    assert FakeRun.runs[-1].ready_grace == 0.25
    assert Harness({}).supervisor.options.ready_grace == 1.0  # the default
    assert h.clock.getDelayedCalls() == []


def test_a_component_running_inside_onjoin_is_running_and_says_so():
    h = Harness({})
    starting = h.start()
    assert h.supervisor.get("c1")["phase"] == "connecting"
    FakeRun.runs[-1].join(ready_by="grace")
    assert starting.result["state"] == "running"
    assert (starting.result["phase"], starting.result["ready_by"]) == ("onjoin_running", "grace")
    record = h.supervisor.get("c1")
    assert (record["state"], record["phase"], record["ready_by"]) == (
        "running", "onjoin_running", "grace")
    event = h.topics("on_component_start")[-1]
    assert (event["phase"], event["ready_by"]) == ("onjoin_running", "grace")
    FakeRun.runs[-1].end(StopReason.FAILED, "onJoin raised RuntimeError: x")
    record = h.supervisor.get("c1")
    assert (record["state"], record["phase"], record["ready_by"]) == ("failed", None, None)
    assert h.clock.getDelayedCalls() == []


def test_a_component_that_left_says_how_in_its_stop_event():
    h = Harness({"restart": "restart-failed"})
    h.started()
    FakeRun.runs[-1].end(StopReason.LEFT, "component left: wamp.close.normal the component "
                                          "called reactor.stop()")
    stop = h.topics("on_component_stop")[-1]
    assert (stop["reason"], stop["will_restart"]) == ("left", False)
    assert "reactor.stop()" in stop["message"]
    assert h.state() == "stopped"
    assert h.clock.getDelayedCalls() == []


def test_a_start_cancelled_by_its_caller_stops_the_session_and_leaves_nothing():
    from container.errors import StartCancelled

    h = Harness({"restart": "restart-always"})
    starting = h.start()
    run = FakeRun.runs[-1]
    starting.cancel()
    assert run.stopped
    assert isinstance(starting.result.value, StartCancelled)
    starting.addErrback(lambda _: None)
    assert h.supervisor.list() == []
    stop = h.topics("on_component_stop")[-1]
    assert (stop["reason"], stop["will_restart"], stop["message"]) == (
        "requested", False, "start_component was cancelled by its caller")
    assert h.topics("on_component_start") == []
    assert h.shutdowns == []
    assert h.clock.getDelayedCalls() == []


def test_a_cancelled_start_holds_its_id_until_its_session_is_gone():
    from container.errors import AlreadyRunning

    h = Harness({})
    starting = h.start()
    run = FakeRun.runs[-1]
    run.stopping = Deferred()
    starting.cancel()
    outcome: list[Any] = []
    starting.addBoth(outcome.append)
    assert h.state() == "stopping" and outcome == []  # answers once the session is gone
    again = h.start()
    assert isinstance(again.result.value, AlreadyRunning)
    again.addErrback(lambda _: None)
    run.stopping.callback(None)
    assert outcome[0].type.__name__ == "StartCancelled"
    assert h.supervisor.list() == []
    h.started()
    assert h.state() == "running"
    assert h.clock.getDelayedCalls() == []


def test_a_start_cancelled_while_waiting_for_the_router_stops_its_retries():
    h = Harness({"restart_backoff": {"first": 1.0, "jitter": 0.0}})
    starting = h.start(wait_for_router=True)
    FakeRun.runs[-1].ready.errback(CannotConnect("refused"))
    assert h.state() == "restarting" and len(h.clock.getDelayedCalls()) == 1
    starting.cancel()
    starting.addErrback(lambda _: None)
    assert h.supervisor.list() == []
    assert h.topics("on_component_stop")[-1]["reason"] == "requested"
    assert h.clock.getDelayedCalls() == []


def test_a_stop_during_a_cancelled_start_is_the_same_stop():
    h = Harness({})
    starting = h.start()
    run = FakeRun.runs[-1]
    run.stopping = Deferred()
    stopping = Deferred.fromCoroutine(h.supervisor.stop("c1"))
    starting.cancel()
    run.stopping.callback(None)
    assert stopping.result["reason"] == "requested"
    starting.addErrback(lambda _: None)
    assert h.supervisor.list() == []
    assert len(h.topics("on_component_stop")) == 1
    assert h.clock.getDelayedCalls() == []


# -- every request answers, in every state (issue 12) ----------------------------------------

STOP_TIMEOUT = 5.0
BACKOFF = {"first": 1.0, "initial": 1.0, "jitter": 0.0}


def _connecting(h: Harness) -> None:
    h.pending.append(h.start())


def _waiting_for_router(h: Harness) -> None:
    h.pending.append(h.start(wait_for_router=True))
    FakeRun.runs[-1].ready.errback(CannotConnect("refused"))
    assert h.state() == "restarting"


def _connecting_again_for_router(h: Harness) -> None:
    _waiting_for_router(h)
    h.clock.advance(1.0)
    assert h.state() == "starting"


def _running(h: Harness) -> None:
    h.started()


def _backing_off(h: Harness) -> None:
    h.started()
    FakeRun.runs[-1].end(StopReason.FAILED, "boom")
    assert h.state() == "restarting"


def _connecting_to_restart(h: Harness) -> None:
    _backing_off(h)
    h.clock.advance(1.0)
    assert h.state() == "starting"


def _stopping(h: Harness) -> None:
    run = h.started()
    run.stopping = Deferred()  # this stop never answers by itself
    h.pending.append(Deferred.fromCoroutine(h.supervisor.stop("c1")))
    assert h.state() == "stopping"


def _stopped_by_itself(h: Harness) -> None:
    h.started()
    FakeRun.runs[-1].end(StopReason.LEFT, "component left")
    assert h.state() == "stopped"


def _failed_by_itself(h: Harness) -> None:
    h.started()
    FakeRun.runs[-1].end(StopReason.FAILED, "boom")
    assert h.state() == "failed"


STATES = {
    "connecting": ("restart-always", _connecting),
    "waiting_for_router": ("restart-always", _waiting_for_router),
    "connecting_again_for_router": ("restart-always", _connecting_again_for_router),
    "running": ("restart-always", _running),
    "backing_off": ("restart-always", _backing_off),
    "connecting_to_restart": ("restart-always", _connecting_to_restart),
    "stopping": ("restart-always", _stopping),
    "stopped_by_itself": ("restart-never", _stopped_by_itself),
    "failed_by_itself": ("restart-never", _failed_by_itself),
}


def _request(h: Harness, request: str) -> Deferred[Any]:
    supervisor = h.supervisor
    if request == "start":
        return h.start()
    if request == "start_waiting_for_router":
        return h.start(wait_for_router=True)
    if request == "stop":
        return Deferred.fromCoroutine(supervisor.stop("c1"))
    if request == "restart":
        return Deferred.fromCoroutine(supervisor.restart("c1"))
    return Deferred.fromCoroutine(supervisor.shutdown())


@pytest.mark.parametrize("stop_mode", ["plain", "cannot_connect", "hangs"])
@pytest.mark.parametrize("request_name", ["start", "start_waiting_for_router", "stop",
                                          "restart", "shutdown"])
@pytest.mark.parametrize("state", list(STATES))
def test_every_request_answers_in_every_state(state, request_name, stop_mode, monkeypatch):
    from container.errors import ContainerError, IllegalTransition
    from container.worker.component import HostedComponent

    illegal: list[IllegalTransition] = []
    set_state = HostedComponent._set_state

    def watched_set_state(self: HostedComponent, new_state: Any) -> None:
        try:
            set_state(self, new_state)
        except IllegalTransition as error:
            illegal.append(error)
            raise

    monkeypatch.setattr(HostedComponent, "_set_state", watched_set_state)
    restart, setup = STATES[state]
    h = Harness({"restart": restart, "restart_backoff": BACKOFF, "stop_timeout": STOP_TIMEOUT})
    h.pending = []
    setup(h)
    FakeRun.stop_mode = stop_mode
    answer = _request(h, request_name)
    h.clock.advance(STOP_TIMEOUT + 0.001)
    # the router answers every connect still under way that no stop cut short
    for run in FakeRun.runs:
        if not run.ready.called and not run.stopped:
            run.join()
    h.clock.advance(STOP_TIMEOUT + 0.001)
    outcomes = []
    for deferred in [*h.pending, answer]:
        assert deferred.called, f"{request_name} in state {state} never answered"
        deferred.addBoth(outcomes.append)
    for outcome in outcomes:
        if isinstance(outcome, Failure):
            assert isinstance(outcome.value, ContainerError), outcome.getTraceback()
    assert illegal == []
    # and the worker still shuts down, leaving no timer
    FakeRun.stop_mode = "plain"
    final = Deferred.fromCoroutine(h.supervisor.shutdown())
    h.clock.advance(STOP_TIMEOUT + 0.001)
    assert final.called
    assert [c for c in h.supervisor.components.values() if c.active] == []
    assert h.clock.getDelayedCalls() == []
    assert illegal == []


def test_a_stop_while_waiting_for_the_router_answers_and_cancels_the_start():
    from container.errors import StartCancelled

    h = Harness({"restart_backoff": BACKOFF})
    starting = h.start(wait_for_router=True)
    FakeRun.runs[-1].ready.errback(CannotConnect("refused"))
    stopping = Deferred.fromCoroutine(h.supervisor.stop("c1"))
    assert stopping.called and stopping.result["reason"] == "requested"
    assert isinstance(starting.result.value, StartCancelled)
    starting.addErrback(lambda _: None)
    assert [e["reason"] for e in h.topics("on_component_stop")] == ["lost", "requested"]
    assert h.supervisor.list() == []
    assert h.clock.getDelayedCalls() == []


def test_a_stop_just_after_a_start_with_wait_for_router_cancels_it_cleanly():
    from container.errors import StartCancelled

    h = Harness({"restart_backoff": BACKOFF})
    FakeRun.stop_mode = "cannot_connect"  # a cancelled TCP connect reports a failed connect
    starting = h.start(wait_for_router=True)
    stopping = Deferred.fromCoroutine(h.supervisor.stop("c1"))
    assert stopping.called and stopping.result["reason"] == "requested"
    assert isinstance(starting.result.value, StartCancelled)
    starting.addErrback(lambda _: None)
    assert h.topics("on_component_restart") == []
    assert h.supervisor.list() == []
    assert h.clock.getDelayedCalls() == []


def test_a_stop_whose_session_never_answers_answers_at_the_stop_timeout():
    h = Harness({"stop_timeout": STOP_TIMEOUT})
    run = h.started()
    run.stopping = Deferred()
    stopping = Deferred.fromCoroutine(h.supervisor.stop("c1"))
    shutting_down = Deferred.fromCoroutine(h.supervisor.shutdown())
    h.clock.advance(STOP_TIMEOUT - 0.001)
    assert not stopping.called and not shutting_down.called
    h.clock.advance(0.001)
    assert stopping.result["reason"] == "requested"
    assert shutting_down.result == ["c1"]
    assert h.clock.getDelayedCalls() == []


def test_shutdown_does_not_stop_again_a_component_that_left_by_itself():
    h = Harness({"restart": "restart-never"})
    h.started("gone")
    h.started("here")
    FakeRun.runs[0].end(StopReason.LEFT, "component left")
    assert len(h.topics("on_component_stop")) == 1
    shutting_down = Deferred.fromCoroutine(h.supervisor.shutdown())
    assert shutting_down.result == ["here"]
    stops = h.topics("on_component_stop")
    assert [(e["id"], e["reason"]) for e in stops] == [("gone", "left"), ("here", "requested")]
    assert h.clock.getDelayedCalls() == []


def test_stopping_a_component_that_ended_by_itself_only_removes_it():
    h = Harness({"restart": "restart-never"})
    h.started()
    FakeRun.runs[-1].end(StopReason.FAILED, "boom")
    stopping = Deferred.fromCoroutine(h.supervisor.stop("c1"))
    assert stopping.result["reason"] == "failed"
    assert len(h.topics("on_component_stop")) == 1
    assert h.supervisor.list() == []
    assert h.clock.getDelayedCalls() == []

"""A hosted component: its record, its state machine, and the transitions it owns.

One object per component holds everything the container knows about it (spec, state,
timestamps, restart counters, last error, why it stopped). Its methods are its transitions
(:meth:`HostedComponent.launch`, :meth:`~HostedComponent.schedule_restart`,
:meth:`~HostedComponent.finish`, :meth:`~HostedComponent.stop`, ...): the supervisor
decides which one to call and never writes the record's fields. ``_set_state`` is the one
place the state changes; it refuses edges the machine does not have and tells the
listener, which publishes the lifecycle events.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from autobahn.wamp.types import ComponentConfig
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

from container.components import ComponentSpec
from container.deferreds import log_failure, wait_within
from container.errors import CannotConnect, ContainerError, IllegalTransition, StartCancelled
from container.options import ContainerOptions
from container.policy import RestartWindow, StopReason
from container.worker.builders import SessionBuilder
from container.worker.outcome import SessionEnd, start_cancelled
from container.worker.run import SessionRun
from container.worker.tagged_log import TaggedLogger


class ComponentState(StrEnum):
    STARTING = "starting"  # connecting and joining; not yet ready
    RUNNING = "running"  # joined; onJoin finished, it said it is ready, or the grace passed
    STOPPING = "stopping"  # a requested stop is under way
    RESTARTING = "restarting"  # ended by itself; waiting out the backoff delay
    STOPPED = "stopped"  # ended cleanly and will not be restarted
    FAILED = "failed"  # ended by a failure (or was given up) and will not be restarted


_EDGES: dict[ComponentState, frozenset[ComponentState]] = {
    ComponentState.STARTING: frozenset(
        {ComponentState.RUNNING, ComponentState.STOPPING, ComponentState.RESTARTING,
         ComponentState.STOPPED, ComponentState.FAILED}
    ),
    ComponentState.RUNNING: frozenset(
        {ComponentState.STOPPING, ComponentState.RESTARTING, ComponentState.STOPPED,
         ComponentState.FAILED}
    ),
    ComponentState.STOPPING: frozenset({ComponentState.STOPPED, ComponentState.FAILED}),
    ComponentState.RESTARTING: frozenset(
        {ComponentState.STARTING, ComponentState.STOPPING, ComponentState.FAILED}
    ),
    ComponentState.STOPPED: frozenset({ComponentState.STARTING, ComponentState.STOPPING}),
    ComponentState.FAILED: frozenset({ComponentState.STARTING, ComponentState.STOPPING}),
}

ACTIVE_STATES = frozenset(
    {ComponentState.STARTING, ComponentState.RUNNING, ComponentState.RESTARTING}
)
# ended by itself, and told so: a stop only forgets it
ENDED_STATES = frozenset({ComponentState.STOPPED, ComponentState.FAILED})
# the states in which the component has a session of its own
_SESSION_STATES = frozenset(
    {ComponentState.STARTING, ComponentState.RUNNING, ComponentState.STOPPING}
)

def _unless_cancelled(failure: Failure) -> Failure | None:
    """A restart a stop cancelled is no error."""
    return None if isinstance(failure.value, CancelledError) else failure


StateListener = Callable[["HostedComponent", ComponentState, ComponentState], None]
# a component ended by itself: (component, reason, message, counts toward the restart limit)
ExitListener = Callable[["HostedComponent", StopReason, str, bool], None]
RunFactory = Callable[..., SessionRun]


@dataclass(frozen=True, slots=True)
class Hosting:
    """What the components of one supervisor share: one object, referenced by each record.

    ``listener`` hears every state change (it publishes the lifecycle events); ``exited``
    hears an end the container did not cause (the supervisor applies the restart policy).
    """

    reactor: Any
    options: ContainerOptions
    listener: StateListener
    exited: ExitListener
    run_factory: RunFactory
    uniform: Callable[[], float]
    controller: Callable[[], Any]
    shared: dict[str, Any]


class HostedComponent:
    """Everything the container knows about one component, and its transitions."""

    # one record per hosted component, thousands per worker: no per-instance dict
    __slots__ = (
        "_hosting", "attempt", "builder", "gave_up", "id", "last_error", "log",
        "next_restart_at", "pending_restart", "ready_by", "realm", "reloaded", "restart_delay",
        "restarts", "run", "running_since", "session_id", "spec", "started_wall", "state",
        "stop_caller", "stop_message", "stop_reason", "stopping", "window",
    )

    def __init__(
        self, component_id: str, spec: ComponentSpec, builder: SessionBuilder,
        hosting: Hosting, restarts: int = 0, reloaded: tuple[str, ...] = (),
    ) -> None:
        self.id = component_id
        self.spec = spec
        self.builder = builder
        self.state = ComponentState.STARTING
        self.window = RestartWindow(hosting.options.restart_limit)
        self.log = TaggedLogger(component_id)
        self.run: SessionRun | None = None
        self.pending_restart: Deferred[None] | None = None  # the wait before the next attempt
        self.next_restart_at: float | None = None
        self.restart_delay: float | None = None  # as scheduled, for the restart event
        self.started_wall: datetime | None = None
        self.running_since: float | None = None
        self.restarts = restarts
        self.attempt = 0
        self.last_error: str | None = None
        self.stop_reason: StopReason | None = None
        self.session_id: int | None = None
        self.realm: str | None = None
        self.ready_by: str | None = None  # how the current session became ready
        self.reloaded = reloaded  # the modules reloaded for this start (none for a restart)
        self.gave_up = False
        self.stopping: Deferred[Any] | None = None  # the requested stop under way
        self.stop_caller: Any = None
        self.stop_message: str | None = None  # how the last session ended, in words
        self._hosting = hosting

    def _set_state(self, new_state: ComponentState) -> None:
        """The one place the state changes; tells the listener (which publishes events)."""
        old_state = self.state
        if new_state is old_state:
            return
        if new_state not in _EDGES[old_state]:
            raise IllegalTransition(f"component {self.id}: {old_state} -> {new_state}")
        self.state = new_state
        self.log.debug("{old} -> {new}", old=old_state.value, new=new_state.value)
        self._hosting.listener(self, old_state, new_state)

    # -- what it is -------------------------------------------------------------------------

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def ended(self) -> bool:
        """It stopped or failed by itself (and was told so once)."""
        return self.state in ENDED_STATES

    @property
    def start_interrupted(self) -> bool:
        """A stop took over the start under way: the start must not go on."""
        return self.stopping is not None or self.state is not ComponentState.STARTING

    def now(self) -> float:
        return float(self._hosting.reactor.seconds())

    def uptime(self) -> float:
        if self.running_since is None or self.state is not ComponentState.RUNNING:
            return 0.0
        return max(0.0, self.now() - self.running_since)

    def phase(self) -> str | None:
        """Where the current session is (connecting, joining, onjoin_running, joined), or
        None when there is none."""
        run = self.run
        if run is None or self.state not in _SESSION_STATES:
            return None
        return getattr(run, "phase", None)

    def next_restart_in(self) -> float | None:
        if self.next_restart_at is None:
            return None
        return max(0.0, self.next_restart_at - self.now())

    # -- starting ---------------------------------------------------------------------------

    async def launch(self) -> None:
        """One attempt: build its session run, connect, and be running once it is ready."""
        hosting, options = self._hosting, self._hosting.options
        run = hosting.run_factory(hosting.reactor, self.spec, self.builder,
                                  self._session_config(), self.log,
                                  HostedComponent.session_ended, self)
        self.run = run
        grace = self.spec.ready_grace
        details = await run.start(
            options.start_timeout, options.ready_grace if grace is None else grace
        )
        if self.start_interrupted:
            raise start_cancelled()
        if self.attempt == 0:
            self.last_error = None
        self.session_id, self.realm = details.session, details.realm
        self.ready_by = getattr(run, "ready_by", None)
        self.running_since = self.now()
        self.started_wall = datetime.now(UTC)
        self._set_state(ComponentState.RUNNING)

    def _session_config(self) -> ComponentConfig:
        options = self._hosting.options
        return ComponentConfig(
            realm=self.spec.realm,
            extra=self.spec.extra,
            controller=self._hosting.controller() if options.expose_controller else None,
            shared=self._hosting.shared if options.expose_shared else None,
        )

    def begin_attempt(self) -> None:
        """A restart attempt begins: restarting -> starting."""
        self.pending_restart = None
        self.next_restart_at = None
        self.restarts += 1
        self._set_state(ComponentState.STARTING)

    # -- ending by itself -------------------------------------------------------------------

    def session_ended(self, run: SessionRun, end: SessionEnd) -> None:
        """Its run says how its session ended; an end the container did not ask for goes to
        the supervisor's restart policy. (A run's ``on_end``, called with this record.)"""
        if self.run is not run or end.reason is StopReason.REQUESTED:
            return
        self.session_id = None
        self.log.info("session ended ({reason}): {message}", reason=end.reason.value,
                      message=end.message)
        self._hosting.exited(self, end.reason, end.message, True)

    def record_exit(self, reason: StopReason, message: str) -> None:
        """Note why it ended by itself, before the policy decides what follows."""
        self.stop_reason = reason
        self.stop_message = message
        if reason.is_failure:
            self.last_error = message

    def restart_allowed(self) -> bool:
        """Count a restart in its restart window; False once the limit is reached."""
        return self.window.allow(self.now())

    def give_up(self, message: str) -> None:
        """The restart limit is reached: say so in its last error (then :meth:`finish`)."""
        limit = self.window.limit
        assert limit is not None  # only a limited window refuses a restart
        self.gave_up = True
        self.last_error = (f"gave up after {limit.max_restarts} restarts within "
                           f"{limit.period:g} s; last error: {message}")

    def schedule_restart(self, reason: StopReason, message: str) -> float:
        """Count the attempt, pick its delay, and move to ``restarting`` (publishing it)."""
        backoff, now = self._hosting.options.backoff, self.now()
        if self.running_since is not None and now - self.running_since >= backoff.stable_after:
            self.attempt = 0
        self.running_since = None
        self.attempt += 1
        self.stop_reason = reason
        if reason.is_failure:
            self.last_error = message
        delay = backoff.delay(self.attempt, self._hosting.uniform)
        self.next_restart_at = now + delay
        self.restart_delay = delay
        self._set_state(ComponentState.RESTARTING)
        return delay

    def pause(self, delay: float) -> Deferred[None]:
        """Wait ``delay`` seconds before the next attempt (cancelled by a stop)."""
        self.pending_restart = deferLater(self._hosting.reactor, delay, lambda: None)
        return self.pending_restart

    def restart_after(self, delay: float) -> None:
        """Start again after ``delay`` seconds, on the clock; a failed attempt goes to the
        restart policy again."""
        self.pending_restart = deferLater(self._hosting.reactor, delay, self._restart_now)
        self.pending_restart.addErrback(_unless_cancelled)
        log_failure(self.pending_restart, self.log, "restarting")

    def _restart_now(self) -> None:
        self.reloaded = ()
        self.begin_attempt()
        attempt = Deferred.fromCoroutine(self.launch())
        attempt.addErrback(self._attempt_failed)
        log_failure(attempt, self.log, "handling a failed restart attempt")

    def _attempt_failed(self, failure: Failure) -> None:
        error = failure.value
        if isinstance(error, StartCancelled | CancelledError) or (
            self.state is not ComponentState.STARTING
        ):
            return
        if not isinstance(error, ContainerError):
            self.log.failure("restart attempt failed", failure=failure)
        unreachable = isinstance(error, CannotConnect)
        reason = StopReason.LOST if unreachable else StopReason.FAILED
        self._hosting.exited(self, reason, str(error), not unreachable)

    def cancel_pending_restart(self) -> None:
        pending, self.pending_restart = self.pending_restart, None
        self.next_restart_at = None
        if pending is not None and not pending.called:
            pending.cancel()

    def finish(self, reason: StopReason) -> None:
        """It ended for good: failed or stopped, and not restarted."""
        self.running_since = None
        self._set_state(ComponentState.FAILED if reason.is_failure else ComponentState.STOPPED)

    # -- a requested stop -------------------------------------------------------------------

    def expect_stop(self) -> Deferred[Any]:
        """Mark a requested stop under way before it runs a step (so a start it wakes up
        knows a stop caused it); its answer goes to the Deferred returned."""
        self.stopping = Deferred()
        return self.stopping

    async def stop(self, caller: Any, message: str | None, timeout: float) -> None:
        """Stop as asked: stopping, its session closed (bounded by ``timeout``), stopped."""
        had_session = self.state is not ComponentState.RESTARTING
        self.stop_reason = StopReason.REQUESTED
        self.stop_caller = caller
        self.stop_message = message
        self._set_state(ComponentState.STOPPING)
        self.cancel_pending_restart()
        run = self.run
        if run is not None and had_session:
            await self._stop_session(run, timeout)
            if not run.ready.called:  # a start the stop cut short answers now, at the latest
                run.ready.errback(start_cancelled())
        self._set_state(ComponentState.STOPPED)

    def _stop_failed(self, failure: Failure) -> None:
        self.log.warn("stopping its session failed: {error}", error=failure.value)

    def _stop_session(self, run: SessionRun, timeout: float) -> Deferred[None]:
        """Stop ``run``; fires when it has stopped, or after ``timeout`` at the latest.

        The run aborts its transport at the timeout itself; this bound is for a run that
        still does not answer, so that no stop, and no shutdown, can hang.
        """
        try:
            stopping = run.stop(timeout)
        except Exception as error:
            self.log.warn("stopping its session failed: {error}", error=error)
            return succeed(None)
        stopping.addErrback(self._stop_failed)
        return wait_within(stopping, timeout, self._hosting.reactor, lambda: self.log.warn(
            "its session did not end within {timeout} s: given up on", timeout=timeout))

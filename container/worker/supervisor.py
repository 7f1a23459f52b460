"""Start, stop, restart and list components, and apply the restart and shutdown policies.

The supervisor knows nothing of WAMP management: it reports lifecycle events through an
``emit(topic, payload)`` function and asks for a worker shutdown through
``request_shutdown(exit_code, why)``. Time comes from the injected reactor (a
``task.Clock`` in tests), so backoff and restart limits are testable without waiting.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from typing import Any

import txaio
from autobahn.wamp.types import ComponentConfig
from twisted.internet.defer import CancelledError, Deferred, DeferredList
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

from container.config import ComponentSpec, ContainerOptions, parse_component
from container.deferreds import share
from container.errors import (
    AlreadyRunning,
    CannotConnect,
    ContainerError,
    NoSuchComponent,
    ShuttingDown,
    StartCancelled,
)
from container.policy import RestartWindow, StopReason
from container.worker.component import ACTIVE_STATES, ComponentState, HostedComponent
from container.worker.loader import Reloader, load_callbacks, load_class_component
from container.worker.session import (
    FunctionSession,
    SessionBuilder,
    SessionRun,
    session_builder,
    supervised_class,
)

Emit = Callable[[str, dict[str, Any]], None]
RequestShutdown = Callable[[int, str], None]

log = txaio.make_logger()


class Supervisor:
    """The component registry of one container worker and the policies applied to it."""

    def __init__(
        self,
        reactor: Any,
        options: ContainerOptions,
        emit: Emit,
        request_shutdown: RequestShutdown,
        reloader: Reloader | None = None,
        controller: Callable[[], Any] = lambda: None,
        uniform: Callable[[], float] = random.random,
        on_change: Callable[[], None] = lambda: None,
        run_factory: Callable[..., SessionRun] = SessionRun,
    ) -> None:
        self.reactor = reactor
        self.options = options
        self.components: dict[str, HostedComponent] = {}
        self.shared: dict[str, Any] = {"reactor": reactor}
        self.shutting_down = False
        self.started_at = reactor.seconds()
        self._emit = emit
        self._request_shutdown = request_shutdown
        self.reloader = reloader or Reloader()
        self._controller = controller
        self._uniform = uniform
        self._on_change = on_change
        self._builders: dict[str, SessionBuilder] = {}
        self._run_factory = run_factory

    # -- management operations ----------------------------------------------------------------

    async def start(
        self,
        component_id: str,
        config: Any,
        reload_modules: bool = False,
        wait_for_router: bool = False,
        restarts: int = 0,
    ) -> dict[str, Any]:
        """Start a component; returns once it is ready (joined, and onJoin finished, or it
        said it is ready, or its onJoin kept running for the ready grace period).

        ``config`` is the configuration, or its parsed :class:`ComponentSpec`. Nothing is
        awaited between the duplicate check and registering the component, so concurrent
        starts of one id cannot both pass. A start that fails leaves no entry. A start whose
        caller gives up (the call is cancelled) stops what it started -- the session and its
        entry -- before it reports ``StartCancelled``.
        """
        if self.shutting_down:
            raise ShuttingDown("the worker is shutting down and starts no components")
        spec = config if isinstance(config, ComponentSpec) else parse_component(config)
        self._refuse_duplicate(component_id)
        reloaded = self.reloader.reload_changed() if reload_modules else []
        builder = self._builder(spec)
        component = self._register(component_id, spec, builder)
        component.restarts = restarts
        try:
            if wait_for_router:
                await self._start_waiting_for_router(component)
            else:
                await self._launch(component)
        except CancelledError:
            await self._abandon_start(component)
            raise StartCancelled(
                "the caller of start_component gave up: the start was cancelled and the "
                "component stopped"
            ) from None
        except BaseException:
            self._discard_failed_start(component)
            raise
        return {**component.started_info(), "reloaded": reloaded}

    async def _abandon_start(self, component: HostedComponent) -> None:
        """Stop a start that its caller cancelled: nothing of it may stay behind.

        The stop is a requested one (never restarted, no automatic shutdown); its entry stays
        ``stopping`` until the session is gone, so a new start of the id cannot collide with
        what is left of this one.
        """
        if component.stopping is None and component.state in (
            ComponentState.STARTING, ComponentState.RESTARTING
        ):
            self._stopping(component, None, "start_component was cancelled by its caller")
        if component.stopping is None:
            self._discard_failed_start(component)
            return
        try:
            await share(component.stopping)
        except Exception as error:
            component.log.warn("stopping a cancelled start failed: {error}", error=error)

    async def stop(self, component_id: str, caller: Any = None) -> dict[str, Any]:
        """Stop a component (GOODBYE, transport closed, abort after the stop timeout).

        Answers within the stop timeout whatever the component is doing (connecting,
        waiting for its router, backing off, running). A second stop of a component that is
        already stopping waits for the first one and returns the same answer. A component
        that already ended by itself (stopped or failed) is only removed: no second stop
        event, and ``reason`` is why it ended.
        """
        return await share(self._stopping(self._get(component_id), caller))  # type: ignore[no-any-return]

    def _stopping(
        self, component: HostedComponent, caller: Any, message: str | None = None
    ) -> Deferred[dict[str, Any]]:
        """The stop of ``component`` under way, begun if there is none.

        ``component.stopping`` is set before the stop runs any step: a start that the stop
        wakes up (its connect or backoff cancelled) sees that a stop caused it.
        """
        if component.stopping is None:
            stopping: Deferred[dict[str, Any]] = Deferred()
            component.stopping = stopping
            Deferred.fromCoroutine(self._stop(component, caller, message)).chainDeferred(
                stopping)
        return component.stopping

    async def _stop(
        self, component: HostedComponent, caller: Any, message: str | None = None
    ) -> dict[str, Any]:
        uptime = component.uptime()
        if component.state in (ComponentState.STOPPED, ComponentState.FAILED):
            # it ended by itself and was told so once: only forget it
            self._forget(component)
            reason = component.stop_reason or StopReason.REQUESTED
            return {"component_id": component.id, "uptime": 0.0, "reason": reason.value,
                    "caller": caller}
        had_session = component.state is not ComponentState.RESTARTING
        component.stop_reason = StopReason.REQUESTED
        component.stop_caller = caller
        component.stop_message = message
        component.set_state(ComponentState.STOPPING)
        self._cancel_pending_restart(component)
        run = component.run
        if run is not None and had_session:
            await self._bounded_stop(component, run)
            if not run.ready.called:  # a start the stop cut short answers now, at the latest
                run.ready.errback(StartCancelled("the start was cancelled by a stop request"))
        component.set_state(ComponentState.STOPPED)
        self._forget(component)
        return {
            "component_id": component.id,
            "uptime": uptime,
            "reason": StopReason.REQUESTED.value,
            "caller": caller,
        }

    def _bounded_stop(self, component: HostedComponent, run: SessionRun) -> Deferred[None]:
        """Stop ``run``; fires when it has stopped, or after the stop timeout at the latest.

        The run aborts its transport at the timeout itself; this bound is for a run that
        still does not answer, so that no stop, and no shutdown, can hang.
        """
        timeout = self.options.stop_timeout
        done: Deferred[None] = Deferred()
        timer: list[Any] = []

        def finished(outcome: Any) -> None:
            if isinstance(outcome, Failure):
                component.log.warn("stopping its session failed: {error}",
                                   error=outcome.value)
            for call in timer:
                if call.active():
                    call.cancel()
            if not done.called:
                done.callback(None)

        def expired() -> None:
            if not done.called:
                component.log.warn("its session did not end within {timeout} s: given up on",
                                   timeout=timeout)
                done.callback(None)

        try:
            stopping = run.stop(timeout)
        except Exception as error:
            component.log.warn("stopping its session failed: {error}", error=error)
            done.callback(None)
            return done
        if not done.called:
            # scheduled after the run's own abort timer, which goes first at the same time
            timer.append(self.reactor.callLater(timeout, expired))
        stopping.addBoth(finished)
        return done

    def live_runs(self) -> list[SessionRun]:
        """The session runs of the components that have one (for the reactor.stop guard)."""
        return [c.run for c in self.components.values() if c.run is not None]

    async def restart(
        self, component_id: str, reload_modules: bool = False, caller: Any = None,
        cause: str = "requested",
    ) -> dict[str, Any]:
        """Stop and start again with the same configuration.

        Modules are reloaded before the component is stopped: if one fails to reload, the
        call fails and the component keeps running its old code.
        """
        component = self._get(component_id)
        config, restarts = component.spec.raw, component.restarts + 1
        reloaded = self.reloader.reload_changed() if reload_modules else []
        stopped = await self.stop(component_id, caller)
        self._emit(
            "on_component_restart",
            {"id": component_id, "cause": cause, "attempt": 0, "delay": 0.0, "caller": caller},
        )
        started = await self.start(component_id, config, restarts=restarts)
        return {"stopped": stopped, "started": {**started, "reloaded": reloaded},
                "caller": caller}

    async def reload_and_restart(self, modules: list[str]) -> list[str]:
        """Reload changed modules once, then restart the components they affect.

        A component is affected when its class or callbacks come from a changed module; a
        changed module that is no component's own (a helper) affects every component. If a
        module fails to reload, nothing is restarted and the old code keeps running.
        """
        try:
            self.reloader.reload(modules)
        except ContainerError as error:
            log.error("not restarting: {error}", error=error)
            return []
        own = {m for c in self.components.values() for m in c.spec.modules}
        touched = set(modules)
        affected = [
            c.id for c in self.components.values()
            if c.active and (touched - own or touched & set(c.spec.modules))
        ]
        restarts = [Deferred.fromCoroutine(self.restart(i, cause="reload")) for i in affected]
        for ok, result in await DeferredList(restarts, consumeErrors=True):
            if not ok:
                log.error("restart after reload failed: {error}", error=result.value)
        return affected

    def get(self, component_id: str) -> dict[str, Any]:
        return self._get(component_id).record()

    def list(self, full: bool = False) -> list[Any]:
        ids = sorted(self.components)
        return [self.components[i].record() for i in ids] if full else ids

    async def shutdown(self) -> list[str]:
        """Stop every component, newest first, all at once; returns the ids stopped.

        Components that already stopped or failed by themselves are neither stopped again
        nor listed. Each stop is bounded by the stop timeout, so the shutdown is too.
        """
        self.shutting_down = True
        ids = [
            i for i, c in reversed(self.components.items())
            if c.state not in (ComponentState.STOPPED, ComponentState.FAILED)
        ]  # one that ended by itself was counted then, and is not stopped again
        stops = [Deferred.fromCoroutine(self.stop(i)) for i in ids if i in self.components]
        results = await DeferredList(stops, consumeErrors=True)
        for ok, result in results:
            if not ok:
                log.warn("stopping a component failed: {error}", error=result.value)
        return ids

    def status(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for component in self.components.values():
            counts[component.state.value] = counts.get(component.state.value, 0) + 1
        return {
            "pid": os.getpid(),
            "uptime": self.reactor.seconds() - self.started_at,
            "policies": self.options.as_json(),
            "components": counts,
            "total": len(self.components),
            "shutting_down": self.shutting_down,
        }

    def resumable(self) -> dict[str, dict[str, Any]]:
        """The configurations of the components a restarted worker should bring back."""
        return {c.id: c.spec.raw for c in self.components.values() if c.active}

    # -- registry -------------------------------------------------------------------------

    def _get(self, component_id: str) -> HostedComponent:
        try:
            return self.components[component_id]
        except KeyError:
            raise NoSuchComponent(
                f"no component with id '{component_id}' in this container"
            ) from None

    def _refuse_duplicate(self, component_id: str) -> None:
        existing = self.components.get(component_id)
        if existing is not None and existing.state not in (
            ComponentState.STOPPED, ComponentState.FAILED
        ):
            raise AlreadyRunning(
                f"a component with id '{component_id}' is already {existing.state.value}"
            )

    def _register(
        self, component_id: str, spec: ComponentSpec, builder: SessionBuilder
    ) -> HostedComponent:
        component = HostedComponent(
            component_id,
            spec,
            RestartWindow(self.options.restart_limit),
            self.reactor.seconds,
            self._transitioned,
        )
        self.components.pop(component_id, None)
        self.components[component_id] = component
        self._builders[component_id] = builder
        self._on_change()
        return component

    def _forget(self, component: HostedComponent) -> None:
        if self.components.get(component.id) is component:
            del self.components[component.id]
            self._builders.pop(component.id, None)
            self._on_change()

    def _discard_failed_start(self, component: HostedComponent) -> None:
        if component.state in (ComponentState.STARTING, ComponentState.RESTARTING):
            self._cancel_pending_restart(component)
            self._forget(component)

    def _builder(self, spec: ComponentSpec) -> SessionBuilder:
        if spec.kind == "class":
            builder: SessionBuilder = session_builder(load_class_component(spec.classname))
        else:
            callbacks = load_callbacks(spec.callbacks)
            function_class = supervised_class(FunctionSession)

            def builder(config: ComponentConfig) -> Any:
                return function_class(config, callbacks)

        self.reloader.track()
        return builder

    def _component_config(self, spec: ComponentSpec) -> ComponentConfig:
        return ComponentConfig(
            realm=spec.realm,
            extra=spec.extra,
            controller=self._controller() if self.options.expose_controller else None,
            shared=self.shared if self.options.expose_shared else None,
        )

    # -- running one attempt ----------------------------------------------------------------

    async def _launch(self, component: HostedComponent) -> None:
        run = self._run_factory(
            self.reactor,
            component.spec,
            self._builders[component.id],
            self._component_config(component.spec),
            component.log,
            self._session_ended,
            component,
        )
        component.run = run
        grace = component.spec.ready_grace
        details = await run.start(
            self.options.start_timeout, self.options.ready_grace if grace is None else grace
        )
        if component.stopping is not None or component.state is not ComponentState.STARTING:
            raise StartCancelled("the start was cancelled by a stop request")
        component.last_error = None if component.attempt == 0 else component.last_error
        component.mark_running(details.session, details.realm, getattr(run, "ready_by", None))

    async def _start_waiting_for_router(self, component: HostedComponent) -> None:
        """Retry a first start that cannot reach the router, with backoff, until it joins."""
        while True:
            try:
                await self._launch(component)
                return
            except CannotConnect as error:
                if component.stopping is not None or (
                    component.state is not ComponentState.STARTING
                ):
                    raise StartCancelled("the start was cancelled by a stop request") from None
                delay = self._schedule_retry(component, StopReason.LOST, str(error))
            try:
                component.pending_restart = deferLater(self.reactor, delay, lambda: None)
                await component.pending_restart
            except CancelledError:
                if component.stopping is None:
                    raise  # its caller gave up: start() stops it
                raise StartCancelled("the start was cancelled by a stop request") from None
            self._begin_attempt(component)

    def _session_ended(self, component: HostedComponent, run: SessionRun, end: Any) -> None:
        if component.run is not run or end.reason is StopReason.REQUESTED:
            return
        component.session_id = None
        component.log.info("session ended ({reason}): {message}", reason=end.reason.value,
                           message=end.message)
        self._handle_exit(component, end.reason, end.message, counts=True)

    def _restart_now(self, component: HostedComponent) -> None:
        self._begin_attempt(component)
        attempt = Deferred.fromCoroutine(self._launch(component))
        attempt.addErrback(self._restart_failed, component)

    def _begin_attempt(self, component: HostedComponent) -> None:
        component.pending_restart = None
        component.next_restart_at = None
        component.restarts += 1
        component.set_state(ComponentState.STARTING)

    def _restart_failed(self, failure: Failure, component: HostedComponent) -> None:
        if failure.check(StartCancelled, CancelledError) or (
            component.state is not ComponentState.STARTING
        ):
            return
        error = failure.value
        if not isinstance(error, ContainerError):
            component.log.failure("restart attempt failed", failure=failure)
        unreachable = isinstance(error, CannotConnect)
        reason = StopReason.LOST if unreachable else StopReason.FAILED
        self._handle_exit(component, reason, str(error), counts=not unreachable)

    # -- policies ---------------------------------------------------------------------------

    def _handle_exit(
        self, component: HostedComponent, reason: StopReason, message: str, counts: bool
    ) -> None:
        """Apply the restart policy to a component that ended by itself."""
        if component.stopping is not None or component.state not in (
            ComponentState.STARTING, ComponentState.RUNNING
        ):
            return  # a requested stop under way owns what happens next
        component.stop_reason = reason
        component.stop_message = message
        if reason.is_failure:
            component.last_error = message
        policy = component.spec.restart or self.options.restart
        if self.shutting_down or not policy.should_restart(reason):
            self._finish(component, reason)
            return
        if counts and not component.window.allow(self.reactor.seconds()):
            component.gave_up = True
            component.last_error = (
                f"gave up after {self.options.restart_limit.max_restarts} restarts within "  # type: ignore[union-attr]
                f"{self.options.restart_limit.period:g} s; last error: {message}"  # type: ignore[union-attr]
            )
            self._finish(component, StopReason.FAILED)
            return
        delay = self._schedule_retry(component, reason, message)
        component.pending_restart = deferLater(
            self.reactor, delay, self._restart_now, component
        )
        component.pending_restart.addErrback(lambda f: f.trap(CancelledError))

    def _schedule_retry(
        self, component: HostedComponent, reason: StopReason, message: str
    ) -> float:
        """Count the attempt, pick its delay, and move to ``restarting`` (publishing it)."""
        backoff = self.options.backoff
        if component.running_since is not None and (
            self.reactor.seconds() - component.running_since >= backoff.stable_after
        ):
            component.attempt = 0
        component.running_since = None
        component.attempt += 1
        component.stop_reason = reason
        component.last_error = message if reason.is_failure else component.last_error
        delay = backoff.delay(component.attempt, self._uniform)
        component.next_restart_at = self.reactor.seconds() + delay
        component.restart_delay = delay
        component.set_state(ComponentState.RESTARTING)
        return delay

    def _finish(self, component: HostedComponent, reason: StopReason) -> None:
        component.running_since = None
        component.set_state(
            ComponentState.FAILED if reason.is_failure else ComponentState.STOPPED
        )
        remaining = sum(1 for c in self.components.values() if c.active)
        policy = self.options.shutdown
        if not self.shutting_down and policy.should_shutdown(reason, remaining):
            why = f"{policy.value}: component '{component.id}' {component.state.value}"
            self._request_shutdown(1 if reason.is_failure else 0, why)

    def _cancel_pending_restart(self, component: HostedComponent) -> None:
        pending, component.pending_restart = component.pending_restart, None
        component.next_restart_at = None
        if pending is not None and not pending.called:
            pending.cancel()

    # -- events ---------------------------------------------------------------------------

    def _transitioned(
        self, component: HostedComponent, old: ComponentState, new: ComponentState
    ) -> None:
        if new is ComponentState.RUNNING:
            self._emit("on_component_start", self._start_event(component))
        elif new is ComponentState.RESTARTING:
            self._emit("on_component_stop", self._stop_event(component, will_restart=True))
            self._emit("on_component_restart", self._restart_event(component))
        elif new in (ComponentState.STOPPED, ComponentState.FAILED):
            self._emit("on_component_stop", self._stop_event(component, will_restart=False))
        if (old in ACTIVE_STATES) != (new in ACTIVE_STATES):
            self._on_change()

    def _start_event(self, component: HostedComponent) -> dict[str, Any]:
        return {
            **component.started_info(),
            "restarts": component.restarts,
            "attempt": component.attempt,
        }

    def _stop_event(self, component: HostedComponent, will_restart: bool) -> dict[str, Any]:
        reason = component.stop_reason or StopReason.REQUESTED
        return {
            "id": component.id,
            "reason": reason.value,
            "message": component.last_error if reason.is_failure else component.stop_message,
            "state": component.state.value,
            "will_restart": will_restart,
            "restart_in": component.next_restart_in() if will_restart else None,
            "attempt": component.attempt,
            "restarts": component.restarts,
            "gave_up": component.gave_up,
            "caller": component.stop_caller if reason is StopReason.REQUESTED else None,
        }

    def _restart_event(self, component: HostedComponent) -> dict[str, Any]:
        reason = component.stop_reason or StopReason.FAILED
        return {
            "id": component.id,
            "cause": reason.value,
            "attempt": component.attempt,
            "delay": component.restart_delay,
            "caller": None,
        }


"""Start, stop, restart and list components, and apply the restart and shutdown policies.

The supervisor holds the registry (component id -> :class:`HostedComponent`) and decides;
each record carries out its own transitions. It knows nothing of WAMP management: it
reports lifecycle events through an ``emit(topic, payload)`` function (from one listener,
:class:`~container.worker.reports.LifecycleEvents`) and asks for a worker shutdown through
``request_shutdown(exit_code, why)``. Time comes from the injected reactor (a
``task.Clock`` in tests), so backoff and restart limits are testable without waiting.
"""

from __future__ import annotations

import builtins
import copy
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, cast

import txaio
from twisted.internet.defer import CancelledError, Deferred, DeferredList
from twisted.python.failure import Failure

from container.components import ComponentSpec
from container.deferreds import share
from container.errors import (
    AlreadyRunning,
    CannotConnect,
    ContainerError,
    ExitCode,
    NoSuchComponent,
    ShuttingDown,
    StartCancelled,
)
from container.options import ContainerOptions
from container.policy import StopReason
from container.worker import reports
from container.worker.builders import SessionBuilder, builder_for
from container.worker.component import ComponentState, HostedComponent, Hosting, RunFactory
from container.worker.loader import Reloader
from container.worker.outcome import start_cancelled
from container.worker.run import SessionRun

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
        run_factory: RunFactory = SessionRun,
        load_builder: Callable[[ComponentSpec], SessionBuilder] = builder_for,
    ) -> None:
        self.reactor = reactor
        self.options = options
        self.components: dict[str, HostedComponent] = {}
        self.shared: dict[str, Any] = {"reactor": reactor}
        self.shutting_down = False
        self.started_at = reactor.seconds()
        self.reloader = reloader or Reloader()
        self._events = reports.LifecycleEvents(emit, on_change)
        self._request_shutdown = request_shutdown
        self._on_change = on_change
        self._load_builder = load_builder
        self._hosting = Hosting(reactor, options, self._events.transitioned, self._exited,
                                run_factory, uniform, controller, self.shared)

    # -- management operations ----------------------------------------------------------------

    async def start(
        self,
        component_id: str,
        spec: ComponentSpec,
        reload_modules: bool = False,
        wait_for_router: bool = False,
        restarts: int = 0,
        reloaded: Sequence[str] = (),
    ) -> dict[str, Any]:
        """Start a component; returns once it is ready (joined, and onJoin finished, or it
        said it is ready, or its onJoin kept running for the ready grace period).

        ``spec`` is the parsed configuration (the API parses it, once). Nothing is awaited
        between the duplicate check and registering the component, so concurrent starts of
        one id cannot both pass. A start that fails leaves no entry. A start whose caller
        gives up (the call is cancelled) stops what it started -- the session and its entry
        -- before it reports ``StartCancelled``.
        """
        if self.shutting_down:
            raise ShuttingDown("the worker is shutting down and starts no components")
        self._refuse_duplicate(component_id)
        if reload_modules:
            reloaded = (*reloaded, *self.reloader.reload_changed())
        builder = self._load_builder(spec)
        self.reloader.track()
        component = self._register(component_id, spec, builder, restarts, tuple(reloaded))
        try:
            if wait_for_router:
                await self._start_waiting_for_router(component)
            else:
                await component.launch()
        except CancelledError:
            await self._abandon_start(component)
            raise StartCancelled(
                "the caller of start_component gave up: the start was cancelled and the "
                "component stopped"
            ) from None
        except BaseException:
            self._discard_failed_start(component)
            raise
        return reports.started_info(component)

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
        answer: dict[str, Any] = await share(self._stopping(self._get(component_id), caller))
        return answer

    def _stopping(
        self, component: HostedComponent, caller: Any, message: str | None = None
    ) -> Deferred[dict[str, Any]]:
        """The stop of ``component`` under way, begun if there is none (its answer reaches
        every caller that waits for it)."""
        stopping = component.stopping
        if stopping is None:
            stopping = component.expect_stop()
            Deferred.fromCoroutine(self._stop(component, caller, message)).chainDeferred(
                stopping)
        return stopping

    async def _stop(
        self, component: HostedComponent, caller: Any, message: str | None = None
    ) -> dict[str, Any]:
        uptime = component.uptime()
        if component.ended:
            # it ended by itself and was told so once: only forget it
            self._forget(component)
            reason = component.stop_reason or StopReason.REQUESTED
            return _stop_answer(component, 0.0, reason, caller)
        await component.stop(caller, message, self.options.stop_timeout)
        self._forget(component)
        return _stop_answer(component, uptime, StopReason.REQUESTED, caller)

    def live_runs(self) -> list[SessionRun]:
        """The session runs of the components that have one (for the reactor.stop guard)."""
        return [c.run for c in self.components.values() if c.run is not None]

    async def restart(
        self, component_id: str, reload_modules: bool = False, caller: Any = None,
        cause: str = "requested", reloaded: Sequence[str] = (),
    ) -> dict[str, Any]:
        """Stop and start again with the same configuration.

        Modules are reloaded before the component is stopped: if one fails to reload, the
        call fails and the component keeps running its old code.
        """
        component = self._get(component_id)
        spec, restarts = _renewed(component.spec), component.restarts + 1
        if reload_modules:
            reloaded = (*reloaded, *self.reloader.reload_changed())
        stopped = await self.stop(component_id, caller)
        self._events.restart_requested(component_id, cause, caller)
        started = await self.start(component_id, spec, restarts=restarts, reloaded=reloaded)
        return {"stopped": stopped, "started": started, "caller": caller}

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
        restarts = [Deferred.fromCoroutine(self.restart(i, cause="reload", reloaded=modules))
                    for i in affected]
        results = await DeferredList(restarts, consumeErrors=True)
        for component_id, (ok, result) in zip(affected, results, strict=True):
            if not ok:
                log.error("[component {component_id}] restart after reload failed: {error}",
                          component_id=component_id, error=cast(Failure, result).value)
        return affected

    def get(self, component_id: str) -> dict[str, Any]:
        return reports.record(self._get(component_id))

    def list(self, full: bool = False) -> builtins.list[Any]:
        ids = sorted(self.components)
        return [reports.record(self.components[i]) for i in ids] if full else ids

    async def shutdown(self, caller: Any = None) -> builtins.list[str]:
        """Stop every component, newest first, all at once; returns the ids stopped.

        Components that already stopped or failed by themselves are neither stopped again
        nor listed. Each stop is bounded by the stop timeout, so the shutdown is too. Each
        stop event names ``caller``, who asked for the shutdown (None: a signal, a policy).
        """
        self.shutting_down = True
        # one that ended by itself was counted then, and is not stopped again
        ids = [i for i, c in reversed(self.components.items()) if not c.ended]
        stops = {i: Deferred.fromCoroutine(self.stop(i, caller)) for i in ids
                 if i in self.components}
        results = await DeferredList(list(stops.values()), consumeErrors=True)
        for component_id, (ok, result) in zip(stops, results, strict=True):
            if not ok:
                log.warn("[component {component_id}] stopping it at shutdown failed: {error}",
                         component_id=component_id, error=cast(Failure, result).value)
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
        if existing is not None and not existing.ended:
            raise AlreadyRunning(
                f"a component with id '{component_id}' is already {existing.state.value}"
            )

    def _register(
        self, component_id: str, spec: ComponentSpec, builder: SessionBuilder, restarts: int,
        reloaded: tuple[str, ...],
    ) -> HostedComponent:
        component = HostedComponent(component_id, spec, builder, self._hosting, restarts,
                                    reloaded)
        self.components.pop(component_id, None)
        self.components[component_id] = component
        self._on_change()
        return component

    def _forget(self, component: HostedComponent) -> None:
        if self.components.get(component.id) is component:
            del self.components[component.id]
            self._on_change()

    def _discard_failed_start(self, component: HostedComponent) -> None:
        if component.state in (ComponentState.STARTING, ComponentState.RESTARTING):
            component.cancel_pending_restart()
            self._forget(component)

    # -- waiting for the router -------------------------------------------------------------

    async def _start_waiting_for_router(self, component: HostedComponent) -> None:
        """Retry a first start that cannot reach the router, with backoff, until it joins."""
        while True:
            try:
                await component.launch()
                return
            except CannotConnect as error:
                if component.start_interrupted:
                    raise start_cancelled() from None
                delay = component.schedule_restart(StopReason.LOST, str(error))
            try:
                await component.pause(delay)
            except CancelledError:
                if component.stopping is None:
                    raise  # its caller gave up: start() stops it
                raise start_cancelled() from None
            component.begin_attempt()

    # -- policies ---------------------------------------------------------------------------

    def _exited(
        self, component: HostedComponent, reason: StopReason, message: str, counts: bool
    ) -> None:
        """Apply the restart policy to a component that ended by itself."""
        if component.stopping is not None or component.state not in (
            ComponentState.STARTING, ComponentState.RUNNING
        ):
            return  # a requested stop under way owns what happens next
        component.record_exit(reason, message)
        policy = component.spec.restart or self.options.restart
        if self.shutting_down or not policy.should_restart(reason):
            self._ended_for_good(component, reason)
        elif counts and not component.restart_allowed():
            component.give_up(message)
            self._ended_for_good(component, StopReason.FAILED)
        else:
            component.restart_after(component.schedule_restart(reason, message))

    def _ended_for_good(self, component: HostedComponent, reason: StopReason) -> None:
        """It will not be restarted: finish it, and apply the shutdown policy."""
        component.finish(reason)
        remaining = sum(1 for c in self.components.values() if c.active)
        policy = self.options.shutdown
        if not self.shutting_down and policy.should_shutdown(reason, remaining):
            why = f"{policy.value}: component '{component.id}' {component.state.value}"
            self._request_shutdown(ExitCode.FAILED if reason.is_failure else ExitCode.OK, why)


def _stop_answer(
    component: HostedComponent, uptime: float, reason: StopReason, caller: Any
) -> dict[str, Any]:
    """What ``stop_component`` returns: ``id`` as every other answer says it, and
    ``component_id`` as Crossbar.io's container says it."""
    return {"id": component.id, "component_id": component.id, "uptime": uptime,
            "reason": reason.value, "caller": caller}


def _renewed(spec: ComponentSpec) -> ComponentSpec:
    """The spec for a new start of the same configuration: its own copy of ``extra``, as a
    start from the configuration gets (the last session may have changed its copy)."""
    if spec.extra is None:
        return spec
    return replace(spec, extra=copy.deepcopy(spec.raw.get("extra")))

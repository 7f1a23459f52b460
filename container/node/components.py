"""Bringing each container worker's configured components up through the management realm.

A worker's configured components are started once, when its first process says it is ready
(``on_worker_ready``, or a status probe after the node (re)joined and may have missed that
event), all concurrently, each through ``start_component``. A respawned worker resumes its
whole component set from its checkpoint by itself, so nothing is started again; unless it
had to set its checkpoint aside, in which case the configured components are started anew.
A start lost on the way (the worker or the router went away) is tried again once both are
back. Every call runs in the background and has an errback that reports what it was doing.
"""

from __future__ import annotations

from collections.abc import Coroutine, Iterable
from typing import Any, Protocol

from twisted.internet.defer import Deferred

from container.errors import ExitCode
from container.node.handles import WorkerHandle
from container.node.output import NodeOutput

__all__ = ["START_RETRY_DELAY", "ComponentStarter", "StartOwner"]

START_RETRY_DELAY = 0.5


class StartOwner(Protocol):
    """What the starter needs of the node: whether it stops, how to fail it, and to hear
    that a component came up."""

    @property
    def stopping(self) -> bool: ...

    def finish(self, exit_code: int, why: str) -> None: ...

    def check_up(self) -> None: ...


class ComponentStarter:
    """Starts the configured components of the node's workers over ``link`` (a
    :class:`container.node.link.ManagementLink`)."""

    def __init__(self, reactor: Any, link: Any, output: NodeOutput, owner: StartOwner) -> None:
        self._reactor = reactor
        self._link = link
        self._output = output
        self._owner = owner

    def joined(self, workers: Iterable[WorkerHandle]) -> None:
        """(Re)joined: catch up with workers whose ready event we may have missed."""
        for worker in workers:
            if worker.pending and worker.child.pid is not None:
                self._background(self._probe(worker),
                                 f"worker '{worker.plan.id}': while asking for its status")

    def ready(self, worker: WorkerHandle) -> None:
        """The worker's current process serves its API: start what it does not run yet."""
        if worker.mark_ready():
            self._background(self._check_resumed(worker),
                             f"worker '{worker.plan.id}': cannot check its resumed checkpoint")
        self.start_pending(worker)

    def start_pending(self, worker: WorkerHandle) -> None:
        """Start the configured components not known to run yet (only the first process of
        a worker has any: a respawned one resumes its checkpoint by itself)."""
        if self._owner.stopping:
            return
        for component_id, config in list(worker.pending.items()):
            if component_id not in worker.in_flight:
                worker.in_flight.add(component_id)
                self._background(
                    self._start_component(worker, component_id, config),
                    f"worker '{worker.plan.id}': while starting component '{component_id}'",
                )

    def _background(self, work: Coroutine[Any, Any, None], doing: str) -> None:
        Deferred.fromCoroutine(work).addErrback(self._output.errback(doing))

    async def _probe(self, worker: WorkerHandle) -> None:
        try:
            await self._link.call(worker.plan.prefix, "get_status")
        except Exception:
            return  # not serving yet: its on_worker_ready will come
        self.ready(worker)
        self._owner.check_up()

    async def _check_resumed(self, worker: WorkerHandle) -> None:
        """A respawned worker resumes its checkpoint. If it had to set the checkpoint aside
        (unreadable, of the wrong shape, another worker's), nothing came back: say so, and
        start the configured components again."""
        try:
            status = await self._link.call(worker.plan.prefix, "get_status")
        except Exception:
            return  # gone again: its next ready event brings us back here
        aside = (status.get("checkpoint") or {}).get("set_aside") if isinstance(
            status, dict) else None
        if not aside:
            return
        self._output.node_event(
            "checkpoint set aside", f"{aside.get('path')}: {aside.get('problem')}; kept as "
            f"{aside.get('moved_to')}; starting the configured components again",
            worker=worker.plan.id, checkpoint=aside)
        for component in worker.plan.components:
            worker.pending.setdefault(component["id"], component)
        self.start_pending(worker)

    def _retry_soon(self, worker: WorkerHandle) -> None:
        """A start got lost (the worker or the router went away meanwhile). If the worker
        and our session are already back, no event will come to trigger it: try again."""
        if worker.serving and self._link.session is not None:
            self._reactor.callLater(START_RETRY_DELAY, self.start_pending, worker)

    async def _start_component(
        self, worker: WorkerHandle, component_id: str, config: dict[str, Any]
    ) -> None:
        from container.node.link import error_text, start_outcome

        try:
            await self._link.call(worker.plan.prefix, "start_component", component_id, config,
                                  wait_for_router=True)
            outcome, why = "started", ""
        except Exception as error:
            outcome, why = start_outcome(error), error_text(error)
        finally:
            worker.in_flight.discard(component_id)
        if outcome == "fatal":
            self._owner.finish(ExitCode.FAILED, f"component '{component_id}' of worker "
                                                f"'{worker.plan.id}' could not be started: {why}")
        elif outcome == "retry":
            self._retry_soon(worker)
        elif worker.pending.pop(component_id, None):  # started, or dropped by somebody else
            self._output.progress_advance(worker.plan.id, component_id)
            self._owner.check_up()

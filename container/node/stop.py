"""The node's ordered stop: bounded, in reverse start order, every failure reported.

Workers and guests stop first and together (their components leave cleanly while the
router still runs), then the node's management link closes, then the routers stop. Each
child's stop is bounded (SIGTERM, then SIGKILL), and the whole stop is bounded too: past
its deadline every child is killed and the node ends anyway. A child whose stop fails is
named in an error line; the stop goes on with the others.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, DeferredList, TimeoutError
from twisted.python.failure import Failure

from container.node.handles import GuestHandle, RouterHandle, WorkerHandle
from container.node.output import NodeOutput

__all__ = ["GUEST_STOP_TIMEOUT", "OrderedStop"]

ROUTER_STOP_TIMEOUT = 10.0
WORKER_STOP_MARGIN = 5.0
GUEST_STOP_TIMEOUT = 10.0
LINK_CLOSE_TIMEOUT = 3.0
#: Beyond the sum of the stop timeouts, before the node kills what is left and exits.
STOP_SLACK = 5.0


class OrderedStop:
    """Stops the node's children once; ``finished(exit_code)`` is called when they are
    stopped, or when the stop overran its deadline and what was left got killed."""

    def __init__(
        self,
        reactor: Any,
        output: NodeOutput,
        workers: Mapping[str, WorkerHandle],
        guests: Mapping[str, GuestHandle],
        routers: Mapping[str, RouterHandle],
        finished: Callable[[int], None],
    ) -> None:
        self._reactor = reactor
        self._output = output
        self._workers = workers
        self._guests = guests
        self._routers = routers
        self._finished = finished
        self._overdue: Any = None
        self._ended = False

    def begin(self, exit_code: int, link: Any) -> None:
        """Start the stop (``link``: the node's management link, or None)."""
        self._overdue = self._reactor.callLater(self.deadline(), self._stop_overdue, exit_code)
        stopping = Deferred.fromCoroutine(self._stop_all(exit_code, link))
        stopping.addErrback(self._output.errback("while stopping"))

    def deadline(self) -> float:
        """How long an ordered stop may take: workers and guests, the link, then routers."""
        workers = max([w.plan.stop_timeout + WORKER_STOP_MARGIN for w in self._workers.values()]
                      + [GUEST_STOP_TIMEOUT])
        return workers + LINK_CLOSE_TIMEOUT + ROUTER_STOP_TIMEOUT + STOP_SLACK

    def kill_all(self) -> None:
        """SIGKILL every child at once, none to be restarted."""
        for child in [*(w.child for w in self._workers.values()),
                      *(g.child for g in self._guests.values()),
                      *(r.child for r in self._routers.values())]:
            child.kill()

    def _stop_overdue(self, exit_code: int) -> None:
        """The ordered stop did not end in time: kill every child and end the node anyway."""
        if self._ended:
            return
        self._output.error("the ordered stop did not finish in time: killing every child")
        self.kill_all()
        self._end(exit_code)

    def _end(self, exit_code: int) -> None:
        if self._ended:
            return
        self._ended = True
        if self._overdue is not None and self._overdue.active():
            self._overdue.cancel()
        self._finished(exit_code)

    async def _stop_all(self, exit_code: int, link: Any) -> None:
        try:
            for guest in self._guests.values():
                if guest.watcher is not None:
                    guest.watcher.stop()
            await self._gather([
                *((f"worker '{w.plan.id}'", w.child.stop(w.plan.stop_timeout
                                                         + WORKER_STOP_MARGIN))
                  for w in self._workers.values()),
                *((f"guest '{g.launch.id}'", g.child.stop(GUEST_STOP_TIMEOUT))
                  for g in self._guests.values()),
            ])
            if link is not None:
                closing = Deferred.fromCoroutine(link.close())
                await closing.addTimeout(LINK_CLOSE_TIMEOUT, self._reactor).addErrback(
                    self._link_not_closed)
            await self._gather((f"router '{r.plan.id}'", r.child.stop(ROUTER_STOP_TIMEOUT))
                               for r in self._routers.values())
        finally:
            self._end(exit_code)

    def _link_not_closed(self, failure: Failure) -> None:
        """A link that does not close in time is expected (its router may be gone); any
        other failure is reported, and the stop goes on."""
        if not isinstance(failure.value, TimeoutError | CancelledError):
            self._output.errback("while closing the management link")(failure)

    async def _gather(self, stops: Iterable[tuple[str, Coroutine[Any, Any, Any]]]) -> None:
        """Wait for every stop; report each one that failed, naming its child."""
        named = list(stops)
        results = await DeferredList([Deferred.fromCoroutine(work) for _, work in named],
                                     consumeErrors=True)
        for (name, _), (succeeded, result) in zip(named, results, strict=True):
            if not succeeded:
                self._output.errback(f"while stopping {name}")(result)

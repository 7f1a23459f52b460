"""When the node is up: every router listens and every configured component runs.

The node says ``node ready`` once, with how long it took from launch (and when the first
component joined). A worker that is gone for good with components never started makes the
node ``incomplete`` instead, naming what is missing. If neither happens within the start
timeout, the node gives up and says what it is still waiting for.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from container.node.handles import RouterHandle, WorkerHandle
from container.node.output import NodeOutput

__all__ = ["NodeSettings", "Readiness"]


@dataclass(frozen=True)
class NodeSettings:
    """How long the node may take to come up, and when it was launched (monotonic clock)."""

    start_timeout: float = 60.0
    launched: float = field(default_factory=time.monotonic)


class Readiness:
    """Tracks the node's start and reports its outcome once."""

    def __init__(
        self,
        reactor: Any,
        output: NodeOutput,
        settings: NodeSettings,
        workers: Mapping[str, WorkerHandle],
        routers: Mapping[str, RouterHandle],
    ) -> None:
        self._reactor = reactor
        self._output = output
        self._settings = settings
        self._workers = workers
        self._routers = routers
        self.up = False
        self._first_joined: float | None = None
        self._deadline: Any = None

    def begin(self, give_up: Callable[[str], None]) -> None:
        """The children are starting: ``give_up(why)`` if the node is not up in time."""
        self._deadline = self._reactor.callLater(self._settings.start_timeout,
                                                 self._timed_out, give_up)

    def component_started(self) -> None:
        if self._first_joined is None:
            self._first_joined = time.monotonic() - self._settings.launched

    def cancel(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()

    def check(self) -> None:
        """``node ready`` (or ``node incomplete``) once nothing is left to wait for."""
        if self.up:
            return
        running = [w for w in self._workers.values() if w.child.final is None]
        waiting = [w for w in running if w.pending or not w.ready_once]
        if waiting or not all(r.ready_once for r in self._routers.values()):
            return
        self.up = True
        self.cancel()
        self._output.progress_done()
        missing = [f"{w.plan.id}/{c}" for w in self._workers.values()
                   if w.child.final is not None for c in w.pending]
        if missing:
            self._output.node_event(
                "node incomplete", f"up, but {len(missing)} configured component(s) are not "
                f"running, their worker is gone: {', '.join(missing)}", missing=missing)
        else:
            self._ready()

    def _ready(self) -> None:
        elapsed = time.monotonic() - self._settings.launched
        first = self._first_joined
        total = sum(len(w.plan.components) for w in self._workers.values())
        text = (f"{total} component(s) in {len(self._workers)} worker(s) up {elapsed:.2f} s "
                f"after launch" + (f" (first joined after {first:.2f} s)" if first else ""))
        self._output.node_event("node ready", text, elapsed=round(elapsed, 3),
                                first_joined=round(first, 3) if first else None)

    def _timed_out(self, give_up: Callable[[str], None]) -> None:
        waiting = "; ".join(_waiting_for(self._workers.values()))
        give_up(f"the node did not come up within {self._settings.start_timeout:g} s; still "
                f"waiting for {waiting} (is its router address right?)")


def _waiting_for(workers: Iterable[WorkerHandle]) -> list[str]:
    waiting = []
    for worker in workers:
        if not worker.ready_once:
            waiting.append(f"worker '{worker.plan.id}' to join the management realm")
        waiting += [f"component '{worker.plan.id}/{c}' to join its realm"
                    for c in worker.pending]
    return waiting

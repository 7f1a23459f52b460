"""What the node knows of each child it runs: its plan, its supervised process, its progress.

One record per router, container worker and guest, owned by :class:`container.node.controller.Node`.
Kept apart from the node so that the component starts (:mod:`container.node.components`) and
the node share one definition of a worker's state, and the records change through their
methods where a change has a rule (a worker's ready generation).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from container.errors import ExitCode
from container.node.guest import GuestLaunch
from container.node.plan import RouterPlan, WorkerPlan
from container.node.procs import ChildProcess, ExitStatus, Supervised
from container.node.watch import DirectoryWatcher

__all__ = [
    "WORKER_CANNOT_START_CODES",
    "ExitedCallback",
    "GuestHandle",
    "RouterHandle",
    "SpawnedCallback",
    "SupervisionCallbacks",
    "WorkerHandle",
]

#: Worker exit codes that a restart cannot fix: bad arguments or options (USAGE), refused
#: by the management realm (REFUSED). A clean or policy shutdown is final only when the
#: worker announced it (its ``on_shutdown`` event) and then exited with the code it
#: announced; any other exit, 0 and 1 included, is a crash and the worker is started again.
WORKER_CANNOT_START_CODES = frozenset({int(ExitCode.USAGE), int(ExitCode.REFUSED)})


@dataclass
class WorkerHandle:
    """One container worker as the node sees it: its process and its unstarted components."""

    plan: WorkerPlan
    child: Supervised
    pending: dict[str, dict[str, Any]]  # configured components not yet known to be running
    in_flight: set[str] = field(default_factory=set)
    announced_exit: int | None = None  # the exit code its on_shutdown event announced
    ready_once: bool = False
    ready_generation: int = -1  # the process generation whose on_worker_ready we saw

    def restartable(self, status: ExitStatus) -> bool:
        """Whether an exit the node did not ask for is followed by a new process."""
        if status.signal is not None:
            return True
        if status.code in WORKER_CANNOT_START_CODES:
            return False
        return status.code != self.announced_exit

    def mark_ready(self) -> bool:
        """The current process serves its API; True if it is a respawned one (whose
        components come back from its checkpoint, not from the node)."""
        respawned = self.ready_once and self.ready_generation != self.child.generation
        self.ready_once = True
        self.ready_generation = self.child.generation
        return respawned

    @property
    def serving(self) -> bool:
        """Its current process said it is ready (so no further ready event will come)."""
        return self.ready_generation == self.child.generation and self.child.pid is not None


@dataclass
class GuestHandle:
    """A guest worker: any program of the configuration, kept running with backoff."""

    launch: GuestLaunch
    child: Supervised
    watcher: DirectoryWatcher | None = None


@dataclass
class RouterHandle:
    """A router or proxy child; ready once it said it listens (its transports)."""

    plan: RouterPlan
    child: Supervised
    transports: list[dict[str, Any]] = field(default_factory=list)
    ready_once: bool = False
    last_error: str = ""


SpawnedCallback = Callable[[Supervised, ChildProcess], None]
ExitedCallback = Callable[[Supervised, ExitStatus, float | None], None]


class SupervisionCallbacks:
    """Adapts two functions to :class:`container.node.procs.SupervisionListener`."""

    def __init__(self, spawned: SpawnedCallback, exited: ExitedCallback) -> None:
        self._spawned = spawned
        self._exited = exited

    def spawned(self, child: Supervised, process: ChildProcess) -> None:
        self._spawned(child, process)

    def exited(self, child: Supervised, status: ExitStatus, restart_in: float | None) -> None:
        self._exited(child, status, restart_in)

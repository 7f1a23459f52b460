"""When the worker's checkpoint (``--state-file``) is read and written, and how it is doing.

It is read once, before the worker connects; a file that cannot be used is set aside (or,
when even that fails, kept and never overwritten). It is written whenever the set of active
components changed: many changes in one reactor turn make one write, and a write that
fails is retried with a growing delay, the failure shown by ``get_status``. The file format
is :mod:`container.worker.checkpoint`'s.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import txaio

from container.errors import CheckpointError
from container.files import write_atomically
from container.worker.checkpoint import (
    encode_checkpoint,
    read_checkpoint,
    remove_stale_temporaries,
)

log = txaio.make_logger()

RETRY_FIRST = 0.5
RETRY_MAX = 30.0


class Checkpointer:
    """Reads and writes one worker's checkpoint file on the injected clock."""

    def __init__(
        self, clock: Any, path: str | None, worker_id: str,
        resumable: Callable[[], dict[str, Any]],
    ) -> None:
        self._clock = clock
        self.path = path
        self._worker_id = worker_id
        self._resumable = resumable
        self._call: Any = None
        self._error: str | None = None
        self._retry = RETRY_FIRST
        self._problem: dict[str, Any] | None = None
        self._resume: dict[str, Any] = {}
        self._halted = False

    def status(self) -> dict[str, Any] | None:
        """The checkpoint's health for ``get_status``: None without a state file."""
        if self.path is None:
            return None
        return {"path": self.path, "ok": self._error is None, "error": self._error,
                "set_aside": self._problem}

    def load(self) -> None:
        """Read the checkpoint before connecting; one that cannot be used is set aside."""
        path = self.path
        if path is None:
            return
        loaded = read_checkpoint(path, self._worker_id)
        self._resume = loaded.components
        if loaded.problem is None:
            return
        self._problem = {"path": path, "problem": loaded.problem, "moved_to": loaded.aside}
        if loaded.aside is not None:
            log.error("the checkpoint {path} {problem}: it was set aside as {aside} and "
                      "nothing is resumed from it", path=path, problem=loaded.problem,
                      aside=loaded.aside)
        else:
            # never overwrite the evidence: no checkpoint is written in this process
            self._error = f"{path} {loaded.problem}; not overwriting it"
            log.error("the checkpoint {path} {problem}; nothing is resumed and no checkpoint "
                      "is written", path=path, problem=loaded.problem)

    def take_resumable(self) -> dict[str, Any]:
        """The configurations read at :meth:`load`, once; clears what a killed writer left."""
        if self.path is None:
            return {}
        remove_stale_temporaries(self.path)
        components, self._resume = self._resume, {}
        return components

    def soon(self) -> None:
        """Coalesce many registry changes into one write of the state file."""
        if self.path is None or self._halted:
            return
        if self._call is None or not self._call.active():
            self._call = self._clock.callLater(0, self._due)

    def _due(self) -> None:
        if not self._halted and not self.write():
            self._call = self._clock.callLater(self._retry, self._due)
            self._retry = min(self._retry * 2, RETRY_MAX)

    def halt(self) -> None:
        """No more writes on changes (the worker is shutting down); :meth:`write` still
        writes when asked."""
        self._halted = True

    def cancel(self) -> None:
        """Drop a write still waiting for its turn (the worker is exiting)."""
        if self._call is not None and self._call.active():
            self._call.cancel()

    def write(self) -> bool:
        """Write the component set to the state file; False (logged, and shown by
        ``get_status``) if that failed."""
        path = self.path
        if path is None:
            return True
        if self._problem is not None and self._problem["moved_to"] is None:
            return True  # an unreadable checkpoint we could not set aside is kept as it is
        try:
            write_atomically(path, encode_checkpoint(self._worker_id, self._resumable()),
                             durable=True)
        except (CheckpointError, OSError, TypeError, ValueError) as error:
            cause = error.strerror if isinstance(error, OSError) and error.strerror else error
            message = f"cannot write the checkpoint {path}: {cause}"
            if message != self._error:
                log.error("{message}; retrying", message=message)
            self._error = message
            return False
        if self._error is not None:
            log.info("the checkpoint {path} is written again", path=path)
        self._error = None
        self._retry = RETRY_FIRST
        return True

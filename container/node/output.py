"""What the node prints: lifecycle events as one line each, children's output, start progress.

Two audiences: a person at a terminal (one readable line per event, a progress bar while
the configured components start) and a program reading the output (``--log-format json``:
one JSON object per line on stdout, nothing else on stdout). Children's own log lines go to
stderr, prefixed with the child's name, in both formats.

A lifecycle event (worded by :mod:`container.events`) becomes::

    12:00:01.234  w1  hello        started         realm realm1, session 123456
    12:00:04.002  w1  crashy       failed          boom; restarting in 0.4s, attempt 1

and in JSON ``{"time": ..., "source": "worker", "event": "on_component_stop", "worker":
"w1", "component": "crashy", "data": {...the payload...}}``. The node's own events (router
ready, worker process exited or restarted, node ready, stopping) have ``"source": "node"``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO

from container.events import describe_worker_event

if TYPE_CHECKING:
    from twisted.python.failure import Failure


def _clock() -> str:
    return datetime.now().astimezone().strftime("%H:%M:%S.%f")[:-3]


class NodeOutput:
    """The node's console: events on stdout, children's lines and errors on stderr."""

    def __init__(
        self, json_lines: bool = False, progress: bool | None = None,
        out: TextIO | None = None, err: TextIO | None = None,
    ) -> None:
        self.json_lines = json_lines
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        wants = self.out.isatty() and not json_lines if progress is None else progress
        self._bar = _ProgressBar(self.out) if wants else None

    # -- events -------------------------------------------------------------------------------

    def worker_event(self, worker: str, event: str, data: dict[str, Any]) -> None:
        component = data.get("id") if event.startswith("on_component") else None
        if self.json_lines:
            self._json({"source": "worker", "event": event, "worker": worker,
                        "component": component, "data": data})
            return
        what, details = describe_worker_event(event, data)
        self._text(worker, component or "-", what, details)

    def node_event(self, event: str, text: str, **data: Any) -> None:
        """One of the node's own events (``text`` for people, ``data`` for programs)."""
        if self.json_lines:
            self._json({"source": "node", "event": event, "message": text, **data})
        else:
            source = data.get("worker") or data.get("router") or data.get("guest") or "node"
            self._text(str(source), "-", event, text)

    def child_line(self, name: str, line: str) -> None:
        self._write(self.err, f"[{name}] {line}")

    def error(self, text: str) -> None:
        self._write(self.err, f"container run: error: {text}")

    def errback(self, doing: str) -> Callable[[Failure], None]:
        """An errback for the node's background work: its failure becomes an error line
        that says what failed (``doing`` names the child and the task), so no failure ends
        unseen in an unhandled Deferred."""

        def report(failure: Failure) -> None:
            error = failure.value
            self.error(f"{doing}: {type(error).__name__}: {error}")

        return report

    def _json(self, record: dict[str, Any]) -> None:
        stamp = datetime.now().astimezone().isoformat(timespec="milliseconds")
        self._write(self.out, json.dumps({"time": stamp, **record}, default=str))

    def _text(self, source: str, component: str, what: str, details: str) -> None:
        self._write(self.out, f"{_clock()}  {source:<10} {component:<14} {what:<14} {details}")

    def _write(self, stream: TextIO, line: str) -> None:
        """While the progress bar shows, lines for the terminal go above it; a redirected
        stderr (``2>file``) still gets its lines, as it cannot garble the bar."""
        if self._bar is not None and self._bar.live and _is_terminal(stream):
            self._bar.print(line, stderr=stream is self.err)
            return
        try:
            stream.write(line + "\n")
            stream.flush()
        except BrokenPipeError:
            _discard_from_now_on(stream)

    # -- start progress -----------------------------------------------------------------------

    def progress_start(self, total: int, workers: int) -> None:
        text = f"starting {total} component(s) in {workers} container worker(s)"
        if self._bar is not None and total:
            self._bar.start(total, text)
        else:
            self.node_event("starting", text, components=total, workers=workers)

    def progress_advance(self, worker: str, component: str) -> None:
        if self._bar is not None:
            self._bar.advance(f"{worker}/{component}")

    def progress_done(self) -> None:
        if self._bar is not None:
            self._bar.stop()


class _ProgressBar:
    """rich's progress display, imported only when a terminal will show it."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._progress: Any = None
        self._task: Any = None
        self.live = False

    def start(self, total: int, text: str) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        self._progress = Progress(
            SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
            MofNCompleteColumn(), TimeElapsedColumn(),
            console=Console(file=self._out), transient=True,
        )
        self._task = self._progress.add_task(text, total=total)
        self._progress.start()
        self.live = True

    def advance(self, label: str) -> None:
        if self.live:
            self._progress.update(self._task, advance=1, description=f"started {label}")

    def print(self, line: str, stderr: bool) -> None:
        self._progress.console.print(line, markup=False, highlight=False, soft_wrap=True,
                                     style="dim" if stderr else None)

    def stop(self) -> None:
        if self.live:
            self.live = False
            self._progress.stop()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _discard_from_now_on(stream: TextIO) -> None:
    """The reader of a stream went away (``container run ... | head``): point the stream at
    /dev/null, so the node keeps running, and stopping on a signal, without that output
    (and its exit status is not spoilt by a failing flush at exit)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, stream.fileno())
    except (OSError, ValueError):
        pass
    finally:
        os.close(devnull)

"""What ``container ctl`` prints: rich tables on a terminal, aligned text otherwise, or JSON.

Results go to stdout, everything else (notes, one ``error: ...`` line per failure) to
stderr, so that ``--json`` output stays parseable. The commands hand their answers to the
functions here; how an answer reads is decided only here (and, for lifecycle events, in
:mod:`container.events`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from autobahn.wamp.exception import ApplicationError, TransportLost
from rich.console import Console
from rich.table import Table
from rich.text import Text
from twisted.internet import defer

from container.errors import ContainerError, CtlError
from container.events import event_line, format_duration

__all__ = [
    "Answers",
    "Output",
    "checkpoint_notes",
    "describe_error",
    "error_message",
    "format_duration",
    "format_event",
    "show_components",
    "show_statuses",
]

# per worker: the worker, its answer (None if it failed) and the failure (None if it answered)
Answers = Sequence[tuple[Any, Any, BaseException | None]]

STATE_STYLES = {
    "running": "green", "starting": "cyan", "stopping": "cyan", "restarting": "yellow",
    "stopped": "dim", "failed": "bold red",
}

STATE_ORDER = ("running", "starting", "restarting", "stopping", "stopped", "failed")


class Output:
    """Where results go: rich tables on a terminal, aligned text otherwise, or JSON."""

    def __init__(
        self,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
        as_json: bool = False,
        terminal: bool | None = None,
    ) -> None:
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self.as_json = as_json
        self.terminal = self.stdout.isatty() if terminal is None else terminal
        self.console = (
            Console(file=self.stdout, force_terminal=True, highlight=False)
            if self.terminal else None
        )

    def line(self, text: str, style: str | None = None) -> None:
        if self.console is not None:
            self.console.print(Text(text, style=style or ""), soft_wrap=True)
        else:
            self.stdout.write(text + "\n")
        self.stdout.flush()

    def json(self, value: Any) -> None:
        self.stdout.write(json.dumps(value, default=str, sort_keys=True) + "\n")
        self.stdout.flush()

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[str]],
              styles: Sequence[Sequence[str | None]] | None = None) -> None:
        if self.console is not None:
            table = Table(*headers, header_style="bold")
            for index, row in enumerate(rows):
                row_styles = styles[index] if styles else [None] * len(row)
                # Text, not str: user text such as "a[b]" is not taken for rich markup
                table.add_row(*(Text(cell, style=style or "")
                                for cell, style in zip(row, row_styles, strict=True)))
            self.console.print(table)
        else:
            cells = [[h.upper() for h in headers], *[[_one_line(c) for c in r] for r in rows]]
            widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
            for row in cells:
                text = "  ".join(cell.ljust(width)
                                 for cell, width in zip(row, widths, strict=True))
                self.stdout.write(text.rstrip() + "\n")
        self.stdout.flush()

    def note(self, text: str) -> None:
        self.stderr.write(text + "\n")
        self.stderr.flush()

    def error(self, text: str) -> None:
        self.note(f"error: {_one_line(text)}")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def error_message(error: ApplicationError) -> str:
    """The message of an API error (its first argument), or ""."""
    return str(error.args[0]) if error.args else ""


def describe_error(error: BaseException) -> str:
    """One line a person can act on (without the ``error:`` prefix)."""
    if isinstance(error, ApplicationError):
        message = error_message(error)
        return f"{error.error}: {message}" if message else str(error.error)
    if isinstance(error, CtlError | ContainerError):
        return str(error)
    if isinstance(error, TransportLost):
        return "lost the connection to the management realm"
    if isinstance(error, defer.TimeoutError):
        return "the management realm did not answer in time"
    return f"{type(error).__name__}: {error}"


def format_event(topic: str, event: Any) -> tuple[str, str | None]:
    """One line (and a style) for a lifecycle event received on ``topic``."""
    worker_and_event, _, kind = topic.rpartition(".")
    payload = event if isinstance(event, dict) else {"value": event}
    worker = payload.get("worker") or worker_and_event
    return event_line(str(worker), kind, payload)


# -- list and status ---------------------------------------------------------------------------


def show_components(out: Output, answers: Answers) -> None:
    """``list``: one row per component (or a worker without any), or the JSON answers."""
    if out.as_json:
        out.json([
            {"worker": worker.id, "prefix": worker.prefix,
             **({"components": records} if error is None else
                {"error": describe_error(error)})}
            for worker, records, error in answers
        ])
        return
    rows: list[list[str]] = []
    styles: list[list[str | None]] = []
    for worker, records, error in answers:
        if error is not None:  # already said on stderr
            continue
        if not records:
            rows.append([worker.id, "-", "no components", "-", "-", "-"])
            styles.append([None, None, "dim", None, None, None])
        for record in records:
            row, style = _component_row(worker.id, record)
            rows.append(row)
            styles.append(style)
    if rows:
        out.table(["worker", "id", "state", "uptime", "restarts", "last error"], rows, styles)


def _component_row(
    worker_id: str, record: dict[str, Any]
) -> tuple[list[str], list[str | None]]:
    state = str(record.get("state", "?"))
    uptime = record.get("uptime") if state == "running" else None
    row = [worker_id, str(record.get("id")), _state_text(record), format_duration(uptime),
           str(record.get("restarts", 0)), str(record.get("last_error") or "-")]
    style = [None, "bold", STATE_STYLES.get(state), None, None,
             "red" if record.get("last_error") else None]
    return row, style


def _state_text(record: dict[str, Any]) -> str:
    state = str(record.get("state", "?"))
    if state == "restarting" and record.get("next_restart_in") is not None:
        return f"restarting in {format_duration(record['next_restart_in'])}"
    return state


def show_statuses(out: Output, answers: Answers) -> None:
    """``status``: one row per worker, then what its checkpoint needs said, or the JSON."""
    if out.as_json:
        out.json([
            status if error is None else {"id": worker.id, "prefix": worker.prefix,
                                          "error": describe_error(error)}
            for worker, status, error in answers
        ])
        return
    rows = [_status_row(worker.id, status)
            for worker, status, error in answers if error is None]  # failures: on stderr
    if rows:
        out.table(["worker", "pid", "uptime", "components", "restart", "shutdown"], rows)
    for worker, status, error in answers:
        if error is None:
            for note in checkpoint_notes(status.get("checkpoint")):
                out.line(f"worker {worker.id}: {note}", style="yellow")


def _status_row(worker_id: str, status: dict[str, Any]) -> list[str]:
    policies = status.get("policies") or {}
    components = _counts_text(status.get("components"))
    if status.get("shutting_down"):
        components += " (shutting down)"
    return [worker_id, str(status.get("pid", "-")), format_duration(status.get("uptime")),
            components, str(policies.get("restart", "-")), str(policies.get("shutdown", "-"))]


def _counts_text(counts: Any) -> str:
    if not counts:
        return "none"
    order = {state: index for index, state in enumerate(STATE_ORDER)}
    ranked = sorted(dict(counts).items(), key=lambda item: (order.get(item[0], 99), item[0]))
    return ", ".join(f"{count} {state}" for state, count in ranked)


def checkpoint_notes(checkpoint: Any) -> list[str]:
    """What a person should know about a worker's checkpoint (``get_status``'s
    ``checkpoint``): a failing write, a checkpoint set aside at start."""
    if not isinstance(checkpoint, dict):
        return []
    notes = []
    if checkpoint.get("ok") is False:
        notes.append(f"checkpoint failing: {checkpoint.get('error')}")
    aside = checkpoint.get("set_aside")
    if isinstance(aside, dict):
        where = aside.get("moved_to") or "(could not be moved)"
        notes.append(f"checkpoint {aside.get('path')} {aside.get('problem')}; set aside as "
                     f"{where}")
    return notes

"""``container ctl``: call the management API of running container workers and follow their events.

Two ways to say where the management realm is:

- ``--config CONFIG``: the node running that configuration wrote everything ctl needs
  (address, realm, credentials, its workers) to ``<config dir>/.container-run/<stem>/ctl.json``;
- ``--management URL --realm REALM`` with optional credentials: any management realm; the
  workers are named with ``--worker`` or discovered through the WAMP meta API.

Each command is an ``async`` function taking a joined management client (anything with
``call``, ``worker_call``, ``follow`` and a ``closed`` Deferred) and an :class:`Output`, and
returning the exit code, so it is testable without a reactor of its own. Only :func:`main`
touches the global reactor.

Exit codes: 0 done, 1 the API refused (one ``error: URI: message`` line) or the management
realm could not be reached, 2 usage errors, 128+N interrupted by signal N (``watch`` exits 0).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from autobahn.wamp.exception import ApplicationError, TransportLost
from rich.console import Console
from rich.table import Table
from rich.text import Text
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater

from container.config import schema_problems
from container.deferreds import share
from container.errors import ContainerError, InvalidConfiguration
from container.files import process_exists
from container.management import Credentials, ManagementAddress, parse_management_url
from container.management.client import connect_management
from container.policy import Backoff
from container.validation import SourceMap
from container.validation import format_key_path as format_path

__all__ = [
    "CtlError",
    "Output",
    "Target",
    "WorkerRef",
    "build_parser",
    "ctl_file_path",
    "discover_workers",
    "format_event",
    "list_components",
    "load_component_file",
    "main",
    "read_ctl_file",
    "restart_component",
    "show_status",
    "shutdown_worker",
    "start_component",
    "stop_component",
    "watch",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

DEFAULT_REALM = "crossbar"
DEFAULT_SECRET_ENV = "CONTAINER_MANAGEMENT_SECRET"
DEFAULT_PREFIX_ROOT = "crossbar.worker."
RUN_FOLDER = ".container-run"
CTL_FILE = "ctl.json"

# a worker's management API, found through the meta API by one of its procedures
_WORKER_PROCEDURE = re.compile(r"^crossbar\.worker\.(?P<id>.+)\.get_components$")


# ---------------------------------------------------------------------------------------------
# Errors, targets and workers


class CtlError(Exception):
    """Something ctl itself reports as one ``error: ...`` line, with an exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class WorkerRef:
    """A container worker: its id and the URI prefix of its management API."""

    id: str
    prefix: str

    @classmethod
    def default(cls, worker_id: str) -> WorkerRef:
        return cls(worker_id, f"{DEFAULT_PREFIX_ROOT}{worker_id}")


@dataclass(frozen=True)
class Target:
    """Where the management realm is, how to join it, and which workers to talk to.

    ``workers`` is ``None`` when they are to be discovered through the meta API; ``chosen``
    tells whether the user named them (``--worker``) rather than a ctl file listing them.
    """

    address: ManagementAddress
    realm: str
    credentials: Credentials | None
    workers: tuple[WorkerRef, ...] | None = None
    chosen: bool = False

    def worker(self, worker_id: str) -> WorkerRef:
        """The worker with this id: as listed (custom prefixes included), else the default."""
        for worker in self.workers or ():
            if worker.id == worker_id:
                return worker
        return WorkerRef.default(worker_id)

    def watch_prefixes(self) -> list[str]:
        """Topic prefixes that cover the chosen workers (or every worker, and later ones)."""
        if self.chosen and self.workers:
            prefixes = [f"{worker.prefix}." for worker in self.workers]
        else:
            prefixes = [DEFAULT_PREFIX_ROOT, *(f"{w.prefix}." for w in self.workers or ())]
        unique: list[str] = []
        for prefix in sorted(set(prefixes), key=len):
            if not any(prefix.startswith(shorter) for shorter in unique):
                unique.append(prefix)
        return unique


def ctl_file_path(config: str | os.PathLike[str]) -> Path:
    """``<config dir>/.container-run/<config file stem>/ctl.json``, as the node writes it."""
    path = Path(config).absolute()
    return path.parent / RUN_FOLDER / path.stem / CTL_FILE


def read_ctl_file(config: str | os.PathLike[str], only: Sequence[str] = ()) -> Target:
    """The target described by the ctl file of the node running ``config``.

    ``only`` keeps just these worker ids. Raises :class:`CtlError` when no node runs the
    configuration (no file, or the node process it names is gone) or the file is unusable.
    """
    file = ctl_file_path(config)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CtlError(f"no node is running {config} (no {file})") from None
    except OSError as error:
        raise CtlError(f"cannot read {file}: {error.strerror or error}") from None
    try:
        data = json.loads(text)
    except ValueError as error:
        raise CtlError(f"{file}: not a valid ctl file: {error}") from None
    if not isinstance(data, dict):
        raise CtlError(f"{file}: not a valid ctl file: expected a JSON object")
    pid = data.get("node_pid")
    if isinstance(pid, int) and not process_exists(pid):
        raise CtlError(
            f"no node is running {config} ({file} is stale: node process {pid} is gone)"
        )
    try:
        address = parse_management_url(str(data["management"]))
        credentials = None
        if data.get("authid"):
            credentials = Credentials(
                str(data["authid"]), str(data.get("authmethod", "ticket")), str(data["secret"])
            )
        workers = tuple(
            WorkerRef(str(entry["id"]), str(entry.get("prefix") or f"{DEFAULT_PREFIX_ROOT}"
                                            f"{entry['id']}"))
            for entry in data.get("workers", [])
        )
    except (KeyError, TypeError, InvalidConfiguration) as error:
        detail = f"missing key {error}" if isinstance(error, KeyError) else str(error)
        raise CtlError(f"{file}: not a valid ctl file: {detail}") from None
    if only:
        known = {worker.id: worker for worker in workers}
        workers = tuple(known.get(worker_id) or WorkerRef.default(worker_id)
                        for worker_id in only)
    return Target(address, str(data.get("realm") or DEFAULT_REALM), credentials, workers,
                  chosen=bool(only))


async def discover_workers(client: Any) -> list[WorkerRef]:
    """Every container worker on the realm, by its ``crossbar.worker.ID.get_components``."""
    try:
        listing = await client.call("wamp.registration.list")
    except ApplicationError as error:
        raise CtlError(
            f"cannot discover the workers through the WAMP meta API ({error.error}: "
            f"{_message(error)}); name them with --worker ID"
        ) from None
    ids = list(listing.get("exact", [])) if isinstance(listing, dict) else []
    lookups = [client.call("wamp.registration.get", registration) for registration in ids]
    results = await defer.DeferredList(lookups, consumeErrors=True)
    workers = []
    for ok, info in results:
        # a registration may be gone by the time we ask about it: skip it
        if ok and isinstance(info, dict):
            match = _WORKER_PROCEDURE.match(str(info.get("uri", "")))
            if match:
                workers.append(WorkerRef.default(match["id"]))
    return sorted(set(workers), key=lambda worker: worker.id)


async def call_worker(
    client: Any, worker: WorkerRef, procedure: str, *args: Any, **kwargs: Any
) -> Any:
    """``PREFIX.procedure``; a worker that is not there becomes a :class:`CtlError`."""
    try:
        return await client.worker_call(worker.prefix, procedure, *args, **kwargs)
    except ApplicationError as error:
        if error.error == "wamp.error.no_such_procedure":
            realm = getattr(getattr(client, "config", None), "realm", None) or "?"
            raise CtlError(
                f"wamp.error.no_such_procedure: no worker '{worker.id}' on management realm "
                f"'{realm}' ({worker.prefix}.{procedure} is not registered)"
            ) from None
        raise


# ---------------------------------------------------------------------------------------------
# Output


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _message(error: ApplicationError) -> str:
    return str(error.args[0]) if error.args else ""


def describe_error(error: BaseException) -> str:
    """One line a person can act on (without the ``error:`` prefix)."""
    if isinstance(error, ApplicationError):
        message = _message(error)
        return f"{error.error}: {message}" if message else error.error
    if isinstance(error, CtlError | ContainerError):
        return str(error)
    if isinstance(error, TransportLost):
        return "lost the connection to the management realm"
    if isinstance(error, defer.TimeoutError):
        return "the management realm did not answer in time"
    return f"{type(error).__name__}: {error}"


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    value = max(0.0, float(seconds))
    if value < 60:
        return f"{value:.1f}s"
    minutes, secs = divmod(int(value), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


STATE_STYLES = {
    "running": "green", "starting": "cyan", "stopping": "cyan", "restarting": "yellow",
    "stopped": "dim", "failed": "bold red",
}


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
                table.add_row(*(Text(cell, style=style or "")
                                for cell, style in zip(row, row_styles, strict=True)))
            self.console.print(table)
        else:
            cells = [[h.upper() for h in headers], *[[_one_line(c) for c in r] for r in rows]]
            widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
            for row in cells:
                text = "  ".join(cell.ljust(width) for cell, width in zip(row, widths,
                                                                         strict=True))
                self.stdout.write(text.rstrip() + "\n")
        self.stdout.flush()

    def note(self, text: str) -> None:
        self.stderr.write(text + "\n")
        self.stderr.flush()

    def error(self, text: str) -> None:
        self.note(f"error: {_one_line(text)}")


# ---------------------------------------------------------------------------------------------
# Commands


async def _each_worker(
    client: Any, workers: Sequence[WorkerRef], procedure: str, out: Output, **kwargs: Any
) -> list[tuple[WorkerRef, Any, BaseException | None]]:
    """Call ``procedure`` on every worker at once; one failing worker does not hide the rest.

    Each failure is said on stderr, once, as ``error: worker ID: ...``.
    """
    calls = [Deferred.fromCoroutine(call_worker(client, worker, procedure, **kwargs))
             for worker in workers]
    results = await defer.DeferredList(calls, consumeErrors=True)
    answers: list[tuple[WorkerRef, Any, BaseException | None]] = []
    for worker, (ok, value) in zip(workers, results, strict=True):
        if ok:
            answers.append((worker, value, None))
        else:
            out.error(f"worker {worker.id}: {describe_error(value.value)}")
            answers.append((worker, None, value.value))
    return answers


def _state_text(record: dict[str, Any]) -> str:
    state = str(record.get("state", "?"))
    if state == "restarting" and record.get("next_restart_in") is not None:
        return f"restarting in {format_duration(record['next_restart_in'])}"
    return state


async def list_components(client: Any, workers: Sequence[WorkerRef], out: Output) -> int:
    """``list``: every worker and its components (id, state, uptime, restarts, last error)."""
    answers = await _each_worker(client, workers, "get_components", out, full=True)
    if out.as_json:
        out.json([
            {"worker": worker.id, "prefix": worker.prefix,
             **({"components": records} if error is None else
                {"error": describe_error(error)})}
            for worker, records, error in answers
        ])
    else:
        rows: list[list[str]] = []
        styles: list[list[str | None]] = []
        for worker, records, error in answers:
            if error is not None:  # already said on stderr
                continue
            if not records:
                rows.append([worker.id, "-", "no components", "-", "-", "-"])
                styles.append([None, None, "dim", None, None, None])
            for record in records:
                state = str(record.get("state", "?"))
                uptime = record.get("uptime") if state == "running" else None
                rows.append([
                    worker.id, str(record.get("id")), _state_text(record),
                    format_duration(uptime), str(record.get("restarts", 0)),
                    str(record.get("last_error") or "-"),
                ])
                styles.append([None, "bold", STATE_STYLES.get(state), None, None,
                               "red" if record.get("last_error") else None])
        if rows:
            out.table(["worker", "id", "state", "uptime", "restarts", "last error"], rows,
                      styles)
    return EXIT_OK if all(error is None for _, _, error in answers) else EXIT_FAILED


STATE_ORDER = ("running", "starting", "restarting", "stopping", "stopped", "failed")


def _counts_text(counts: Any) -> str:
    if not counts:
        return "none"
    order = {state: index for index, state in enumerate(STATE_ORDER)}
    ranked = sorted(dict(counts).items(), key=lambda item: (order.get(item[0], 99), item[0]))
    return ", ".join(f"{count} {state}" for state, count in ranked)


async def show_status(client: Any, workers: Sequence[WorkerRef], out: Output) -> int:
    """``status``: each worker's ``get_status``."""
    answers = await _each_worker(client, workers, "get_status", out)
    if out.as_json:
        out.json([
            status if error is None else {"id": worker.id, "prefix": worker.prefix,
                                          "error": describe_error(error)}
            for worker, status, error in answers
        ])
    else:
        rows = []
        for worker, status, error in answers:
            if error is not None:  # already said on stderr
                continue
            policies = status.get("policies") or {}
            components = _counts_text(status.get("components"))
            if status.get("shutting_down"):
                components += " (shutting down)"
            rows.append([
                worker.id, str(status.get("pid", "-")), format_duration(status.get("uptime")),
                components, str(policies.get("restart", "-")),
                str(policies.get("shutdown", "-")),
            ])
        if rows:
            out.table(["worker", "pid", "uptime", "components", "restart", "shutdown"], rows)
        for worker, status, error in answers:
            if error is None:
                for note in checkpoint_notes(status.get("checkpoint")):
                    out.line(f"worker {worker.id}: {note}", style="yellow")
    return EXIT_OK if all(error is None for _, _, error in answers) else EXIT_FAILED


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


def load_component_file(file: str) -> dict[str, Any]:
    """One component configuration from a JSON file, checked against the component schema.

    Problems read ``FILE:LINE:COLUMN: key.path: what is wrong``; relative file paths in its
    transport (unix socket, TLS files) are made absolute against the file's folder, as in a
    node configuration, since the worker does not share ctl's working directory.
    """
    try:
        with open(file, encoding="utf-8-sig") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise CtlError(f"{file}: cannot read: {reason}") from None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise CtlError(f"{file}:{error.lineno}:{error.colno}: invalid JSON: {error.msg}") from None
    if not isinstance(config, dict):
        raise CtlError(f"{file}:1:1: a component configuration must be a JSON object, "
                       f"not {type(config).__name__}")
    problems = schema_problems(config, "component")
    if problems:
        source = SourceMap.of(text)
        first = problems[0]
        line, column = source.position(first.path, at_key=True)
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise CtlError(f"{file}:{line}:{column}: {format_path(first.path)}: "
                       f"{first.message}{more}")
    _absolute_paths(config.get("transport", {}), Path(file).absolute().parent)
    return config


def _absolute_paths(transport: dict[str, Any], base: Path) -> None:
    endpoint = transport.get("endpoint") or {}
    if endpoint.get("type") == "unix":
        endpoint["path"] = os.path.normpath(base / endpoint["path"])
    tls = endpoint.get("tls") or {}
    for key in ("certificate", "key"):
        if key in tls:
            tls[key] = os.path.normpath(base / tls[key])
    if "ca_certificates" in tls:
        tls["ca_certificates"] = [os.path.normpath(base / entry)
                                  for entry in tls["ca_certificates"]]


def _reloaded_text(result: dict[str, Any]) -> str:
    reloaded = result.get("reloaded") or []
    return f"; reloaded {', '.join(reloaded)}" if reloaded else ""


async def start_component(
    client: Any, worker: WorkerRef, component_id: str, config: dict[str, Any], out: Output,
    reload_modules: bool = False,
) -> int:
    """``start WORKER ID FILE``: returns once the component has joined and ``onJoin`` finished."""
    started = await call_worker(client, worker, "start_component", component_id, config,
                                reload_modules=reload_modules)
    if out.as_json:
        out.json(started)
    else:
        out.line(f"started {component_id} on worker {worker.id} (realm {started.get('realm')}, "
                 f"session {started.get('session')}){_reloaded_text(started)}", "green")
    return EXIT_OK


async def stop_component(client: Any, worker: WorkerRef, component_id: str, out: Output) -> int:
    """``stop WORKER ID``: returns once the component has left."""
    stopped = await call_worker(client, worker, "stop_component", component_id)
    if out.as_json:
        out.json(stopped)
    else:
        out.line(f"stopped {component_id} on worker {worker.id} "
                 f"(ran {format_duration(stopped.get('uptime'))})")
    return EXIT_OK


async def restart_component(
    client: Any, worker: WorkerRef, component_id: str, out: Output, reload_modules: bool = False
) -> int:
    """``restart WORKER ID [--reload]``: stop, then start again with the same configuration."""
    result = await call_worker(client, worker, "restart_component", component_id,
                               reload_modules=reload_modules)
    if out.as_json:
        out.json(result)
    else:
        started = result.get("started") or {}
        out.line(f"restarted {component_id} on worker {worker.id} (session "
                 f"{started.get('session')}){_reloaded_text(started)}", "green")
    return EXIT_OK


async def shutdown_worker(client: Any, worker: WorkerRef, out: Output) -> int:
    """``shutdown WORKER``: every component leaves, then the worker process exits."""
    stopped = await call_worker(client, worker, "shutdown")
    if out.as_json:
        out.json({"worker": worker.id, "stopped": stopped})
    else:
        names = f": {', '.join(stopped)}" if stopped else ""
        out.line(f"worker {worker.id} shut down; stopped {_plural(len(stopped), 'component')}"
                 f"{names}")
    return EXIT_OK


def _plural(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


# --- watch -----------------------------------------------------------------------------------


def _stop_text(name: str, event: dict[str, Any]) -> tuple[str, str | None]:
    reason = event.get("reason")
    message = event.get("message")
    if reason == "requested":
        text, style = f"{name} stopped (requested)", None
    elif reason == "left":
        text, style = f"{name} stopped (left by itself)", None
    elif reason == "lost":
        text, style = f"{name} lost its connection", "yellow"
    else:
        text, style = f"{name} failed", "red"
    if message and reason != "requested":
        text += f": {_one_line(message)}"
    if event.get("will_restart"):
        text += (f"; restarting in {format_duration(event.get('restart_in'))} "
                 f"(attempt {event.get('attempt')})")
    elif event.get("gave_up"):
        text, style = text + "; gave up restarting it", "bold red"
    return text, style


def format_event(topic: str, event: Any) -> tuple[str, str | None]:
    """One human-readable line (and a style) for a lifecycle event."""
    kind = topic.rsplit(".", 1)[-1]
    payload = event if isinstance(event, dict) else {"value": event}
    worker = payload.get("worker") or topic.rsplit(".", 1)[0]
    name = f"{worker}/{payload.get('id')}"
    if kind == "on_worker_ready":
        again = ", reconnected" if payload.get("reconnected") else ""
        count = len(payload.get("components") or [])
        return (f"worker {worker} ready (pid {payload.get('pid')}, "
                f"{_plural(count, 'component')}{again})", "cyan")
    if kind == "on_component_start":
        restarts = payload.get("restarts") or 0
        again = f", restart #{restarts}" if restarts else ""
        return (f"{name} started (realm {payload.get('realm')}, session "
                f"{payload.get('session')}{again})", "green")
    if kind == "on_component_stop":
        return _stop_text(name, payload)
    if kind == "on_component_restart":
        cause = payload.get("cause")
        if cause == "requested":
            return f"{name} restarting (requested)", "yellow"
        return (f"{name} restarting after it {'was lost' if cause == 'lost' else cause} "
                f"(attempt {payload.get('attempt')}, in "
                f"{format_duration(payload.get('delay'))})", "yellow")
    if kind == "on_shutdown":
        why = f": {payload['why']}" if payload.get("why") else ""
        stopped = len(payload.get("stopped") or [])
        return (f"worker {worker} shut down ({payload.get('reason')}{why}; exit code "
                f"{payload.get('exit_code')}, stopped {_plural(stopped, 'component')})",
                "bold" if payload.get("exit_code") == 0 else "bold red")
    details = json.dumps(payload, default=str, sort_keys=True)
    return f"worker {worker} {kind} {details}", None


# the worker's own backoff shape: 0.5 s, 1 s, 2 s, then every 4 s until the deadline
RECONNECT_BACKOFF = Backoff(first=0.5, initial=1.0, max=4.0, jitter=0.0)


async def watch(
    client: Any, prefixes: Sequence[str], out: Output, until: Deferred[Any],
    now: Callable[[], datetime] = datetime.now,
    reconnect: Callable[[], Awaitable[Any]] | None = None,
    reconnect_for: float = 0.0,
    reactor: Any = None,
) -> int:
    """``watch``: one line per lifecycle event under ``prefixes`` until ``until`` fires.

    When the management connection is lost (the router restarted, say) and ``reconnect``
    is given, it joins again (backing off, for at most ``reconnect_for`` seconds) and goes
    on watching; events published while it was away are not shown. Returns 0 when ``until``
    fires (Ctrl-C / SIGTERM), 1 when the connection is lost for good.
    """

    def on_event(topic: str, payload: Any) -> None:
        moment = now().astimezone()
        if out.as_json:
            out.json({"time": moment.isoformat(timespec="milliseconds"), "topic": topic,
                      "event": topic.rsplit(".", 1)[-1], "payload": payload})
        else:
            text, style = format_event(topic, payload)
            out.line(f"{moment:%H:%M:%S} {text}", style)

    where = ", ".join(f"{prefix}*" for prefix in prefixes)
    interrupted = share(until)
    first = client
    try:
        while True:
            for prefix in prefixes:
                await client.follow(prefix, on_event)
            out.note(f"watching {where} (Ctrl-C to stop)" if client is first else
                     f"reconnected: watching {where} again (events while away were missed)")
            which, _ = await defer.race([share(interrupted), share(client.closed)])
            if which == 0:
                return EXIT_OK
            if reconnect is None or reconnect_for <= 0:
                out.error("lost the connection to the management realm")
                return EXIT_FAILED
            out.note(f"lost the connection to the management realm; reconnecting for up to "
                     f"{reconnect_for:g} s")
            client = await _rejoin(reconnect, reconnect_for, interrupted, reactor)
            if client is None:
                if interrupted.called:
                    return EXIT_OK
                out.error(f"lost the connection to the management realm and could not join "
                          f"it again within {reconnect_for:g} s")
                return EXIT_FAILED
    finally:
        if client is not None and client is not first:
            await client.close()  # the first is the caller's to close


async def _rejoin(
    reconnect: Callable[[], Awaitable[Any]], within: float, interrupted: Deferred[Any],
    reactor: Any,
) -> Any:
    """A new management client, or None when ``within`` seconds pass or we are interrupted."""
    deadline = reactor.seconds() + within
    attempt = 0
    while True:
        attempt += 1
        delay = RECONNECT_BACKOFF.delay(attempt)
        if reactor.seconds() + delay > deadline:
            return None
        which, _ = await defer.race([share(interrupted),
                                     deferLater(reactor, delay, lambda: None)])
        if which == 0:
            return None
        try:
            return await reconnect()
        except (ContainerError, defer.TimeoutError):
            continue


# ---------------------------------------------------------------------------------------------
# Command line


def _add_connection_options(parser: argparse.ArgumentParser, after_command: bool) -> None:
    """The options saying where and to whom to talk.

    They are accepted after the command too (``container ctl list --config node.json``);
    there they default to "not given", so they never overwrite the ones before the command.
    """

    def add(*names: str, help: str, **kwargs: Any) -> None:
        if after_command:
            kwargs["default"] = argparse.SUPPRESS
        parser.add_argument(*names, help=help, **kwargs)

    add("--config", metavar="CONFIG", help="talk to the node running this node configuration")
    add("--management", metavar="URL", help="or to this management router: ws://HOST:PORT/PATH, "
        "wss://..., rs://HOST:PORT (RawSocket over TCP) or unix:/PATH (RawSocket)")
    add("--realm", help=f"management realm (with --management; default {DEFAULT_REALM})")
    add("--authid", help="authenticate as (with --management; default anonymous)")
    add("--authmethod", choices=("ticket", "wampcra"), help="with --authid (default ticket)")
    add("--secret-env", metavar="VAR",
        help=f"environment variable holding the secret (default {DEFAULT_SECRET_ENV})")
    add("--secret-file", metavar="FILE", help="file holding the secret (first line)")
    add("--worker", action="append", metavar="ID",
        dest="workers_after" if after_command else "workers",
        help="only this worker (repeatable; default: every worker, found through the WAMP "
             "meta API or listed by the node)")
    add("--prefix", help="URI prefix of the one --worker's API (default crossbar.worker.ID)")
    add("--json", action="store_true", help="print JSON for machines (lines for watch)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="container ctl",
        description="Call the management API of container workers and follow their events. "
                    "Give --config CONFIG (a node started with `container run CONFIG`) or "
                    "--management URL; the options may also follow the command.",
        epilog="Exit codes: 0 done, 1 the API refused or the management realm is unreachable, "
               "2 usage.",
    )
    _add_connection_options(parser, after_command=False)
    common = argparse.ArgumentParser(add_help=False)
    _add_connection_options(common, after_command=True)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("list", parents=[common],
                        help="every worker and component: state, uptime, restarts, last error")
    commands.add_parser("status", parents=[common], help="each worker's status and policies")
    start = commands.add_parser("start", parents=[common],
                                help="start a component from a JSON file holding its config")
    start.add_argument("worker", metavar="WORKER")
    start.add_argument("component_id", metavar="ID")
    start.add_argument("file", metavar="COMPONENT_CONFIG_FILE")
    start.add_argument("--reload", action="store_true",
                       help="reload changed user modules before starting")
    stop = commands.add_parser("stop", parents=[common], help="stop a component")
    stop.add_argument("worker", metavar="WORKER")
    stop.add_argument("component_id", metavar="ID")
    restart = commands.add_parser("restart", parents=[common],
                                  help="restart a component with the same configuration")
    restart.add_argument("worker", metavar="WORKER")
    restart.add_argument("component_id", metavar="ID")
    restart.add_argument("--reload", action="store_true",
                         help="reload changed user modules before starting again")
    shutdown = commands.add_parser("shutdown", parents=[common],
                                   help="stop every component of a worker; the worker exits")
    shutdown.add_argument("worker", metavar="WORKER")
    watch_parser = commands.add_parser(
        "watch", parents=[common],
        help="print lifecycle events as they happen, until Ctrl-C or SIGTERM")
    watch_parser.add_argument(
        "--reconnect-for", type=float, default=60.0, metavar="SECONDS",
        help="when the management connection is lost, try to join again for this long "
             "(default 60; 0 exits at once)")
    return parser


def resolve_target(parser: argparse.ArgumentParser, arguments: argparse.Namespace) -> Target:
    """The target from the arguments: usage errors exit 2, a missing node is a CtlError."""
    workers = [*(arguments.workers or []), *getattr(arguments, "workers_after", [])]
    if (arguments.config is None) == (arguments.management is None):
        parser.error("give one of --config CONFIG or --management URL")
    if arguments.prefix is not None and len(workers) != 1:
        parser.error("--prefix needs exactly one --worker ID")
    if arguments.secret_env is not None and arguments.secret_file is not None:
        parser.error("--secret-env and --secret-file: give one of them")
    if arguments.config is not None:
        given = [name for name, value in (
            ("--realm", arguments.realm), ("--authid", arguments.authid),
            ("--authmethod", arguments.authmethod), ("--secret-env", arguments.secret_env),
            ("--secret-file", arguments.secret_file)) if value is not None]
        if given:
            parser.error(f"{', '.join(given)}: not with --config (the node's ctl file says "
                         "how to connect); use --management for that")
        target = read_ctl_file(arguments.config, workers)
    else:
        try:
            address = parse_management_url(arguments.management)
        except InvalidConfiguration as error:
            parser.error(str(error))
        chosen = tuple(WorkerRef.default(worker_id) for worker_id in workers)
        target = Target(address, arguments.realm or DEFAULT_REALM,
                        _credentials(parser, arguments), chosen or None, chosen=bool(chosen))
    if arguments.prefix is not None:
        worker = WorkerRef(workers[0], arguments.prefix)
        target = Target(target.address, target.realm, target.credentials, (worker,), True)
    return target


def _credentials(parser: argparse.ArgumentParser,
                 arguments: argparse.Namespace) -> Credentials | None:
    if arguments.authid is None:
        if arguments.authmethod or arguments.secret_file or arguments.secret_env:
            parser.error("--authmethod, --secret-env and --secret-file need --authid")
        return None
    if arguments.secret_file is not None:
        try:
            with open(arguments.secret_file, encoding="utf-8") as handle:
                secret: str | None = handle.readline().rstrip("\r\n")
        except OSError as error:
            parser.error(f"--secret-file {arguments.secret_file}: {error.strerror or error}")
    else:
        variable = arguments.secret_env or DEFAULT_SECRET_ENV
        secret = os.environ.get(variable)
        if secret is None:
            parser.error(f"--authid {arguments.authid}: no secret in ${variable} "
                         "(set it, or use --secret-env VAR or --secret-file FILE)")
    return Credentials(arguments.authid, arguments.authmethod or "ticket", secret or "")


# (client, target, out, until, reactor) -> exit code
Command = Callable[[Any, Target, Output, Deferred[Any], Any], Awaitable[int]]


def prepare_command(arguments: argparse.Namespace) -> Command:
    """What to run once joined; reads local files first so their errors need no connection."""
    name = arguments.command
    if name == "list":
        return lambda client, target, out, until, reactor: _with_workers(
            client, target, out, list_components)
    if name == "status":
        return lambda client, target, out, until, reactor: _with_workers(
            client, target, out, show_status)
    if name == "watch":
        return lambda client, target, out, until, reactor: watch(
            client, target.watch_prefixes(), out, until,
            reconnect=lambda: _join(reactor, target), reconnect_for=arguments.reconnect_for,
            reactor=reactor)
    worker_id = arguments.worker
    if name == "start":
        config = load_component_file(arguments.file)
        if config.get("id") not in (None, arguments.component_id):
            raise CtlError(f"{arguments.file}: its \"id\" is '{config['id']}' but the command "
                           f"says '{arguments.component_id}'")
        return lambda client, target, out, until, reactor: start_component(
            client, target.worker(worker_id), arguments.component_id, config, out,
            arguments.reload)
    if name == "stop":
        return lambda client, target, out, until, reactor: stop_component(
            client, target.worker(worker_id), arguments.component_id, out)
    if name == "restart":
        return lambda client, target, out, until, reactor: restart_component(
            client, target.worker(worker_id), arguments.component_id, out, arguments.reload)
    return lambda client, target, out, until, reactor: shutdown_worker(
        client, target.worker(worker_id), out)


async def _with_workers(
    client: Any, target: Target, out: Output,
    command: Callable[[Any, Sequence[WorkerRef], Output], Awaitable[int]],
) -> int:
    if target.workers is not None:
        return await command(client, target.workers, out)
    workers = await discover_workers(client)
    if not workers:
        # Crossbar.io's meta API hides crossbar.* URIs from every authrole but "trusted"
        out.note(f"no container workers found on management realm '{target.realm}': none is "
                 "there, or this authid's role may not see them (Crossbar.io's meta API shows "
                 "crossbar.* procedures to authrole 'trusted' only); name them with --worker ID")
    return await command(client, workers, out)


async def run(
    reactor: Any, target: Target, command: Command, out: Output, until: Deferred[Any]
) -> int:
    """Join the management realm, run the command, leave; every error is one line."""
    try:
        client = await _join(reactor, target)
    except (ContainerError, defer.TimeoutError) as error:
        if isinstance(error, defer.TimeoutError):
            error = CtlError(f"cannot join the management realm '{target.realm}' at "
                             f"{target.address.describe()}: no answer in time")
        out.error(describe_error(error))
        return EXIT_FAILED
    try:
        return await command(client, target, out, until, reactor)
    except (ApplicationError, CtlError, ContainerError, TransportLost,
            defer.TimeoutError) as error:
        out.error(describe_error(error))
        return EXIT_FAILED
    finally:
        await client.close()


async def _join(reactor: Any, target: Target) -> Any:
    return await connect_management(reactor, target.address, target.realm, target.credentials)


def _interruptible(work: Deferred[int], until: Deferred[Any], out: Output) -> Deferred[int]:
    """``work``'s exit code, or 128+signal if ``until`` fires first (cancelling ``work``)."""

    def crashed(failure: Any) -> int:
        if not failure.check(defer.CancelledError):  # cancelled: we were interrupted
            out.error(describe_error(failure.value))
        return EXIT_FAILED

    async def race() -> int:
        which, value = await defer.race([work.addErrback(crashed), share(until)])
        if which == 1:
            out.note("interrupted")
            return 128 + int(value)
        return int(value)

    return Deferred.fromCoroutine(race())


def main(rest: list[str]) -> int:
    """``container ctl ARGS...``; returns the exit code."""
    parser = build_parser()
    try:
        arguments = parser.parse_args(rest)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    out = Output(as_json=arguments.json)
    try:
        target = resolve_target(parser, arguments)
        command = prepare_command(arguments)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    except CtlError as error:
        out.error(str(error))
        return error.exit_code
    return _run_reactor(target, command, out, watching=arguments.command == "watch")


def _run_reactor(target: Target, command: Command, out: Output, watching: bool) -> int:
    import txaio
    from twisted.internet import reactor

    txaio.use_twisted()
    result = {"code": EXIT_FAILED}
    interrupted: Deferred[int] = Deferred()

    def interrupt(signum: int) -> None:
        if not interrupted.called:
            interrupted.callback(signum)

    def on_signal(signum: int, frame: Any) -> None:
        reactor.callFromThread(interrupt, signum)

    def finished(code: int) -> None:
        result["code"] = code

    def crashed(failure: Any) -> None:
        out.error(describe_error(failure.value))

    def begin() -> None:
        work = Deferred.fromCoroutine(run(reactor, target, command, out, interrupted))
        if not watching:
            work = _interruptible(work, interrupted, out)
        work.addCallbacks(finished, crashed)
        work.addBoth(lambda _: reactor.callLater(0, reactor.stop))

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    reactor.callWhenRunning(begin)
    reactor.run(installSignalHandlers=False)
    return result["code"]

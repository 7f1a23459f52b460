"""The commands that call a worker's API once: list, status, start, stop, restart, shutdown.

Each is an ``async`` function taking a joined management client (anything with ``call``
and ``worker_call``) and an :class:`~container.ctl.output.Output`, and returning the exit
code, so it is testable without a reactor of its own. :func:`run` joins the realm for one
of them and turns every failure into one ``error: ...`` line.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from autobahn.wamp.exception import ApplicationError, TransportLost
from twisted.internet import defer
from twisted.internet.defer import Deferred

from container.ctl.output import (
    Output,
    describe_error,
    format_duration,
    show_components,
    show_statuses,
)
from container.ctl.target import Target, WorkerRef, call_worker, discover_workers, join_realm
from container.errors import ContainerError, CtlError, ExitCode
from container.positions import SourceMap
from container.validation import format_key_path, schema_problems

# (client, target, out) -> exit code
Command = Callable[[Any, Target, Output], Awaitable[int]]


async def run(reactor: Any, target: Target, command: Command, out: Output) -> int:
    """Join the management realm, run the command, leave; every error is one line."""
    try:
        client = await join_realm(reactor, target)
    except (ContainerError, CtlError) as error:
        out.error(describe_error(error))
        return ExitCode.FAILED
    try:
        return await command(client, target, out)
    except (ApplicationError, CtlError, ContainerError, TransportLost,
            defer.TimeoutError) as error:
        out.error(describe_error(error))
        return ExitCode.FAILED
    finally:
        await client.close()


def prepare_command(arguments: argparse.Namespace) -> Command:
    """What to run once joined; reads local files first so their errors need no connection."""
    name = arguments.command
    if name == "list":
        return lambda client, target, out: _with_workers(client, target, out, list_components)
    if name == "status":
        return lambda client, target, out: _with_workers(client, target, out, show_status)
    worker_id = arguments.worker
    if name == "start":
        config = load_component_file(arguments.file)
        if config.get("id") not in (None, arguments.component_id):
            raise CtlError(f"{arguments.file}: its \"id\" is '{config['id']}' but the command "
                           f"says '{arguments.component_id}'")
        return lambda client, target, out: start_component(
            client, target.worker(worker_id), arguments.component_id, config, out,
            arguments.reload)
    if name == "stop":
        return lambda client, target, out: stop_component(
            client, target.worker(worker_id), arguments.component_id, out)
    if name == "restart":
        return lambda client, target, out: restart_component(
            client, target.worker(worker_id), arguments.component_id, out, arguments.reload)
    return lambda client, target, out: shutdown_worker(client, target.worker(worker_id), out)


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


async def _each_worker(
    client: Any, workers: Sequence[WorkerRef], procedure: str, out: Output, **kwargs: Any
) -> list[tuple[WorkerRef, Any, BaseException | None]]:
    """Call ``procedure`` on every worker at once; one failing worker does not hide the rest.

    Each failure is said on stderr, once, as ``error: worker ID: ...``.
    """
    calls = [Deferred.fromCoroutine(call_worker(client, worker, procedure, **kwargs))
             for worker in workers]
    results = await defer.DeferredList(calls, consumeErrors=True)  # every failure kept below
    answers: list[tuple[WorkerRef, Any, BaseException | None]] = []
    for worker, (ok, value) in zip(workers, results, strict=True):
        if ok:
            answers.append((worker, value, None))
        else:
            out.error(f"worker {worker.id}: {describe_error(value.value)}")
            answers.append((worker, None, value.value))
    return answers


def _exit_code(answers: Sequence[tuple[Any, Any, BaseException | None]]) -> int:
    return ExitCode.OK if all(error is None for _, _, error in answers) else ExitCode.FAILED


async def list_components(client: Any, workers: Sequence[WorkerRef], out: Output) -> int:
    """``list``: every worker and its components (id, state, uptime, restarts, last error)."""
    answers = await _each_worker(client, workers, "get_components", out, full=True)
    show_components(out, answers)
    return _exit_code(answers)


async def show_status(client: Any, workers: Sequence[WorkerRef], out: Output) -> int:
    """``status``: each worker's ``get_status``."""
    answers = await _each_worker(client, workers, "get_status", out)
    show_statuses(out, answers)
    return _exit_code(answers)


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
        first = problems[0]
        line, column = SourceMap.of(text).position(first.path, at_key=True)
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise CtlError(f"{file}:{line}:{column}: {format_key_path(first.path)}: "
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
    return ExitCode.OK


async def stop_component(client: Any, worker: WorkerRef, component_id: str, out: Output) -> int:
    """``stop WORKER ID``: returns once the component has left."""
    stopped = await call_worker(client, worker, "stop_component", component_id)
    if out.as_json:
        out.json(stopped)
    else:
        out.line(f"stopped {component_id} on worker {worker.id} "
                 f"(ran {format_duration(stopped.get('uptime'))})")
    return ExitCode.OK


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
    return ExitCode.OK


async def shutdown_worker(client: Any, worker: WorkerRef, out: Output) -> int:
    """``shutdown WORKER``: every component leaves, then the worker process exits."""
    stopped = await call_worker(client, worker, "shutdown")
    if out.as_json:
        out.json({"worker": worker.id, "stopped": stopped})
    else:
        count = f"{len(stopped)} component{'' if len(stopped) == 1 else 's'}"
        names = f": {', '.join(stopped)}" if stopped else ""
        out.line(f"worker {worker.id} shut down; stopped {count}{names}")
    return ExitCode.OK

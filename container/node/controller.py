"""The node controller, ``container run CONFIG``: one command brings up a whole node.

It validates the configuration (nothing starts if it is invalid), creates a private run
directory, and starts everything at once: the router workers (Crossbar.io's router, one
``python -m container.router`` child each, the first one also carrying the management
realm on a private unix socket) and one ``container worker`` process per container worker.
The workers retry their management connection until the router listens, so nobody waits
for anybody's imports. The node joins the management realm itself as soon as the first
router says it listens, waits for each worker's ``on_worker_ready``, starts that worker's
configured components through the management API (all concurrently), then prints the
lifecycle events of every component as they happen.

Supervision: a worker process that dies without being asked is spawned again with backoff
and resumes its whole component set from its checkpoint file (components started later
through the API included), so the node does not start its configured components again. A
worker that exits by itself with 0 or 1 (its shutdown policy fired) stays down; when no
worker is left, the node exits too. A router that dies is restarted on the same ports.

SIGTERM, SIGINT or SIGHUP stop the node in order: workers first (their components leave
cleanly while the router still runs), then the routers; a second signal kills what is left.
What ``container ctl --config CONFIG`` needs (credentials included) is in ``ctl.json`` in
the run directory, readable only by this user, and is removed on exit.

Only :func:`main` touches the global reactor; :class:`Node` gets it injected.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, DeferredList

from container.errors import InvalidConfiguration
from container.events import split_topic
from container.files import write_private_json
from container.node.config import (
    ConfigFileUnreadable,
    NodeConfigError,
    config_warnings,
    load_node_config,
)
from container.node.guest import GuestLaunch, GuestOutput, guest_launches, restart_on_change
from container.node.output import NodeOutput
from container.node.plan import (
    NodePlan,
    NodePlanError,
    RouterPlan,
    WorkerPlan,
    build_plan,
    lock_node,
    prepare_run_dir,
    prepare_socket_dir,
    remove_run_dir,
    run_dir_for,
    with_listening_sockets,
)
from container.node.procs import ExitStatus, RestartRules, Supervised

EXIT_OK = 0
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
EXIT_FAILED = 1
#: Worker exit codes that a restart cannot fix: bad arguments or options (2), refused by the
#: management realm (3). A clean or policy shutdown is final only when the worker announced
#: it (its ``on_shutdown`` event) and then exited with the code it announced; any other exit,
#: 0 and 1 included, is a crash and the worker is started again.
WORKER_CANNOT_START_CODES = frozenset({2, 3})
ROUTER_STOP_TIMEOUT = 10.0
START_RETRY_DELAY = 0.5
WORKER_STOP_MARGIN = 5.0
GUEST_STOP_TIMEOUT = 10.0
LINK_CLOSE_TIMEOUT = 3.0
#: Beyond the sum of the stop timeouts, before the node kills what is left and exits.
STOP_SLACK = 5.0


@dataclass(frozen=True)
class NodeSettings:
    start_timeout: float = 60.0
    launched: float = field(default_factory=time.monotonic)


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


@dataclass
class GuestHandle:
    """A guest worker: any program of the configuration, kept running with backoff."""

    launch: GuestLaunch
    child: Supervised
    watcher: Any = None


@dataclass
class RouterHandle:
    plan: RouterPlan
    child: Supervised
    transports: list[dict[str, Any]] = field(default_factory=list)
    ready_once: bool = False
    last_error: str = ""


class _Listener:
    """Adapts two functions to :class:`container.nodeprocs.SupervisionListener`."""

    def __init__(self, spawned: Any, exited: Any) -> None:
        self.spawned = spawned
        self.exited = exited


class Node:
    """The process context of the node controller."""

    def __init__(
        self,
        reactor: Any,
        plan: NodePlan,
        output: NodeOutput,
        settings: NodeSettings,
        sockets: dict[str, dict[str, socket.socket]],
        guests: list[GuestLaunch] | None = None,
    ) -> None:
        self.reactor = reactor
        self.plan = plan
        self.sockets = sockets
        self.output = output
        self.settings = settings
        self.link: Any = None
        self.done: Deferred[int] = Deferred()
        self.exit_code: int | None = None
        self.stopping = False
        self.up = False
        self._first_signal: float | None = None
        self._deadline: Any = None
        self._first_joined: float | None = None
        self.routers = {r.id: self._router_handle(r) for r in plan.routers}
        self.workers = {w.id: self._worker_handle(w) for w in plan.workers}
        self.guests = {g.id: self._guest_handle(g) for g in guests or []}
        self._checked = False
        self._ctl_failed = False
        self._overdue: Any = None

    def _router_handle(self, router: RouterPlan) -> RouterHandle:
        handle: RouterHandle
        fds = {tid: sock.fileno() for tid, sock in self.sockets.get(router.id, {}).items()}

        def restartable(status: ExitStatus) -> bool:
            return handle.ready_once

        child = Supervised(
            self.reactor, router.id, lambda: with_listening_sockets(router.launch, fds),
            RestartRules(restartable), _Listener(self._router_spawned, self._router_exited),
            lambda stream, line: self._router_line(handle, stream, line),
        )
        handle = RouterHandle(router, child)
        return handle

    def _worker_handle(self, worker: WorkerPlan) -> WorkerHandle:
        handle: WorkerHandle

        def restartable(status: ExitStatus) -> bool:
            if status.signal is not None:
                return True
            if status.code in WORKER_CANNOT_START_CODES:
                return False
            return status.code != handle.announced_exit

        child = Supervised(
            self.reactor, worker.id, lambda: worker.launch, RestartRules(restartable),
            _Listener(self._worker_spawned, self._worker_exited),
            lambda stream, line: self.output.child_line(worker.id, line),
        )
        pending = {component["id"]: component for component in worker.components}
        handle = WorkerHandle(worker, child, pending)
        return handle

    def _guest_handle(self, guest: GuestLaunch) -> GuestHandle:
        child = Supervised(
            self.reactor, guest.id, lambda: guest.launch, RestartRules(lambda status: True),
            _Listener(self._guest_spawned, self._guest_exited),
            GuestOutput(guest, lambda stream, line: self.output.child_line(guest.id, line)),
            guest.stdio,
        )
        handle = GuestHandle(guest, child)
        handle.watcher = restart_on_change(
            self.reactor, guest, child, GUEST_STOP_TIMEOUT,
            lambda path, restarting: self._guest_source_changed(guest.id, path, restarting),
        )
        return handle

    # -- start ----------------------------------------------------------------------------------

    def start(self) -> None:
        """Spawn every child at once and join the management realm (the listeners are bound
        already, so the workers' and our connections wait in the accept queue until the
        router serves them)."""
        if self.stopping:  # a signal came first
            return
        try:
            self._start()
        except Exception as error:
            self.finish(EXIT_FAILED, f"cannot start the node: {error}")

    def _start(self) -> None:
        from container.router.listeners import pin_ports

        for router in self.routers.values():
            sockets = self.sockets.get(router.plan.id, {})
            write_private_json(router.plan.config_path, pin_ports(router.plan.config, sockets))
            if router.plan.management_path is not None:
                write_private_json(router.plan.management_path, router.plan.management_config)
        for worker in self.workers.values():
            if worker.plan.options_file is not None:
                write_private_json(worker.plan.options_file, worker.plan.options)
        for router in self.routers.values():
            router.child.start()
        for worker in self.workers.values():
            worker.child.start()
        self._deadline = self.reactor.callLater(self.settings.start_timeout, self._timed_out)
        total = sum(len(worker.pending) for worker in self.workers.values())
        self.output.progress_start(total, len(self.workers))
        self._open_link()
        if not self.routers:  # Crossbar.io's checker ran in this process already
            self._configuration_checked()

    def _open_link(self) -> None:
        from container.node.link import ManagementLink  # autobahn: after the children started

        management = self.plan.management
        self.link = ManagementLink(
            self.reactor, management.url, management.realm, management.node,
            self._on_event, self._on_joined, self._on_refused,
            join_timeout=30.0 if self.plan.embedded else 10.0,
        )
        self.link.start()

    # -- routers --------------------------------------------------------------------------------

    def _router_line(self, router: RouterHandle, stream: str, line: str) -> None:
        if stream == "stdout" and line.startswith("{"):
            with contextlib.suppress(ValueError):
                message = json.loads(line)
                if message.get("event") == "ready":
                    self._router_ready(router, message)
                    return
                if message.get("event") == "invalid":
                    self._refused_by_crossbar(message.get("problems", []))
                    return
        if "error" in line.lower():
            router.last_error = line
        self.output.child_line(router.plan.id, line)

    def _router_ready(self, router: RouterHandle, message: dict[str, Any]) -> None:
        self._configuration_checked()  # a router child serves only what Crossbar.io accepted
        router.transports = message.get("transports", [])
        first = not router.ready_once
        router.ready_once = True
        where = ", ".join(_describe_endpoint(t.get("endpoint", {})) for t in router.transports)
        self.output.node_event("router ready" if first else "router restarted",
                               f"listening on {where}", router=router.plan.id,
                               pid=message.get("pid"), transports=router.transports)
        self._write_ctl()
        self._check_up()
        if self.link is not None and self.plan.embedded:
            self.link.kick()

    def _refused_by_crossbar(self, problems: list[dict[str, Any]]) -> None:
        """Crossbar.io's checker refused the configuration: say where, and stop."""
        file = str(self.plan.config.path)
        located = _locate(file, [(tuple(p["path"]), p["message"]) for p in problems])
        for problem in located:
            self.output.error(str(problem))
        self.finish(EXIT_FAILED, f"{file}: invalid configuration ({len(located)} problem(s)); "
                                 "nothing was started")

    def _router_spawned(self, child: Supervised, process: Any) -> None:
        self._write_ctl()

    def _router_exited(
        self, child: Supervised, status: ExitStatus, restart_in: float | None
    ) -> None:
        router = self.routers[child.name]
        self._write_ctl()
        if self.stopping:
            return
        if not router.ready_once:
            why = router.last_error or status.describe()
            self.finish(EXIT_FAILED, f"router '{child.name}' could not start: {why}")
        elif restart_in is not None:
            self.output.node_event(
                "router died", f"{status.describe()}; restarting on the same ports in "
                f"{restart_in:.2f} s", router=child.name, restart_in=restart_in,
            )
        else:
            self.finish(EXIT_FAILED, f"router '{child.name}' {status.describe()} and keeps "
                                     "dying; giving up")

    # -- guests ---------------------------------------------------------------------------------

    def _configuration_checked(self) -> None:
        """Crossbar.io accepted the configuration: the guests may start now."""
        if self._checked or self.stopping:
            return
        self._checked = True
        for guest in self.guests.values():
            guest.child.start()
            if guest.watcher is not None:
                guest.watcher.start()

    def _guest_spawned(self, child: Supervised, process: Any) -> None:
        self._write_ctl()
        what = "guest restarted" if child.generation > 0 else "guest started"
        self.output.node_event(what, f"pid {process.pid}", guest=child.name, pid=process.pid)

    def _guest_exited(
        self, child: Supervised, status: ExitStatus, restart_in: float | None
    ) -> None:
        self._write_ctl()
        if self.stopping or child.restarting:
            return
        if restart_in is not None:
            self.output.node_event(
                "guest died", f"process {status.describe()}; restarting in {restart_in:.2f} s",
                guest=child.name, code=status.code, signal=status.signal, restart_in=restart_in,
            )
        else:
            self.output.node_event("guest exited", f"process {status.describe()}; gave up "
                                   "after too many restarts", guest=child.name)

    def _guest_source_changed(self, guest_id: str, path: str, restarting: bool) -> None:
        then = "restarting it" if restarting else "not restarted (watch has no restart action)"
        self.output.node_event("guest changed", f"{path} changed; {then}", guest=guest_id,
                               path=path)

    # -- workers --------------------------------------------------------------------------------

    def _worker_spawned(self, child: Supervised, process: Any) -> None:
        self.workers[child.name].announced_exit = None
        self._write_ctl()
        if child.generation > 0:
            self.output.node_event("worker restarted", f"new process pid {process.pid}; it "
                                   "resumes its components from its checkpoint",
                                   worker=child.name, pid=process.pid)

    def _worker_exited(
        self, child: Supervised, status: ExitStatus, restart_in: float | None
    ) -> None:
        worker = self.workers[child.name]
        self._write_ctl()
        if self.stopping:
            return
        if restart_in is not None:
            self.output.node_event(
                "worker died", f"process {status.describe()}; restarting in {restart_in:.2f} s",
                worker=child.name, code=status.code, signal=status.signal, restart_in=restart_in,
            )
            return
        self._worker_gone(worker, status)

    def _worker_gone(self, worker: WorkerHandle, status: ExitStatus) -> None:
        name = worker.plan.id
        if worker.child.gave_up:
            text = f"process {status.describe()}; gave up after too many restarts"
        else:
            text = f"process {status.describe()}; not restarted"
        self.output.node_event("worker exited", text, worker=name, code=status.code,
                               signal=status.signal)
        if not self.up and status.code in WORKER_CANNOT_START_CODES:
            self.finish(EXIT_FAILED, f"worker '{name}' could not start ({status.describe()}; "
                                     "its error is above)")
            return
        if all(w.child.final is not None for w in self.workers.values()):
            clean = all(w.child.final and w.child.final.clean for w in self.workers.values())
            self.finish(EXIT_OK if clean else EXIT_FAILED, "no container worker is left")
        else:
            self._check_up()

    # -- management realm -----------------------------------------------------------------------

    def _on_joined(self) -> None:
        """(Re)joined: catch up with workers whose ready event we may have missed."""
        for worker in self.workers.values():
            if worker.pending and worker.child.pid is not None:
                Deferred.fromCoroutine(self._probe(worker))

    async def _probe(self, worker: WorkerHandle) -> None:
        try:
            await self.link.call(worker.plan.prefix, "get_status")
        except Exception:
            return  # not serving yet: its on_worker_ready will come
        self._worker_ready(worker)

    def _on_refused(self, text: str) -> None:
        self.finish(EXIT_FAILED, f"the management realm refused the node: {text}")

    def _on_event(self, topic: str, payload: Any) -> None:
        parsed = split_topic(topic)
        if parsed is None or not isinstance(payload, dict):
            return
        worker_id, event = parsed
        self.output.worker_event(worker_id, event, payload)
        if event == "on_component_start" and self._first_joined is None:
            self._first_joined = time.monotonic() - self.settings.launched
        worker = self.workers.get(worker_id)
        if event == "on_worker_ready" and worker is not None:
            self._worker_ready(worker)
        if event == "on_shutdown" and worker is not None:
            code = payload.get("exit_code")
            worker.announced_exit = code if isinstance(code, int) else None

    def _worker_ready(self, worker: WorkerHandle) -> None:
        respawned = worker.ready_once and worker.ready_generation != worker.child.generation
        worker.ready_once = True
        worker.ready_generation = worker.child.generation
        if respawned:
            checking = Deferred.fromCoroutine(self._check_resumed(worker))
            checking.addErrback(lambda failure: self.output.error(
                f"worker '{worker.plan.id}': cannot check its resumed checkpoint: "
                f"{failure.getErrorMessage()}"))
        self._start_pending(worker)
        self._check_up()

    async def _check_resumed(self, worker: WorkerHandle) -> None:
        """A respawned worker resumes its checkpoint. If it had to set the checkpoint aside
        (unreadable, of the wrong shape, another worker's), nothing came back: say so, and
        start the configured components again."""
        try:
            status = await self.link.call(worker.plan.prefix, "get_status")
        except Exception:
            return  # gone again: its next ready event brings us back here
        aside = (status.get("checkpoint") or {}).get("set_aside") if isinstance(
            status, dict) else None
        if not aside:
            return
        self.output.node_event(
            "checkpoint set aside", f"{aside.get('path')}: {aside.get('problem')}; kept as "
            f"{aside.get('moved_to')}; starting the configured components again",
            worker=worker.plan.id, checkpoint=aside)
        for component in worker.plan.components:
            worker.pending.setdefault(component["id"], component)
        self._start_pending(worker)

    def _start_pending(self, worker: WorkerHandle) -> None:
        """Start the configured components not known to run yet (only the first process of
        a worker has any: a respawned one resumes its checkpoint by itself)."""
        if self.stopping:
            return
        for component_id, config in list(worker.pending.items()):
            if component_id not in worker.in_flight:
                worker.in_flight.add(component_id)
                Deferred.fromCoroutine(self._start_component(worker, component_id, config))

    def _retry_soon(self, worker: WorkerHandle) -> None:
        """A start got lost (the worker or the router went away meanwhile). If the worker
        and our session are already back, no event will come to trigger it: try again."""
        serving = worker.ready_generation == worker.child.generation and worker.child.pid
        if serving and self.link.session is not None:
            self.reactor.callLater(START_RETRY_DELAY, self._start_pending, worker)

    async def _start_component(
        self, worker: WorkerHandle, component_id: str, config: dict[str, Any]
    ) -> None:
        from container.node.link import error_text, start_outcome

        try:
            await self.link.call(worker.plan.prefix, "start_component", component_id, config,
                                 wait_for_router=True)
            outcome, why = "started", ""
        except Exception as error:
            outcome, why = start_outcome(error), error_text(error)
        finally:
            worker.in_flight.discard(component_id)
        if outcome == "fatal":
            self.finish(EXIT_FAILED, f"component '{component_id}' of worker '{worker.plan.id}' "
                                     f"could not be started: {why}")
        elif outcome == "retry":
            self._retry_soon(worker)
        elif worker.pending.pop(component_id, None):  # started, or dropped by somebody else
            self.output.progress_advance(worker.plan.id, component_id)
            self._check_up()

    def _check_up(self) -> None:
        """``node ready`` once every router listens and every configured component runs; a
        worker that is gone for good with components never started makes the node
        incomplete instead, saying which are missing."""
        if self.up or self.stopping:
            return
        running = [w for w in self.workers.values() if w.child.final is None]
        waiting = [w for w in running if w.pending or not w.ready_once]
        if waiting or not all(r.ready_once for r in self.routers.values()):
            return
        missing = [f"{w.plan.id}/{c}" for w in self.workers.values() if w.child.final is not None
                   for c in w.pending]
        if missing:
            self._incomplete(missing)
            return
        self.up = True
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self.output.progress_done()
        elapsed = time.monotonic() - self.settings.launched
        first = self._first_joined
        total = sum(len(w.plan.components) for w in self.workers.values())
        text = (f"{total} component(s) in {len(self.workers)} worker(s) up {elapsed:.2f} s "
                f"after launch" + (f" (first joined after {first:.2f} s)" if first else ""))
        self.output.node_event("node ready", text, elapsed=round(elapsed, 3),
                               first_joined=round(first, 3) if first else None)

    def _incomplete(self, missing: list[str]) -> None:
        self.up = True
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self.output.progress_done()
        self.output.node_event(
            "node incomplete", f"up, but {len(missing)} configured component(s) are not "
            f"running, their worker is gone: {', '.join(missing)}", missing=missing)

    def _timed_out(self) -> None:
        waiting = []
        for worker in self.workers.values():
            if not worker.ready_once:
                waiting.append(f"worker '{worker.plan.id}' to join the management realm")
            waiting += [f"component '{worker.plan.id}/{c}' to join its realm"
                        for c in worker.pending]
        self.finish(EXIT_FAILED, f"the node did not come up within "
                                 f"{self.settings.start_timeout:g} s; still waiting for "
                                 f"{'; '.join(waiting)} (is its router address right?)")

    # -- ctl file ------------------------------------------------------------------------------

    def _write_ctl(self) -> None:
        """Rewrite ``ctl.json``. A failure (the run directory was removed or made read-only
        under us) is reported once and never stops the node from working or stopping."""
        if self.stopping:
            return
        try:
            write_private_json(self.plan.ctl_file, self._ctl_record())
        except OSError as error:
            if not self._ctl_failed:
                self.output.error(f"cannot write {self.plan.ctl_file}: {error.strerror}; "
                                  "`container ctl --config` will not find this node")
            self._ctl_failed = True
        else:
            self._ctl_failed = False

    def _ctl_record(self) -> dict[str, Any]:
        management = self.plan.management
        ctl = management.ctl
        return {
            "node_pid": os.getpid(),
            "config": str(self.plan.config.path),
            "run_dir": str(self.plan.run_dir.absolute()),
            "management": management.url,
            "realm": management.realm,
            "authid": ctl.authid if ctl else None,
            "authmethod": ctl.method if ctl else None,
            "secret": ctl.secret if ctl else None,
            "workers": [{"id": w.plan.id, "prefix": w.plan.prefix, "pid": w.child.pid}
                        for w in self.workers.values()],
            "routers": [{"id": r.plan.id, "pid": r.child.pid, "transports": r.transports}
                        for r in self.routers.values()],
            "guests": [{"id": g.launch.id, "pid": g.child.pid} for g in self.guests.values()],
        }

    # -- stop -----------------------------------------------------------------------------------

    def signalled(self, signum: int) -> None:
        """First signal: stop in order. Another one a second later: kill every child now
        (one keystroke or ``kill`` of a process group can deliver the same signal twice)."""
        name = signal.Signals(signum).name
        now = self.reactor.seconds()
        if self._first_signal is None:
            self._first_signal = now
            self.finish(EXIT_OK, f"received {name}: stopping")
            return
        if now - self._first_signal < 1.0:
            return
        self.output.node_event("killing", f"received {name} again: killing every child")
        for handle in [*self.workers.values(), *self.guests.values(), *self.routers.values()]:
            handle.child.kill()

    def finish(self, exit_code: int, why: str) -> None:
        """Stop everything once, report why, then fire :attr:`done` with ``exit_code``."""
        if self.stopping:
            return
        self.stopping = True
        self.output.progress_done()
        if exit_code == EXIT_OK:
            self.output.node_event("stopping", why)
        else:
            self.output.error(why)
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._overdue = self.reactor.callLater(self._stop_deadline(), self._stop_overdue,
                                               exit_code)
        stopping = Deferred.fromCoroutine(self._stop_all(exit_code))
        stopping.addErrback(lambda failure: self.output.error(
            f"while stopping: {failure.getErrorMessage()}"))

    def _stop_deadline(self) -> float:
        """How long an ordered stop may take: workers and guests, the link, then routers."""
        workers = max([w.plan.stop_timeout + WORKER_STOP_MARGIN for w in self.workers.values()]
                      + [GUEST_STOP_TIMEOUT])
        return workers + LINK_CLOSE_TIMEOUT + ROUTER_STOP_TIMEOUT + STOP_SLACK

    def _stop_overdue(self, exit_code: int) -> None:
        """The ordered stop did not end in time: kill every child and end the node anyway."""
        if self.done.called:
            return
        self.output.error("the ordered stop did not finish in time: killing every child")
        for handle in [*self.workers.values(), *self.guests.values(), *self.routers.values()]:
            handle.child.kill()
        self._finished(exit_code)

    def _finished(self, exit_code: int) -> None:
        if self.done.called:
            return
        if self._overdue is not None and self._overdue.active():
            self._overdue.cancel()
        close_sockets(self.sockets)
        try:
            self._remove_files()
        except OSError as error:
            self.output.error(f"cannot remove the run directory: {error.strerror}")
        self.output.node_event("stopped", f"exit status {exit_code}", code=exit_code)
        self.exit_code = exit_code
        self.done.callback(exit_code)

    async def _stop_all(self, exit_code: int) -> None:
        try:
            for guest in self.guests.values():
                if guest.watcher is not None:
                    guest.watcher.stop()
            await _gather([
                *(w.child.stop(w.plan.stop_timeout + WORKER_STOP_MARGIN)
                  for w in self.workers.values()),
                *(g.child.stop(GUEST_STOP_TIMEOUT) for g in self.guests.values()),
            ])
            if self.link is not None:
                closing = Deferred.fromCoroutine(self.link.close())
                await closing.addTimeout(LINK_CLOSE_TIMEOUT, self.reactor).addErrback(
                    lambda failure: None)
            await _gather(r.child.stop(ROUTER_STOP_TIMEOUT) for r in self.routers.values())
        finally:
            self._finished(exit_code)

    def _remove_files(self) -> None:
        management = self.plan.management
        if management.socket is not None:
            management.socket.unlink(missing_ok=True)
        if management.socket_dir is not None:
            shutil.rmtree(management.socket_dir, ignore_errors=True)
        remove_run_dir(self.plan.run_dir)


def _locate(file: str, findings: list[tuple[tuple[Any, ...], str]]) -> list[Any]:
    """Crossbar.io's findings (key paths) as problems at their positions in the file."""
    from container.node.config import Problem
    from container.validation import SourceMap

    try:
        source = SourceMap.of(Path(file).read_text(encoding="utf-8-sig"))
    except (OSError, ValueError):  # changed since it was checked: say it without positions
        return [Problem(file, 1, 1, path, message) for path, message in findings]
    return [Problem(file, *source.position(path, at_key=True), path, message)
            for path, message in findings]


async def _gather(coroutines: Any) -> None:
    await DeferredList([Deferred.fromCoroutine(c) for c in coroutines], consumeErrors=True)


def _describe_endpoint(endpoint: dict[str, Any]) -> str:
    if endpoint.get("type") == "unix":
        return f"unix:{endpoint.get('path')}"
    return f"{endpoint.get('host')}:{endpoint.get('port')}"


# ---------------------------------------------------------------------------------------------
# the command line


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="container run",
        description="Run a node from a configuration file (Crossbar.io's format): routers, "
                    "container workers and their components; stop with Ctrl-C or SIGTERM.",
    )
    parser.add_argument("config", metavar="CONFIG", help="node configuration file (JSON)")
    parser.add_argument("--log-format", choices=("text", "json"), default="text",
                        help="lifecycle events as readable lines (default) or JSON lines")
    parser.add_argument("--loglevel", default="info",
                        choices=("critical", "error", "warn", "info", "debug", "trace"),
                        help="log level of the container workers (default info)")
    parser.add_argument("--router-loglevel", default="warn",
                        choices=("none", "critical", "error", "warn", "info", "debug", "trace"),
                        help="log level of the routers (default warn)")
    parser.add_argument("--start-timeout", type=float, default=60.0, metavar="SECONDS",
                        help="give up if the configuration is not up after this long "
                             "(default 60)")
    parser.add_argument("--no-progress", action="store_true",
                        help="plain lines even on a terminal")
    return parser


class _EarlySignals:
    """SIGTERM, SIGINT or SIGHUP before the reactor runs: remembered, and acted on (a clean
    stop, exit 0) as soon as there is something to stop, instead of the default handler
    killing the node half-way through its start."""

    def __init__(self) -> None:
        self.received: int | None = None
        for signum in STOP_SIGNALS:
            signal.signal(signum, self)

    def __call__(self, signum: int, frame: Any) -> None:
        self.received = self.received or signum


def main(argv: list[str]) -> int:
    """``container run CONFIG``: 0 after a clean stop, 1 if the node could not be brought
    up or its workers ended with a failure, 2 on bad arguments."""
    launched = time.monotonic()
    early = _EarlySignals()
    args = _parser().parse_args(argv)
    settings = NodeSettings(start_timeout=args.start_timeout, launched=launched)
    output = NodeOutput(json_lines=args.log_format == "json",
                        progress=False if args.no_progress else None)
    plan = _plan(args, output)
    if plan is None:
        return EXIT_FAILED
    try:
        guests = guest_launches(plan.config)
    except InvalidConfiguration as error:
        remove_run_dir(plan.run_dir)
        output.error(str(error))
        return EXIT_FAILED
    sockets = _bind(plan, output)
    if sockets is None:
        remove_run_dir(plan.run_dir)
        return EXIT_FAILED
    if early.received is not None:
        close_sockets(sockets)
        remove_run_dir(plan.run_dir)
        name = signal.Signals(early.received).name
        output.node_event("stopped", f"received {name} before the start: exit status 0",
                          code=EXIT_OK)
        return EXIT_OK
    return _serve(plan, output, settings, sockets, guests, early)


def _plan(args: argparse.Namespace, output: NodeOutput) -> NodePlan | None:
    """Validate and plan; on any problem print it and return None before starting anything."""
    try:
        config = load_node_config(args.config, crossbar=False)
        if not config.routers and config.management is not None:
            # no router child of ours will run Crossbar.io's checker: run it here
            from container.router.check import crossbar_findings

            findings = crossbar_findings(config.raw)
            if findings:
                raise NodeConfigError(args.config, _locate(args.config, findings))
    except NodeConfigError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        output.error(f"{args.config}: invalid configuration ({len(error.problems)} "
                     "problem(s)); nothing was started")
        return None
    except ConfigFileUnreadable as error:
        output.error(str(error))
        return None
    for warning in config_warnings(config):
        print(f"container run: warning: {warning}", file=sys.stderr)
    run_dir = run_dir_for(config)
    try:
        lock_node(config.path, run_dir)  # held until the process ends
    except (NodePlanError, OSError) as error:  # another node runs it: leave its files alone
        output.error(str(error))
        return None
    try:
        prepare_run_dir(run_dir)
        plan = build_plan(config, run_dir, loglevel=args.loglevel,
                          router_loglevel=args.router_loglevel)
        if plan.management.socket_dir is not None:
            prepare_socket_dir(plan.management.socket_dir)
    except (NodePlanError, OSError) as error:
        remove_run_dir(run_dir)
        output.error(str(error))
        return None
    return plan


def _bind(plan: NodePlan, output: NodeOutput) -> dict[str, dict[str, socket.socket]] | None:
    """Bind every router's listeners now: a port in use is reported before anything runs,
    ``port: 0`` gets its real port, and the routers' restarts reuse the same sockets."""
    from container.errors import InvalidConfiguration
    from container.router.listeners import MANAGEMENT_FD_NAME, bind_listeners

    bound: dict[str, dict[str, socket.socket]] = {}
    for router in plan.routers:
        try:
            bound[router.id] = bind_listeners(router.config, str(plan.config.config_dir))
            if router.management_config is not None:
                [management] = bind_listeners(router.management_config, "/").values()
                bound[router.id][MANAGEMENT_FD_NAME] = management
        except InvalidConfiguration as error:
            close_sockets(bound)
            output.error(f"{router.type} '{router.id}': {error}")
            return None
    return bound


def close_sockets(bound: dict[str, dict[str, socket.socket]]) -> None:
    for sockets in bound.values():
        for sock in sockets.values():
            sock.close()


def _log_warnings() -> None:
    """Twisted's and autobahn's warnings and errors (an unhandled failure, a protocol error)
    go to stderr; stdout stays ours (no redirection of standard I/O)."""
    from twisted.logger import (
        FilteringLogObserver,
        LogLevel,
        LogLevelFilterPredicate,
        globalLogBeginner,
        textFileLogObserver,
    )

    observer = FilteringLogObserver(textFileLogObserver(sys.stderr),
                                    [LogLevelFilterPredicate(LogLevel.warn)])
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)


def _serve(
    plan: NodePlan,
    output: NodeOutput,
    settings: NodeSettings,
    sockets: dict[str, dict[str, socket.socket]],
    guests: list[GuestLaunch],
    early: _EarlySignals,
) -> int:
    from twisted.internet import reactor

    _log_warnings()
    node = Node(reactor, plan, output, settings, sockets, guests)

    def on_signal(signum: int, frame: Any) -> None:
        reactor.callFromThread(node.signalled, signum)

    def install_signals() -> None:  # after Twisted's own (it keeps SIGCHLD for children)
        for signum in STOP_SIGNALS:
            signal.signal(signum, on_signal)
        if early.received is not None:
            node.signalled(early.received)

    reactor.callWhenRunning(install_signals)
    reactor.callWhenRunning(node.start)
    node.done.addBoth(lambda _: reactor.callLater(0, reactor.stop))
    reactor.run()
    return node.exit_code if node.exit_code is not None else EXIT_FAILED


__all__ = ["Node", "NodeSettings", "main"]

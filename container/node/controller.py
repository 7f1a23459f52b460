"""The node controller at run time: one object that brings up and supervises a whole node.

:class:`Node` starts everything at once: the router workers (Crossbar.io's router, one
``python -m container.router`` child each, the first one also carrying the management
realm on a private unix socket), one ``container worker`` process per container worker, and
the guests once Crossbar.io accepted the configuration. The workers retry their management
connection until the router listens, so nobody waits for anybody's imports. The node joins
the management realm itself as soon as the first router says it listens, and
:class:`~container.node.components.ComponentStarter` starts each worker's configured
components (all concurrently); every component's lifecycle events are printed as they happen.

Supervision: a worker process that dies without being asked is spawned again with backoff
and resumes its whole component set from its checkpoint file (components started later
through the API included), so the node does not start its configured components again. A
worker that exits by itself after announcing it (its shutdown policy fired) stays down; when
no worker is left, the node exits too. A router that dies is restarted on the same ports.

A stop (:meth:`Node.signalled`, :meth:`Node.finish`) goes in order: workers and guests first
(their components leave cleanly while the router still runs), then the management link,
then the routers; a second signal kills what is left, and so does a stop that overruns.

The reactor is injected; the global one is run only by :mod:`container.cli`.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
from typing import Any

from twisted.internet.defer import Deferred

from container.errors import ExitCode
from container.events import split_topic
from container.node.components import ComponentStarter
from container.node.guest import GuestLaunch, GuestOutput
from container.node.handles import (
    WORKER_CANNOT_START_CODES,
    GuestHandle,
    RouterHandle,
    SupervisionCallbacks,
    WorkerHandle,
)
from container.node.output import NodeOutput
from container.node.plan import NodePlan, RouterPlan, WorkerPlan, with_listening_sockets
from container.node.procs import ChildProcess, ExitStatus, RestartRules, Supervised
from container.node.readiness import NodeSettings, Readiness
from container.node.rundir import CtlFile, remove_node_files, write_child_files
from container.node.stop import GUEST_STOP_TIMEOUT, OrderedStop
from container.node.watch import restart_on_change
from container.positions import locate_in_file
from container.router.listeners import close_listeners
from container.validation import Finding

__all__ = ["Node"]

Sockets = dict[str, dict[str, socket.socket]]  # router id -> transport id -> bound listener


class Node:
    """The process context of the node controller."""

    def __init__(
        self,
        reactor: Any,
        plan: NodePlan,
        output: NodeOutput,
        settings: NodeSettings,
        sockets: Sockets,
        guests: list[GuestLaunch] | None = None,
    ) -> None:
        self.reactor = reactor
        self.plan = plan
        self.sockets = sockets
        self.output = output
        self.settings = settings
        self.link: Any = None
        self.starter: ComponentStarter | None = None
        self.done: Deferred[int] = Deferred()
        self.exit_code: int | None = None
        self.stopping = False
        self._first_signal: float | None = None
        self.routers = {r.id: self._router_handle(r) for r in plan.routers}
        self.workers = {w.id: self._worker_handle(w) for w in plan.workers}
        self.guests = {g.id: self._guest_handle(g) for g in guests or []}
        self._checked = False
        self.readiness = Readiness(reactor, output, settings, self.workers, self.routers)
        self._ctl = CtlFile(plan, output.error)
        self._stop = OrderedStop(reactor, output, self.workers, self.guests, self.routers,
                                 self._finished)

    def _router_handle(self, router: RouterPlan) -> RouterHandle:
        handle: RouterHandle
        fds = {tid: sock.fileno() for tid, sock in self.sockets.get(router.id, {}).items()}
        child = Supervised(
            self.reactor, router.id, lambda: with_listening_sockets(router.launch, fds),
            RestartRules(lambda status: handle.ready_once),
            SupervisionCallbacks(self._router_spawned, self._router_exited),
            lambda stream, line: self._router_line(handle, stream, line),
        )
        handle = RouterHandle(router, child)
        return handle

    def _worker_handle(self, worker: WorkerPlan) -> WorkerHandle:
        handle: WorkerHandle
        child = Supervised(
            self.reactor, worker.id, lambda: worker.launch,
            RestartRules(lambda status: handle.restartable(status)),
            SupervisionCallbacks(self._worker_spawned, self._worker_exited),
            lambda stream, line: self.output.child_line(worker.id, line),
        )
        pending = {component["id"]: component for component in worker.components}
        handle = WorkerHandle(worker, child, pending)
        return handle

    def _guest_handle(self, guest: GuestLaunch) -> GuestHandle:
        child = Supervised(
            self.reactor, guest.id, lambda: guest.launch, RestartRules(lambda status: True),
            SupervisionCallbacks(self._guest_spawned, self._guest_exited),
            GuestOutput(guest, lambda stream, line: self.output.child_line(guest.id, line)),
            guest.stdio,
        )
        watcher = restart_on_change(
            self.reactor, guest, child, GUEST_STOP_TIMEOUT,
            lambda path, restarting: self._guest_source_changed(guest.id, path, restarting),
        )
        return GuestHandle(guest, child, watcher)

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
            self.finish(ExitCode.FAILED, f"cannot start the node: {error}")

    def _start(self) -> None:
        write_child_files(self.plan, self.sockets)
        for router in self.routers.values():
            router.child.start()
        for worker in self.workers.values():
            worker.child.start()
        self.readiness.begin(lambda why: self.finish(ExitCode.FAILED, why))
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
        self.starter = ComponentStarter(self.reactor, self.link, self.output, self)
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
        self.check_up()
        if self.link is not None and self.plan.embedded:
            self.link.kick()

    def _refused_by_crossbar(self, problems: list[dict[str, Any]]) -> None:
        """Crossbar.io's checker refused the configuration: say where, and stop."""
        file = str(self.plan.config.path)
        findings = [Finding(tuple(p["path"]), p["message"], at_key=True) for p in problems]
        located = locate_in_file(file, findings)
        for problem in located:
            self.output.error(str(problem))
        self.finish(ExitCode.FAILED, f"{file}: invalid configuration ({len(located)} "
                                     "problem(s)); nothing was started")

    def _router_spawned(self, child: Supervised, process: ChildProcess) -> None:
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
            self.finish(ExitCode.FAILED, f"router '{child.name}' could not start: {why}")
        elif restart_in is not None:
            self.output.node_event(
                "router died", f"{status.describe()}; restarting on the same ports in "
                f"{restart_in:.2f} s", router=child.name, restart_in=restart_in,
            )
        else:
            self.finish(ExitCode.FAILED, f"router '{child.name}' {status.describe()} and "
                                         "keeps dying; giving up")

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

    def _guest_spawned(self, child: Supervised, process: ChildProcess) -> None:
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

    def _worker_spawned(self, child: Supervised, process: ChildProcess) -> None:
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
        if not self.readiness.up and status.code in WORKER_CANNOT_START_CODES:
            self.finish(ExitCode.FAILED, f"worker '{name}' could not start "
                                         f"({status.describe()}; its error is above)")
            return
        if all(w.child.final is not None for w in self.workers.values()):
            clean = all(w.child.final and w.child.final.clean for w in self.workers.values())
            self.finish(ExitCode.OK if clean else ExitCode.FAILED, "no container worker is left")
        else:
            self.check_up()

    # -- management realm -----------------------------------------------------------------------

    def _on_joined(self) -> None:
        if self.starter is not None:
            self.starter.joined(self.workers.values())

    def _on_refused(self, text: str) -> None:
        self.finish(ExitCode.FAILED, f"the management realm refused the node: {text}")

    def _on_event(self, topic: str, payload: Any) -> None:
        parsed = split_topic(topic)
        if parsed is None or not isinstance(payload, dict):
            return
        worker_id, event = parsed
        self.output.worker_event(worker_id, event, payload)
        if event == "on_component_start":
            self.readiness.component_started()
        worker = self.workers.get(worker_id)
        if event == "on_worker_ready" and worker is not None and self.starter is not None:
            self.starter.ready(worker)
            self.check_up()
        if event == "on_shutdown" and worker is not None:
            code = payload.get("exit_code")
            worker.announced_exit = code if isinstance(code, int) else None

    def check_up(self) -> None:
        """Say ``node ready`` (or ``node incomplete``) if nothing is left to wait for."""
        if not self.stopping:
            self.readiness.check()

    def _write_ctl(self) -> None:
        """Rewrite ``ctl.json`` with every child's pid (not any more once stopping)."""
        if self.stopping:
            return
        self._ctl.write(self.workers.values(), self.routers.values(), self.guests.values())

    # -- stop -----------------------------------------------------------------------------------

    def signalled(self, signum: int) -> None:
        """First signal: stop in order. Another one a second later: kill every child now
        (one keystroke or ``kill`` of a process group can deliver the same signal twice)."""
        name = signal.Signals(signum).name
        now = self.reactor.seconds()
        if self._first_signal is None:
            self._first_signal = now
            self.finish(ExitCode.OK, f"received {name}: stopping")
            return
        if now - self._first_signal < 1.0:
            return
        self.output.node_event("killing", f"received {name} again: killing every child")
        self._stop.kill_all()

    def finish(self, exit_code: int, why: str) -> None:
        """Stop everything once, report why, then fire :attr:`done` with ``exit_code``."""
        if self.stopping:
            return
        self.stopping = True
        self.output.progress_done()
        if exit_code == ExitCode.OK:
            self.output.node_event("stopping", why)
        else:
            self.output.error(why)
        self.readiness.cancel()
        self._stop.begin(exit_code, self.link)

    def _finished(self, exit_code: int) -> None:
        """Every child is stopped (or killed): free what the node holds, then fire ``done``."""
        if self.done.called:
            return
        exit_code = int(exit_code)
        close_listeners(self.sockets)
        try:
            remove_node_files(self.plan)
        except OSError as error:
            self.output.error(f"cannot remove the run directory: {error.strerror}")
        self.output.node_event("stopped", f"exit status {exit_code}", code=exit_code)
        self.exit_code = exit_code
        self.done.callback(exit_code)


def _describe_endpoint(endpoint: dict[str, Any]) -> str:
    if endpoint.get("type") == "unix":
        return f"unix:{endpoint.get('path')}"
    return f"{endpoint.get('host')}:{endpoint.get('port')}"

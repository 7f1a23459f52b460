"""The container worker process: joins the management realm, serves the API, leaves cleanly.

:class:`Worker` is the process context: it owns the supervisor, the management API, the
connection to the management realm (a Twisted ``ClientService``, so a lost management
connection is retried with backoff while the components keep running), the checkpoint
file, and the shutdown sequence. It guards its reactor's ``stop`` so that a component's
``reactor.stop()`` ends that component only (``container.session.ReactorStopGuard``).
Only the CLI touches the global reactor.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import txaio
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import CloseDetails, ComponentConfig, PublishOptions, SessionDetails
from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet.defer import CancelledError, Deferred, FirstError

from container.config import ConfigWarning, ContainerOptions, parse_container_options
from container.connector import build_endpoint
from container.context import outside_components
from container.deferreds import share
from container.errors import InvalidConfiguration
from container.files import write_atomically
from container.management import REFUSALS, Credentials, ManagementAddress, parse_management_url
from container.management.client import AuthenticatingSession, client_factory
from container.worker.api import ManagementApi
from container.worker.checkpoint import (
    CheckpointError,
    encode_checkpoint,
    read_checkpoint,
    remove_stale_temporaries,
)
from container.worker.loader import Reloader, SourceWatcher
from container.worker.session import guard_reactor_stop
from container.worker.supervisor import Supervisor

log = txaio.make_logger()

EXIT_CLEAN = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_MANAGEMENT_REFUSED = 3

PROCEDURE_EXISTS = "wamp.error.procedure_already_exists"
CHECKPOINT_RETRY_FIRST = 0.5
CHECKPOINT_RETRY_MAX = 30.0


@dataclass(frozen=True)
class WorkerSettings:
    worker_id: str
    management: ManagementAddress
    realm: str = "crossbar"
    prefix: str = ""
    options: ContainerOptions = field(default_factory=ContainerOptions)
    credentials: Credentials | None = None
    state_file: str | None = None
    serializer: str = "cbor"

    @property
    def uri_prefix(self) -> str:
        return self.prefix or f"crossbar.worker.{self.worker_id}"


class ManagementSession(AuthenticatingSession):
    """The worker's session on the management realm."""

    worker: Worker

    async def onJoin(self, details: SessionDetails) -> None:
        await self.worker.management_joined(self, details)

    def onLeave(self, details: CloseDetails) -> None:
        self.worker.management_left(self, details)
        self.disconnect()

    def onUserError(self, fail: Any, msg: str) -> None:
        """A procedure's ``ApplicationError`` went back to its caller, who acts on it; the
        component's own log already tells what failed. Anything else is a bug: logged."""
        if isinstance(getattr(fail, "value", None), ApplicationError):
            log.debug("management call answered with {uri}: {message}", uri=fail.value.error,
                      message=fail.value.error_message())
            return
        if isinstance(getattr(fail, "value", None), CancelledError):
            log.debug("a management call was cancelled by its caller: {msg}", msg=msg)
            return
        super().onUserError(fail, msg)


class WorkerApi(ManagementApi):
    """The management API, with what only the process context knows added to the status."""

    worker: Worker

    def get_status(self) -> dict[str, Any]:
        return {**super().get_status(), "checkpoint": self.worker.checkpoint_status()}


class Worker:
    """The process context of one container worker."""

    def __init__(self, reactor: Any, settings: WorkerSettings) -> None:
        self.reactor = reactor
        self.settings = settings
        self.started_wall = datetime.now(UTC)
        self.exit_code: int | None = None
        self.done: Deferred[int] = Deferred()
        self.api = WorkerApi(None, settings.worker_id, settings.uri_prefix, self.shutdown)  # type: ignore[arg-type]
        self.api.worker = self
        self.supervisor = Supervisor(
            reactor,
            settings.options,
            emit=self.api.publish,
            request_shutdown=self._policy_shutdown,
            reloader=Reloader(),
            controller=lambda: self.api.session,
            on_change=self._checkpoint_soon,
        )
        self.api.supervisor = self.supervisor
        self.watcher = self._source_watcher()
        self._service: ClientService | None = None
        self._joined_once = False
        self._shutdown_started = False
        self._stopped_ids: Deferred[list[str]] | None = None
        self._checkpoint_call: Any = None
        self._checkpoint_error: str | None = None
        self._checkpoint_retry = CHECKPOINT_RETRY_FIRST
        self._checkpoint_problem: dict[str, Any] | None = None
        self._resume: dict[str, Any] = {}
        self._stop_guard: Any = None

    def _source_watcher(self) -> SourceWatcher | None:
        watch = self.settings.options.watch
        if not watch.enabled:
            return None

        def changed(modules: list[str]) -> None:
            log.info("source changed: {modules}; reloading", modules=", ".join(modules))
            Deferred.fromCoroutine(self.supervisor.reload_and_restart(modules))

        return SourceWatcher(self.reactor, self.supervisor.reloader, changed,
                             watch.interval, watch.debounce)

    # -- management connection ----------------------------------------------------------

    def start(self) -> None:
        """Connect to the management realm (retrying with backoff until it answers)."""
        for warning in self.settings.options.warnings:
            log.warn("options.{warning}", warning=warning)
        self._load_checkpoint()
        # a component's reactor.stop() ends that component, not this process
        self._stop_guard = guard_reactor_stop(self.reactor, self.supervisor.live_runs)
        factory = self._management_factory()
        endpoint = build_endpoint(self.reactor, self.settings.management.endpoint)
        self._service = ClientService(
            endpoint,
            factory,
            retryPolicy=backoffPolicy(initialDelay=0.05, maxDelay=5.0, factor=1.6),
            clock=self.reactor,
        )
        self._service.startService()
        if self.watcher is not None:
            self.watcher.start()
        log.info("worker {id} connecting to management realm '{realm}' at {where}",
                 id=self.settings.worker_id, realm=self.settings.realm,
                 where=self.settings.management.describe())

    def _management_factory(self) -> Any:
        def make_session() -> ManagementSession:
            session = ManagementSession(ComponentConfig(realm=self.settings.realm))
            session.credentials = self.settings.credentials
            session.worker = self
            return session

        return client_factory(self.settings.management, make_session, self.settings.serializer)

    async def management_joined(self, session: ManagementSession, details: SessionDetails) -> None:
        try:
            await self.api.attach(session)
        except FirstError as error:
            refused = error.subFailure.value
            if not (isinstance(refused, ApplicationError) and refused.error == PROCEDURE_EXISTS):
                raise
            self._id_in_use(session, refused)
            return
        first = not self._joined_once
        self._joined_once = True
        self.api.publish("on_worker_ready", self._ready_event(details, reconnected=not first),
                         acknowledge=True)
        log.info("worker {id} ready on management realm '{realm}' (prefix {prefix})",
                 id=self.settings.worker_id, realm=details.realm, prefix=self.api.prefix)
        if first:
            self._resume_checkpoint()

    def _id_in_use(self, session: ManagementSession, error: ApplicationError) -> None:
        """Another process serves this worker's API already. The first time: that is another
        worker with the same id, and this one exits 3. On a rejoin it may be our own earlier
        session the router has not dropped yet: leave, and join again after a backoff."""
        self.api.detach()
        if self._joined_once:
            log.warn("the management API {prefix} is still registered (our previous session "
                     "may linger on the router): {error}; joining again",
                     prefix=self.api.prefix, error=error.error_message())
            session.leave("wamp.close.normal", "worker id in use")
            return
        log.error("another worker with id '{id}' is already serving {prefix} on the management "
                  "realm; this one exits ({error})", id=self.settings.worker_id,
                  prefix=self.api.prefix, error=error.error_message())
        self._shutdown_started = True
        session.leave("wamp.close.normal", "worker id in use")
        self._stop_service()
        self._finish(EXIT_MANAGEMENT_REFUSED)

    def _ready_event(self, details: SessionDetails, reconnected: bool) -> dict[str, Any]:
        return {
            "id": self.settings.worker_id,
            "pid": os.getpid(),
            "prefix": self.api.prefix,
            "realm": details.realm,
            "session": details.session,
            "started": self.started_wall.isoformat().replace("+00:00", "Z"),
            "reconnected": reconnected,
            "components": self.supervisor.list(),
        }

    def management_left(self, session: ManagementSession, details: CloseDetails) -> None:
        if self.api.session is session:
            self.api.detach()
        if details.reason in REFUSALS:
            log.error("the management realm refused this worker: {reason} {message}",
                      reason=details.reason, message=details.message or "")
            self._stop_service()
            self._finish(EXIT_MANAGEMENT_REFUSED)
        elif not self._shutdown_started:
            log.warn("lost the management realm ({reason}); reconnecting, components keep "
                     "running", reason=details.reason)

    # -- checkpoint and resume ----------------------------------------------------------

    def checkpoint_status(self) -> dict[str, Any] | None:
        """The checkpoint's health for ``get_status``: None without a state file."""
        if self.settings.state_file is None:
            return None
        return {"path": self.settings.state_file, "ok": self._checkpoint_error is None,
                "error": self._checkpoint_error, "set_aside": self._checkpoint_problem}

    def _load_checkpoint(self) -> None:
        """Read the checkpoint before connecting; one that cannot be used is set aside."""
        path = self.settings.state_file
        if path is None:
            return
        loaded = read_checkpoint(path, self.settings.worker_id)
        self._resume = loaded.components
        if loaded.problem is None:
            return
        self._checkpoint_problem = {"path": path, "problem": loaded.problem,
                                    "moved_to": loaded.aside}
        if loaded.aside is not None:
            log.error("the checkpoint {path} {problem}: it was set aside as {aside} and "
                      "nothing is resumed from it", path=path, problem=loaded.problem,
                      aside=loaded.aside)
        else:
            # never overwrite the evidence: no checkpoint is written in this process
            self._checkpoint_error = f"{path} {loaded.problem}; not overwriting it"
            log.error("the checkpoint {path} {problem}; nothing is resumed and no checkpoint "
                      "is written", path=path, problem=loaded.problem)

    def _checkpoint_soon(self) -> None:
        """Coalesce many registry changes into one write of the state file."""
        if self.settings.state_file is None or self._shutdown_started:
            return
        if self._checkpoint_call is None or not self._checkpoint_call.active():
            self._checkpoint_call = self.reactor.callLater(0, self._checkpoint_due)

    def _checkpoint_due(self) -> None:
        if not self._shutdown_started and not self.write_checkpoint():
            self._checkpoint_call = self.reactor.callLater(self._checkpoint_retry,
                                                           self._checkpoint_due)
            self._checkpoint_retry = min(self._checkpoint_retry * 2, CHECKPOINT_RETRY_MAX)

    def write_checkpoint(self) -> bool:
        """Write the component set to the state file; False (logged, and shown by
        ``get_status``) if that failed."""
        path = self.settings.state_file
        if path is None:
            return True
        if self._checkpoint_problem is not None and self._checkpoint_problem["moved_to"] is None:
            return True  # an unreadable checkpoint we could not set aside is kept as it is
        try:
            data = encode_checkpoint(self.settings.worker_id, self.supervisor.resumable())
            write_atomically(path, data, durable=True)
        except (CheckpointError, OSError, TypeError, ValueError) as error:
            cause = error.strerror if isinstance(error, OSError) and error.strerror else error
            message = f"cannot write the checkpoint {path}: {cause}"
            if message != self._checkpoint_error:
                log.error("{message}; retrying", message=message)
            self._checkpoint_error = message
            return False
        if self._checkpoint_error is not None:
            log.info("the checkpoint {path} is written again", path=path)
        self._checkpoint_error = None
        self._checkpoint_retry = CHECKPOINT_RETRY_FIRST
        return True

    def _resume_checkpoint(self) -> None:
        path = self.settings.state_file
        if path is None:
            return
        remove_stale_temporaries(path)
        components, self._resume = self._resume, {}
        if not components:
            return
        log.info("resuming {n} component(s) from {path}", n=len(components), path=path)
        for component_id, config in components.items():
            if component_id in self.supervisor.components:
                continue
            started = Deferred.fromCoroutine(
                self.supervisor.start(component_id, config, wait_for_router=True)
            )
            started.addErrback(
                lambda failure, cid=component_id: log.error(
                    "resuming component {id} failed: {error}", id=cid, error=failure.value
                )
            )

    # -- shutdown -------------------------------------------------------------------------

    def _policy_shutdown(self, exit_code: int, why: str) -> None:
        log.info("shutting down ({why})", why=why)
        # a component's end may set it off: it is the worker's work, not the component's
        outside_components(
            lambda: Deferred.fromCoroutine(self.shutdown("policy", exit_code, why)))

    async def shutdown(
        self, reason: str = "requested", exit_code: int = EXIT_CLEAN, why: str = ""
    ) -> list[str]:
        """Stop every component, then (after the caller got its answer) leave and exit."""
        if self._stopped_ids is not None:
            return await share(self._stopped_ids)
        self._shutdown_started = True
        if self.watcher is not None:
            self.watcher.stop()
        self._stopped_ids = Deferred.fromCoroutine(self.supervisor.shutdown())
        stopped = await share(self._stopped_ids)
        if self.settings.state_file is not None and reason in ("policy",):
            self.write_checkpoint()
        self.reactor.callLater(0, lambda: Deferred.fromCoroutine(
            self._leave_and_exit(reason, exit_code, why, stopped)))
        return stopped

    async def _leave_and_exit(
        self, reason: str, exit_code: int, why: str, stopped: list[str]
    ) -> None:
        session = self.api.session
        if session is not None and session.is_attached():
            event = {"worker": self.settings.worker_id, "reason": reason, "why": why,
                     "exit_code": exit_code, "stopped": stopped}
            try:
                published = session.publish(
                    f"{self.api.prefix}.on_shutdown", event,
                    options=PublishOptions(acknowledge=True, exclude_me=False),
                )
                await published.addTimeout(2.0, self.reactor)
            except Exception as error:
                log.warn("publishing on_shutdown failed: {error}", error=error)
            self.api.detach()
            session.leave("wamp.close.normal", "worker shutting down")
        self._stop_service()
        self._finish(exit_code)

    def _stop_service(self) -> None:
        if self._service is not None and self._service.running:
            stopping = self._service.stopService()
            stopping.addErrback(lambda failure: None)

    def _finish(self, exit_code: int) -> None:
        if self.exit_code is None:
            self.exit_code = exit_code
            if self._checkpoint_call is not None and self._checkpoint_call.active():
                self._checkpoint_call.cancel()
            if self._stop_guard is not None:
                self._stop_guard.remove_source(self.supervisor.live_runs)
            outside_components(self.done.callback, exit_code)


def apply_process_options(options: ContainerOptions) -> None:
    """Options that act on this process: module search path, environment, title, CPUs, reactor.

    Call it before anything imports ``twisted.internet.reactor`` (the CLI does), after
    :func:`settings_from_arguments` has checked the options against this machine.
    """
    for entry in reversed(options.pythonpath):
        if entry not in sys.path:
            sys.path.insert(0, os.path.abspath(entry))
    for name, value in options.env.get("vars", {}).items():
        os.environ[name] = value
    if options.title:
        _set_title(options.title)
    if options.cpu_affinity is not None and hasattr(os, "sched_setaffinity"):
        _set_cpu_affinity(options.cpu_affinity)
    reactor_name = options.reactor.get(sys.platform)
    if reactor_name and "twisted.internet.reactor" not in sys.modules:
        _install_reactor(reactor_name)


def _set_title(title: str) -> None:
    import setproctitle

    setproctitle.setproctitle(title)


def _set_cpu_affinity(positions: Sequence[int]) -> None:
    cpus = cpus_at(positions, sorted(os.sched_getaffinity(0)))
    try:
        os.sched_setaffinity(0, cpus)
    except OSError as error:
        raise InvalidConfiguration(
            f"invalid container options: cpu_affinity: cannot run on CPUs {sorted(cpus)}: "
            f"{error.strerror}",
            key="cpu_affinity",
        ) from None


def cpus_at(positions: Sequence[int], available: Sequence[int]) -> set[int]:
    """The CPUs at ``positions`` in the sorted list of CPUs this process may use.

    That is what ``cpu_affinity`` means in Crossbar.io (``set_cpu_affinity(relative=True)``):
    ``[0, 1]`` are the first two CPUs the worker was allowed when it started, a negative
    position counts from the end; an empty list means all of them.
    """
    if not positions:
        return set(available)
    try:
        return {available[position] for position in positions}
    except IndexError:
        bad = [p for p in positions if not -len(available) <= p < len(available)]
        raise InvalidConfiguration(
            f"invalid container options: cpu_affinity: position {bad[0]} is out of range: "
            f"this worker may run on {len(available)} CPU(s) {list(available)}, and each "
            f"entry is a position in that list (0 to {len(available) - 1}, or negative from "
            "the end), as in Crossbar.io",
            key="cpu_affinity",
        ) from None


def _twisted_reactors() -> dict[str, Any]:
    """Twisted's own reactors by short name, without a plugin scan.

    ``twisted.application.reactors.getReactorTypes`` imports every plugin module when the
    plugin cache is stale, and txtorcon's plugin imports (so installs) the default reactor.
    """
    from twisted.application.reactors import Reactor
    from twisted.plugins import twisted_reactors

    found = vars(twisted_reactors).values()
    return {reactor.shortName: reactor for reactor in found if isinstance(reactor, Reactor)}


def _install_reactor(name: str) -> None:
    try:
        _twisted_reactors()[name].install()
    except Exception as error:
        raise InvalidConfiguration(
            f"invalid container options: reactor.{sys.platform}: cannot install the Twisted "
            f"reactor {name!r}: {error}",
            key=f"reactor.{sys.platform}",
        ) from None


def check_on_this_machine(options: ContainerOptions) -> ContainerOptions:
    """The options, checked against this process: CPU positions that exist, a reactor that
    Twisted knows; with a warning for what cannot take effect here."""
    warnings: list[ConfigWarning] = []
    if options.cpu_affinity is not None:
        if hasattr(os, "sched_getaffinity"):
            cpus_at(options.cpu_affinity, sorted(os.sched_getaffinity(0)))
        else:
            warnings.append(ConfigWarning(("cpu_affinity",), (
                f"has no effect: {sys.platform} has no process CPU affinity (Crossbar.io "
                "refuses it there)")))
    warnings += _reactor_warnings(options.reactor.get(sys.platform))
    if not warnings:
        return options
    return replace(options, warnings=(*options.warnings, *warnings))


def _reactor_warnings(name: str | None) -> list[ConfigWarning]:
    """Nothing when the reactor named for this platform can be (or already is) installed."""
    if not name:
        return []
    modules = {short: reactor.moduleName for short, reactor in _twisted_reactors().items()}
    if name not in modules:
        raise InvalidConfiguration(
            f"invalid container options: reactor.{sys.platform}: no Twisted reactor is named "
            f"{name!r} (known: {', '.join(sorted(modules))})",
            key=f"reactor.{sys.platform}",
        )
    installed = sys.modules.get("twisted.internet.reactor")
    if installed is None or type(installed).__module__ == modules[name]:
        return []
    return [ConfigWarning(("reactor", sys.platform), (
        f"has no effect: {name!r} cannot be installed, this process already runs "
        f"{type(installed).__name__} (installed before the options were read)"))]


def settings_from_arguments(
    worker_id: str,
    management_url: str,
    realm: str,
    prefix: str,
    options_json: str | None,
    credentials: Credentials | None,
    state_file: str | None,
    serializer: str = "cbor",
) -> WorkerSettings:
    """Validate the command line's values into settings (raising ``InvalidConfiguration``)."""
    try:
        options = json.loads(options_json) if options_json else {}
    except ValueError as error:
        raise InvalidConfiguration(f"--options: not valid JSON: {error}") from None
    return WorkerSettings(
        worker_id=worker_id,
        management=parse_management_url(management_url),
        realm=realm,
        prefix=prefix,
        options=check_on_this_machine(parse_container_options(options)),
        credentials=credentials,
        state_file=state_file,
        serializer=serializer,
    )


"""The container worker process: joins the management realm, serves the API, leaves cleanly.

:class:`Worker` is the process context: it owns the supervisor, the management API, the
connection to the management realm (a Twisted ``ClientService``, so a lost management
connection is retried with backoff while the components keep running), the checkpoint
(:class:`~container.worker.checkpointing.Checkpointer`), and the shutdown sequence. It
guards its reactor's ``stop`` so that a component's ``reactor.stop()`` ends that component
only (:mod:`container.worker.reactor_guard`). The reactor is given to it: only the CLI
touches the global reactor.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import txaio
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import CloseDetails, ComponentConfig, PublishOptions, SessionDetails
from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet.defer import CancelledError, Deferred, FirstError
from twisted.python.failure import Failure

from container.components import parse_component
from container.connector import build_endpoint
from container.context import outside_components
from container.deferreds import log_failure, share
from container.errors import ExitCode, InvalidConfiguration
from container.management import (
    REFUSALS,
    Credentials,
    ManagementAddress,
    parse_management_url,
    worker_prefix,
)
from container.management.client import AuthenticatingSession, client_factory
from container.options import ContainerOptions, parse_container_options
from container.worker.api import ManagementApi
from container.worker.checkpointing import Checkpointer
from container.worker.loader import Reloader, SourceWatcher
from container.worker.os_options import check_on_this_machine
from container.worker.reactor_guard import ReactorStopGuard, guard_reactor_stop
from container.worker.supervisor import Supervisor

log = txaio.make_logger()

PROCEDURE_EXISTS = "wamp.error.procedure_already_exists"


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
        return self.prefix or worker_prefix(self.worker_id)


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
        return {**super().get_status(), "checkpoint": self.worker.checkpoint.status()}


class Worker:
    """The process context of one container worker."""

    def __init__(self, reactor: Any, settings: WorkerSettings) -> None:
        self.reactor = reactor
        self.settings = settings
        self.started_wall = datetime.now(UTC)
        self.exit_code: int | None = None
        self.done: Deferred[int] = Deferred()
        self.checkpoint = Checkpointer(reactor, settings.state_file, settings.worker_id,
                                       lambda: self.supervisor.resumable())
        self.supervisor = Supervisor(
            reactor,
            settings.options,
            emit=lambda topic, payload: self.api.publish(topic, payload),
            request_shutdown=self._policy_shutdown,
            reloader=Reloader(),
            controller=lambda: self.api.session,
            on_change=self.checkpoint.soon,
        )
        self.api = WorkerApi(self.supervisor, settings.worker_id, settings.uri_prefix,
                             self.shutdown)
        self.api.worker = self
        self.watcher = self._source_watcher()
        self._service: ClientService | None = None
        self._joined_once = False
        self._shutdown_started = False
        self._stopped_ids: Deferred[list[str]] | None = None
        self._stop_guard: ReactorStopGuard | None = None

    def _source_watcher(self) -> SourceWatcher | None:
        watch = self.settings.options.watch
        if not watch.enabled:
            return None
        return SourceWatcher(self.reactor, self.supervisor.reloader, self._sources_changed,
                             watch.interval, watch.debounce)

    def _sources_changed(self, modules: list[str]) -> None:
        log.info("source changed: {modules}; reloading", modules=", ".join(modules))
        reloading = Deferred.fromCoroutine(self.supervisor.reload_and_restart(modules))
        log_failure(reloading, log, "worker {worker}: reloading {modules} and restarting",
                    worker=self.settings.worker_id, modules=", ".join(modules))

    # -- management connection ----------------------------------------------------------

    def start(self) -> None:
        """Connect to the management realm (retrying with backoff until it answers)."""
        for warning in self.settings.options.warnings:
            log.warn("options.{warning}", warning=warning)
        self.checkpoint.load()
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
        self.checkpoint.halt()
        session.leave("wamp.close.normal", "worker id in use")
        self._stop_service()
        self._finish(ExitCode.REFUSED)

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
            self._finish(ExitCode.REFUSED)
        elif not self._shutdown_started:
            log.warn("lost the management realm ({reason}); reconnecting, components keep "
                     "running", reason=details.reason)

    # -- resume ---------------------------------------------------------------------------

    def _resume_checkpoint(self) -> None:
        components = self.checkpoint.take_resumable()
        if not components:
            return
        log.info("resuming {n} component(s) from {path}", n=len(components),
                 path=self.checkpoint.path)
        for component_id, config in components.items():
            if component_id in self.supervisor.components:
                continue
            started = Deferred.fromCoroutine(self._resume_one(component_id, config))
            started.addErrback(self._resume_failed, component_id)

    def _resume_failed(self, failure: Failure, component_id: str) -> None:
        log.error("worker {worker}: resuming component {id} failed: {error}",
                  worker=self.settings.worker_id, id=component_id, error=failure.value)

    async def _resume_one(self, component_id: str, config: Any) -> dict[str, Any]:
        """Start a component of the checkpoint: its configuration is parsed here, at the
        edge, as the API parses a configuration it is sent."""
        spec = parse_component(config)
        return await self.supervisor.start(component_id, spec, wait_for_router=True)

    # -- shutdown -------------------------------------------------------------------------

    def _policy_shutdown(self, exit_code: int, why: str) -> None:
        log.info("shutting down ({why})", why=why)
        # a component's end may set it off: it is the worker's work, not the component's
        shutting_down = outside_components(
            lambda: Deferred.fromCoroutine(self.shutdown("policy", exit_code, why)))
        log_failure(shutting_down, log, "worker {worker}: shutting down ({why})",
                    worker=self.settings.worker_id, why=why)

    async def shutdown(
        self, reason: str = "requested", exit_code: int = ExitCode.OK, why: str = "",
        caller: Any = None,
    ) -> list[str]:
        """Stop every component, then (after the caller got its answer) leave and exit.
        ``caller`` (of the ``shutdown`` procedure) is named in the components' stop events."""
        if self._stopped_ids is not None:
            stopped_before: list[str] = await share(self._stopped_ids)
            return stopped_before
        self._shutdown_started = True
        self.checkpoint.halt()
        if self.watcher is not None:
            self.watcher.stop()
        self._stopped_ids = Deferred.fromCoroutine(self.supervisor.shutdown(caller))
        stopped: list[str] = await share(self._stopped_ids)
        if reason == "policy":
            self.checkpoint.write()
        self.reactor.callLater(0, self._leave_and_exit_soon, reason, exit_code, why, stopped)
        return stopped

    def _leave_and_exit_soon(
        self, reason: str, exit_code: int, why: str, stopped: list[str]
    ) -> None:
        leaving = Deferred.fromCoroutine(self._leave_and_exit(reason, exit_code, why, stopped))
        log_failure(leaving, log, "worker {worker}: leaving the management realm and exiting",
                    worker=self.settings.worker_id)

    async def _leave_and_exit(
        self, reason: str, exit_code: int, why: str, stopped: list[str]
    ) -> None:
        session = self.api.session
        if session is not None and session.is_attached():
            event = {"worker": self.settings.worker_id, "reason": reason, "why": why,
                     "exit_code": int(exit_code), "stopped": stopped}
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
            stopping.addErrback(lambda failure: log.warn(
                "worker {worker}: closing the management connection failed: {error}",
                worker=self.settings.worker_id, error=failure.value))

    def _finish(self, exit_code: int) -> None:
        if self.exit_code is None:
            self.exit_code = exit_code
            self.checkpoint.cancel()
            if self._stop_guard is not None:
                self._stop_guard.remove_source(self.supervisor.live_runs)
            outside_components(self.done.callback, exit_code)


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

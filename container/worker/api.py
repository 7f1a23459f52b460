"""The management API: procedures and lifecycle events on the management realm.

Every procedure is registered under an explicit URI ``PREFIX.NAME``; domain errors become
``ApplicationError``s in one place (:func:`_as_application_error`); every event goes out
through :meth:`ManagementApi.publish`, which logs a publish that fails. The names and
payloads are listed in ``docs/management-api.md``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import txaio
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import CallDetails, PublishOptions, RegisterOptions
from twisted.internet.defer import Deferred, DeferredList, fail, succeed
from twisted.python.failure import Failure

from container.components import ComponentSpec, parse_component
from container.errors import ContainerError, InvalidConfiguration
from container.worker.supervisor import Supervisor

log = txaio.make_logger()

# the procedures that report who called them; the others skip autobahn's CallDetails
WANTS_CALLER = frozenset({"stop_component", "restart_component"})


def _as_application_error(error: ContainerError) -> ApplicationError:
    return ApplicationError(error.uri, str(error), **error.details)


def _caller(details: CallDetails | None) -> dict[str, Any] | None:
    if details is None:
        return None
    return {
        "session": details.caller,
        "authid": details.caller_authid,
        "authrole": details.caller_authrole,
    }


def _require_id(component_id: Any) -> str:
    if not isinstance(component_id, str) or not component_id:
        raise InvalidConfiguration(
            f"component_id: must be a non-empty string, got {component_id!r}",
            key="component_id",
        )
    return component_id


class ManagementApi:
    """Serves one worker's supervisor on the management realm, under ``prefix``."""

    def __init__(
        self,
        supervisor: Supervisor,
        worker_id: str,
        prefix: str,
        shutdown: Callable[[str], Awaitable[list[str]]],
    ) -> None:
        self.supervisor = supervisor
        self.worker_id = worker_id
        self.prefix = prefix
        self.session: Any = None
        self._shutdown = shutdown

    # -- wiring -------------------------------------------------------------------------------

    def procedures(self) -> dict[str, Callable[..., Any]]:
        """The procedures, by the URI suffix each is registered under (after ``PREFIX.``).

        The wire name is written here, once, and does not follow the Python name: renaming a
        method cannot change the API. The URIs are listed in ``docs/management-api.md``.
        """
        return {
            "start_component": self.start_component,
            "stop_component": self.stop_component,
            "restart_component": self.restart_component,
            "get_component": self.get_component,
            "get_components": self.get_components,
            "get_status": self.get_status,
            "shutdown": self.shutdown,
        }

    async def attach(self, session: Any) -> None:
        """Register every procedure on a (re)joined management session."""
        self.session = session
        registrations = [
            session.register(
                _guarded(procedure), f"{self.prefix}.{name}",
                options=RegisterOptions(details_arg="details") if name in WANTS_CALLER else None,
            )
            for name, procedure in self.procedures().items()
        ]
        await DeferredList(registrations, fireOnOneErrback=True, consumeErrors=True)

    def detach(self) -> None:
        self.session = None

    def publish(self, topic: str, payload: dict[str, Any], acknowledge: bool = False) -> None:
        """Publish ``PREFIX.topic`` to every subscriber, the caller included.

        Lifecycle events go out unacknowledged: an acknowledgement is one more message per
        event through the router, on the path of every component start (docs/benchmarks.md).
        ``on_worker_ready`` is acknowledged, so a router that refuses our publications is
        reported in the log once per join rather than never.
        """
        session = self.session
        event = {"worker": self.worker_id, **payload}
        if session is None or not session.is_attached():
            log.debug("not connected to the management realm: event {topic} dropped", topic=topic)
            return
        uri = f"{self.prefix}.{topic}"
        try:
            published = session.publish(
                uri, event, options=PublishOptions(acknowledge=acknowledge, exclude_me=False)
            )
        except Exception as error:
            log.warn("publishing {uri} failed: {error}", uri=uri, error=_describe(error))
            return
        if published is not None:
            published.addErrback(
                lambda failure: log.warn("publishing {uri} failed: {error}", uri=uri,
                                         error=_describe(failure.value))
            )

    # -- procedures -----------------------------------------------------------------------

    # Each returns its answer or the coroutine that produces it (run by ``_guarded``); none
    # awaits in a frame of its own, so a pending start holds only the supervisor's frames.

    def start_component(
        self,
        component_id: str,
        config: dict[str, Any],
        reload_modules: bool = False,
        wait_for_router: bool = False,
    ) -> Coroutine[Any, Any, dict[str, Any]]:
        component_id = _require_id(component_id)
        spec = parse_component(config)
        _release(config, spec)
        return self.supervisor.start(
            component_id, spec, bool(reload_modules), bool(wait_for_router)
        )

    def stop_component(
        self, component_id: str, details: CallDetails | None = None
    ) -> Coroutine[Any, Any, dict[str, Any]]:
        return self.supervisor.stop(_require_id(component_id), _caller(details))

    def restart_component(
        self, component_id: str, reload_modules: bool = False, details: CallDetails | None = None
    ) -> Coroutine[Any, Any, dict[str, Any]]:
        return self.supervisor.restart(
            _require_id(component_id), bool(reload_modules), _caller(details)
        )

    def get_component(self, component_id: str) -> dict[str, Any]:
        return self.supervisor.get(_require_id(component_id))

    def get_components(self, full: bool = False) -> list[Any]:
        return self.supervisor.list(full=bool(full))

    def get_status(self) -> dict[str, Any]:
        return {"id": self.worker_id, "prefix": self.prefix, **self.supervisor.status()}

    def shutdown(self) -> Awaitable[list[str]]:
        return self._shutdown("requested")


def _guarded(procedure: Callable[..., Any]) -> Callable[..., Deferred[Any]]:
    """Run a procedure for autobahn: a ``ContainerError`` becomes its ``ApplicationError``,
    arguments that do not fit the signature become ``wamp.error.invalid_argument``."""

    def call(*args: Any, **kwargs: Any) -> Deferred[Any]:
        try:
            answer = procedure(*args, **kwargs)
        except ContainerError as error:
            return fail(_as_application_error(error))
        except TypeError as error:
            return fail(ApplicationError("wamp.error.invalid_argument",
                                         f"invalid arguments: {error}"))
        if isinstance(answer, Coroutine):
            answer = Deferred.fromCoroutine(answer)
        elif not isinstance(answer, Deferred):
            return succeed(answer)
        return answer.addErrback(_translate)

    return call


def _translate(failure: Failure) -> Failure:
    error = failure.value
    if isinstance(error, ContainerError):
        return Failure(_as_application_error(error))  # type: ignore[no-untyped-call]
    return failure


def _release(config: Any, spec: ComponentSpec) -> None:
    """Empty the call's decoded configuration once the worker has its own copy.

    autobahn holds a call's arguments until the call returns, and a start returns only when
    the component has joined: a burst of concurrent starts would hold one decoded copy per
    pending start for the whole burst (docs/benchmarks.md). The dict was decoded for this
    call alone; the spec keeps the configuration (``spec.raw``, shared by
    the components started from it). A configuration the spec refers to is kept.
    """
    if isinstance(config, dict) and spec.raw is not config:
        config.clear()


def _describe(error: BaseException) -> str:
    """A one-line account of a failed publication (an ``ApplicationError`` prints as '')."""
    if isinstance(error, ApplicationError):
        return f"{error.error}: {error.error_message() or ''}".rstrip(": ")
    return f"{type(error).__name__}: {error}"

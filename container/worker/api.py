"""The management API: procedures and lifecycle events on the management realm.

Every procedure is registered under an explicit URI ``PREFIX.NAME``; domain errors become
``ApplicationError``s in one place (:func:`_as_application_error`); every event goes out
through :meth:`ManagementApi.publish`, which logs a publish that fails. The names and
payloads are listed in ``docs/management-api.md``.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Protocol, cast

import txaio
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import CallDetails, PublishOptions, RegisterOptions
from twisted.internet.defer import Deferred, DeferredList, fail, succeed
from twisted.python.failure import Failure

from container.components import ComponentSpec, component_id_problem, parse_component
from container.errors import ContainerError, InvalidArgument, InvalidConfiguration
from container.validation import wrong_type
from container.worker.outcome import describe_error
from container.worker.supervisor import Supervisor

log = txaio.make_logger()

# the procedures that report who called them; the others skip autobahn's CallDetails
WANTS_CALLER = frozenset({"stop_component", "restart_component", "shutdown"})


class Shutdown(Protocol):
    """The worker's shutdown: stops every component, returns their ids."""

    def __call__(self, reason: str = ..., *, caller: Any = None) -> Awaitable[list[str]]: ...


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
    """The id, if it is one (:func:`~container.components.component_id_problem`)."""
    problem = component_id_problem(component_id)
    if problem is not None:
        raise InvalidConfiguration(f"component_id: {problem}", key="component_id")
    return cast(str, component_id)


def _flag(name: str, value: Any) -> bool:
    """A flag, which must be a real boolean: to Python, ``"false"``, ``"no"`` and ``1`` are
    all true, and a client in another language that sent them meant something else."""
    if isinstance(value, bool):
        return value
    raise InvalidArgument(f"{name}: {wrong_type(['boolean'], value)}", argument=name)


class ManagementApi:
    """Serves one worker's supervisor on the management realm, under ``prefix``."""

    def __init__(
        self,
        supervisor: Supervisor,
        worker_id: str,
        prefix: str,
        shutdown: Shutdown,
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
                _guarded(name, procedure), f"{self.prefix}.{name}",
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
            log.warn("publishing {uri} failed: {error}", uri=uri, error=describe_error(error))
            return
        if published is not None:
            published.addErrback(
                lambda failure: log.warn("publishing {uri} failed: {error}", uri=uri,
                                         error=describe_error(failure.value))
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
        reload_modules = _flag("reload_modules", reload_modules)
        wait_for_router = _flag("wait_for_router", wait_for_router)
        spec = parse_component(config)
        _release(config, spec)
        return self.supervisor.start(component_id, spec, reload_modules, wait_for_router)

    def stop_component(
        self, component_id: str, details: CallDetails | None = None
    ) -> Coroutine[Any, Any, dict[str, Any]]:
        return self.supervisor.stop(_require_id(component_id), _caller(details))

    def restart_component(
        self, component_id: str, reload_modules: bool = False, details: CallDetails | None = None
    ) -> Coroutine[Any, Any, dict[str, Any]]:
        return self.supervisor.restart(
            _require_id(component_id), _flag("reload_modules", reload_modules), _caller(details)
        )

    def get_component(self, component_id: str) -> dict[str, Any]:
        return self.supervisor.get(_require_id(component_id))

    def get_components(self, full: bool = False) -> list[Any]:
        return self.supervisor.list(full=_flag("full", full))

    def get_status(self) -> dict[str, Any]:
        return {"id": self.worker_id, "prefix": self.prefix, **self.supervisor.status()}

    def shutdown(self, details: CallDetails | None = None) -> Awaitable[list[str]]:
        return self._shutdown("requested", caller=_caller(details))


def _guarded(name: str, procedure: Callable[..., Any]) -> Callable[..., Deferred[Any]]:
    """Run a procedure for autobahn: a ``ContainerError`` becomes its ``ApplicationError``,
    arguments that do not fit the signature become ``wamp.error.invalid_argument``.

    The arguments are fitted to the procedure's public parameters (not autobahn's
    ``details``) before it runs, and a mismatch is said in the API's own words: Python's
    would count its hidden ``self`` and speak of keyword arguments a client never sent.
    """
    wants_caller = name in WANTS_CALLER
    parameters = [parameter for parameter in inspect.signature(procedure).parameters.values()
                  if parameter.name != "details"]
    usage = _usage(name, parameters)

    def call(*args: Any, **kwargs: Any) -> Deferred[Any]:
        details = kwargs.pop("details", None) if wants_caller else None
        try:
            _fit(usage, parameters, args, kwargs)
            if wants_caller:
                kwargs["details"] = details
            answer = procedure(*args, **kwargs)
        except ContainerError as error:
            return fail(_as_application_error(error))
        if isinstance(answer, Coroutine):
            answer = Deferred.fromCoroutine(answer)
        elif not isinstance(answer, Deferred):
            return succeed(answer)
        return answer.addErrback(_translate)

    return call


def _usage(name: str, parameters: Sequence[inspect.Parameter]) -> str:
    """``start_component(component_id, config, reload_modules=false, ...)``: the procedure
    as a client calls it (defaults as JSON)."""
    shown = [parameter.name if parameter.default is parameter.empty
             else f"{parameter.name}={json.dumps(parameter.default)}"
             for parameter in parameters]
    return f"{name}({', '.join(shown)})"


def _fit(
    usage: str, parameters: Sequence[inspect.Parameter], args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> None:
    """Raise :class:`InvalidArgument` if the call's arguments do not fit ``parameters``."""
    names = [parameter.name for parameter in parameters]
    by_position = names[: len(args)]
    unknown = [key for key in kwargs if key not in names]
    twice = [key for key in kwargs if key in by_position]
    missing = [parameter.name for parameter in parameters if parameter.default is
               parameter.empty and parameter.name not in by_position and parameter.name
               not in kwargs]
    argument = None
    if len(args) > len(names):
        counted = f"{len(names)} positional argument{'' if len(names) == 1 else 's'}"
        problem = (f"takes at most {counted}" if names else "takes no positional arguments")
        problem += f", got {len(args)}"
    elif unknown:
        argument = unknown[0]
        problem = f"no argument named '{argument}'"
    elif twice:
        argument = twice[0]
        problem = f"argument '{argument}' given twice (by position and by name)"
    elif missing:
        argument = missing[0]
        problem = f"missing argument '{argument}'"
    else:
        return
    raise InvalidArgument(f"{usage}: {problem}", argument=argument)


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


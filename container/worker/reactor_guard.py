"""One component must not stop the process: a component's ``reactor.stop()`` ends only it.

Component code written to run on its own often ends with ``reactor.stop()``; inside a worker
that would stop every component. :class:`ReactorStopGuard` replaces the worker's reactor's
``stop`` (the reactor is given to it: it never touches the global one) and traces each call
to the component that made it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any, cast

import txaio

from container.context import _running
from container.worker.run import SessionRun
from container.worker.session import SupervisedSession

_guard_log = txaio.make_logger()


class _Ambiguous:
    """Component code called ``reactor.stop()``, but which component's cannot be told."""

    def __init__(self, module: str, ids: list[str]) -> None:
        self.module = module
        self.ids = ids


RunSource = Callable[[], Iterable[SessionRun]]


class ReactorStopGuard:
    """``reactor.stop()`` called by a hosted component's code ends that component only.

    Installed on the worker's reactor (:func:`guard_reactor_stop`), it replaces the
    reactor's ``stop``. A call is traced to a component by, in turn:

    1. the component context (``container.context``) the container sets around all of a
       component's code -- construction, every message the router sends it, its
       transport's end -- and which Twisted carries through its coroutines;
    2. the call stack: a frame whose ``self`` or ``session`` is a hosted session;
    3. the call stack: a frame of a module a hosted component was loaded from (imported
       after the guard was installed, so never the worker's or a library's), when only one
       running component comes from it (when several do, the call is refused and logged:
       it is some component's, never the worker's).

    A traced call makes that component leave its realm (stop reason ``left``); any other
    call -- the worker's own, at its end -- stops the reactor. ``reactor.callLater(t,
    reactor.stop)`` made by a component is traced when it is made.
    """

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        self._real_stop = reactor.stop
        self._real_call_later = reactor.callLater
        self._sources: list[RunSource] = []
        # modules loaded before any component (the worker's, its libraries') are never a
        # component's own, whatever a classname says
        self._baseline = frozenset(sys.modules)

    def install(self) -> None:
        self._reactor.stop = self.stop
        self._reactor.callLater = self.call_later

    def add_source(self, source: RunSource) -> None:
        """Where the runs to search come from (a supervisor's components)."""
        self._sources.append(source)

    def remove_source(self, source: RunSource) -> None:
        if source in self._sources:
            self._sources.remove(source)

    def stop(self) -> None:
        self._stop_for(self.attribute(), "called reactor.stop()")

    def call_later(self, delay: float, function: Any, *args: Any, **kwargs: Any) -> Any:
        if function == self.stop:
            owner = self.attribute()
            if owner is not None:
                return self._real_call_later(delay, self._stop_for, owner,
                                             "called reactor.stop() (from reactor.callLater)")
        return self._real_call_later(delay, function, *args, **kwargs)

    def _stop_for(self, owner: SessionRun | _Ambiguous | None, what: str) -> None:
        if owner is None:
            self._real_stop()
        elif isinstance(owner, _Ambiguous):
            _guard_log.warn(
                "code of module {module}, shared by components {ids}, {what}: ignored; the "
                "worker and its components keep running", module=owner.module,
                ids=", ".join(owner.ids), what=what)
        else:
            owner.component_exit(f"the component {what}")

    def attribute(self) -> SessionRun | _Ambiguous | None:
        """The run whose component's code is calling, if any (see the class docstring)."""
        run = _running.get()
        if run is not None:
            return cast(SessionRun, run)
        frame: FrameType | None = sys._getframe(1)
        by_module: dict[str, list[SessionRun]] | None = None
        while frame is not None:
            code = frame.f_code
            for name in ("self", "session"):
                if name in code.co_varnames:
                    candidate = frame.f_locals.get(name)
                    if isinstance(candidate, SupervisedSession):
                        return candidate._container_run
            if by_module is None:
                by_module = self._runs_by_module()
            runs = by_module.get(frame.f_globals.get("__name__", ""))
            if runs:
                if len(runs) == 1:
                    return runs[0]
                return _Ambiguous(frame.f_globals["__name__"],
                                  sorted(str(run.component_id) for run in runs))
            frame = frame.f_back
        return None

    def _runs_by_module(self) -> dict[str, list[SessionRun]]:
        by_module: dict[str, list[SessionRun]] = {}
        for source in self._sources:
            for run in source():
                if not run.closed:
                    for module in run.spec.modules:
                        if module not in self._baseline:
                            by_module.setdefault(module, []).append(run)
        return by_module


def guard_reactor_stop(reactor: Any, source: RunSource) -> ReactorStopGuard:
    """Install the :class:`ReactorStopGuard` on ``reactor`` (once) and search ``source``."""
    guard = getattr(reactor, "_container_stop_guard", None)
    if guard is None:
        guard = ReactorStopGuard(reactor)
        guard.install()
        reactor._container_stop_guard = guard
    guard.add_source(source)
    return guard

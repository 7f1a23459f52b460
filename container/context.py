"""What code inside a hosted component may ask the container for.

The container runs every piece of a component's code with a context variable naming the
component: building its session, each message from the router (so every handler, ``onJoin``,
``onLeave``, ``onDisconnect``), and the transport's opening and end. Twisted keeps a
coroutine's context across its awaits, so an ``onJoin`` that loops for ever still runs as
its component. That is how ``ready()`` knows whom it is about, and how a ``reactor.stop()``
is traced to the component that called it (see ``container.worker.reactor_guard``).

Code that does not import this module needs nothing from it: a component that never calls
:func:`ready` becomes ready when its ``onJoin`` finishes or after the ready grace period.
Outside the container (a script run on its own) every function here is a harmless no-op.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, TypeVar

__all__ = ["component_logger", "current_component", "outside_components", "ready"]

# the SessionRun whose component's code is running (None: the container's own code)
_running: ContextVar[Any] = ContextVar("wamp_container_component", default=None)

T = TypeVar("T")


def _run_of(session: Any) -> Any:
    if session is None:
        return _running.get()
    return getattr(session, "_container_run", None)


def ready(session: Any = None) -> bool:
    """Say that this component is ready, although its ``onJoin`` goes on running.

    ``start_component`` returns at that moment (if the component is being started), so a
    component that registers its procedures and then loops can call it right after the
    registrations::

        from container.context import ready

        class Ticker(ApplicationSession):
            async def onJoin(self, details):
                await self.register(self.now, "com.example.now")
                ready(self)
                while True:
                    self.publish("com.example.tick")
                    await sleep(1)

    ``session`` is the component's session; without it, the component whose code is
    running. Returns whether the component is now ready (False before it joined its realm,
    after its session ended, and outside the container).
    """
    run = _run_of(session)
    return bool(run is not None and run.declare_ready())


def current_component() -> str | None:
    """The id of the component whose code is running, or None (not inside a component)."""
    run = _running.get()
    return None if run is None else run.component_id


def component_logger() -> Any:
    """The logger of the component whose code is running (every line tagged with its id),
    or None outside a component."""
    run = _running.get()
    return None if run is None else run.log


def outside_components(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call ``function`` as the container's own code, not any component's.

    Coroutines and Deferreds started inside it do not inherit a component's context: the
    worker uses it for work a component's event may set off (a shutdown), so that work is
    never taken for the component's.
    """
    token = _running.set(None)
    try:
        return function(*args, **kwargs)
    finally:
        _running.reset(token)

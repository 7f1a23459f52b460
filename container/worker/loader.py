"""Importing component code by dotted name, and reloading user modules that changed.

Import errors are classified (module not found, syntax error, error while importing, no
such attribute, not a session class or component object) so the caller is told which,
with the module search path. Reloading is all-or-nothing: if one changed module fails to
reload, every module of the batch gets its previous namespace back, so no component runs
half-replaced code.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, cast

import txaio
from autobahn.wamp import protocol

from container.deferreds import log_failure
from container.errors import ClassImportFailed

_log = txaio.make_logger()


def _split(dotted: str) -> tuple[str, str]:
    module_name, _, attribute = dotted.rpartition(".")
    return module_name, attribute


def import_module(module_name: str) -> ModuleType:
    """Import a module, turning every failure into a ``ClassImportFailed`` that says why.

    Any name ``importlib`` can import is fine, as in Crossbar.io: a file
    ``publisher-subscriber.py`` on the path is module ``publisher-subscriber``.
    """
    try:
        return _import_fresh(module_name)
    except ModuleNotFoundError as error:
        problem = f"module '{error.name}' not found"
    except SyntaxError as error:
        problem = f"syntax error in {error.filename}, line {error.lineno}: {error.msg}"
    except Exception as error:
        problem = f"importing it raised {type(error).__name__}: {error}"
    raise ClassImportFailed(
        f"cannot import module '{module_name}': {problem}; module search path: {sys.path}",
        module=module_name,
        pythonpath=list(sys.path),
    )


def _import_fresh(module_name: str) -> ModuleType:
    """Import; if the module is not found, forget the cached directory listings and try once
    more, so a file written a moment ago (within the file system's timestamp granularity of
    the last lookup in its folder) is found."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        missing = error.name or ""
        if module_name != missing and not module_name.startswith(f"{missing}."):
            raise  # the module exists; something it imports does not
    importlib.invalidate_caches()
    return importlib.import_module(module_name)


def load_attribute(dotted: str) -> Any:
    """The object named by ``package.module.name``."""
    module_name, attribute = _split(dotted)
    if not module_name:
        raise ClassImportFailed(
            f"'{dotted}' names no module: write module.Name (a module, a dot, a name in it)",
            pythonpath=list(sys.path),
        )
    module = import_module(module_name)
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise ClassImportFailed(
            f"module '{module_name}' ({module.__file__}) has no attribute '{attribute}'",
            module=module_name,
            pythonpath=list(sys.path),
        ) from None


def _is_session_class(candidate: Any) -> bool:
    """Whether autobahn's Twisted transport factories can run sessions of this class.

    They run any ``autobahn.wamp.protocol.ApplicationSession``: the Twisted
    ``ApplicationSession`` and the newer ``autobahn.twisted.wamp.Session`` are both. (An
    asyncio session cannot get this far: importing ``autobahn.asyncio`` in a Twisted
    process fails, which is reported as the import failure it is.)
    """
    return isinstance(candidate, type) and issubclass(candidate, protocol.ApplicationSession)


def _is_component_object(candidate: Any) -> bool:
    """An ``autobahn.twisted.component.Component`` (autobahn's newer API) object."""
    from autobahn.wamp.component import Component

    return isinstance(candidate, Component)


def _is_application_object(candidate: Any) -> bool:
    """An ``autobahn.twisted.wamp.Application`` (autobahn's decorator API) object."""
    from autobahn.twisted.wamp import Application

    return isinstance(candidate, Application)


def load_session_class(classname: str) -> type[protocol.ApplicationSession]:
    """The session class named by ``classname``: any autobahn ``ApplicationSession``."""
    candidate = load_attribute(classname)
    if not _is_session_class(candidate):
        raise _not_a_session(classname, candidate)
    return cast(type[protocol.ApplicationSession], candidate)


def load_class_component(classname: str) -> Any:
    """What a ``class`` component's ``classname`` names: a session class (autobahn's
    ``ApplicationSession`` or ``Session``, or a subclass), an
    ``autobahn.twisted.component.Component`` object, or an
    ``autobahn.twisted.wamp.Application`` object."""
    candidate = load_attribute(classname)
    if _is_session_class(candidate) or _is_component_object(candidate) or (
        _is_application_object(candidate)
    ):
        return candidate
    raise _not_a_session(classname, candidate)


def _not_a_session(classname: str, candidate: Any) -> ClassImportFailed:
    return ClassImportFailed(
        f"'{classname}' is not a session class: it is {describe_object(candidate)}, which is "
        "neither a "
        "subclass of autobahn's ApplicationSession (autobahn.twisted.wamp.ApplicationSession "
        "or autobahn.twisted.wamp.Session) nor an autobahn.twisted.component.Component or "
        "autobahn.twisted.wamp.Application object",
        pythonpath=list(sys.path),
    )


def describe_object(value: Any) -> str:
    """What a name points to, in words: a repr would show a function's memory address."""
    if inspect.isclass(value):
        return f"a class ({value.__module__}.{value.__qualname__})"
    if inspect.isroutine(value):
        module = getattr(value, "__module__", None)
        name = getattr(value, "__qualname__", None) or getattr(value, "__name__", "?")
        return f"a function ({module}.{name})" if module else f"a function ({name})"
    if inspect.ismodule(value):
        return f"a module ({value.__name__})"
    if value is None:
        return "None"
    for plain, words in ((bool, "a boolean"), (int, "an integer"), (float, "a number"),
                         (str, "a string")):
        if type(value) is plain:
            shown = f"'{value[:40]}'" if isinstance(value, str) else str(value)
            return f"{words} ({shown})"
    kind = type(value)
    return f"an instance of {kind.__module__}.{kind.__qualname__}"


def load_callbacks(callbacks: dict[str, str]) -> dict[str, Callable[..., Any]]:
    """The callables for a ``function`` component's ``callbacks`` map."""
    loaded = {}
    for event, dotted in callbacks.items():
        function = load_attribute(dotted)
        if not callable(function):
            raise ClassImportFailed(f"callback '{event}': '{dotted}' is not callable")
        loaded[event] = function
    return loaded


def _module_source(module: ModuleType) -> str | None:
    path = getattr(module, "__file__", None)
    return path if path and path.endswith(".py") else None


def _mtime(path: str) -> float | None:
    try:
        return os.stat(path).st_mtime_ns / 1e9
    except OSError:
        return None


@dataclass
class Reloader:
    """Knows which modules are user modules (imported after the worker started) and reloads
    those whose source file changed since they were (re)loaded."""

    baseline: frozenset[str] = field(default_factory=lambda: frozenset(sys.modules))
    _seen: dict[str, float] = field(default_factory=dict)
    _examined: set[str] = field(default_factory=set)
    _modules_seen: int = 0

    def user_modules(self) -> dict[str, ModuleType]:
        return {
            name: module
            for name, module in list(sys.modules.items())
            if name not in self.baseline and module is not None and _module_source(module)
        }

    def track(self, thorough: bool = False) -> None:
        """Remember the source mtime of user modules not seen before (call after imports).

        Called on every start: a start that imported nothing (sys.modules is as large as
        at the last call) costs a length check; otherwise only names not examined before
        are looked at, not all of sys.modules. ``thorough`` skips the length check (a
        module removed and another imported in between leave the length unchanged).
        """
        modules = sys.modules
        if len(modules) == self._modules_seen and not thorough:
            return
        self._modules_seen = len(modules)
        for name in modules.keys() - self._examined:
            module = modules.get(name)
            if module is None:
                continue
            self._examined.add(name)
            source = None if name in self.baseline else _module_source(module)
            mtime = _mtime(source) if source else None
            if mtime is not None:
                self._seen.setdefault(name, mtime)

    def changed(self) -> list[str]:
        """User modules whose source changed since they were loaded, in import order."""
        self.track(thorough=True)
        modules = self.user_modules()
        return [
            name
            for name, loaded in self._seen.items()
            if name in modules and _mtime(_module_source(modules[name]) or "") != loaded
        ]

    def reload_changed(self) -> list[str]:
        """Reload every changed user module; on any failure restore them all and raise."""
        names = self.changed()
        self.reload(names)
        return names

    def reload(self, names: Iterable[str]) -> None:
        saved: dict[str, dict[str, Any]] = {}
        try:
            for name in names:
                module = sys.modules[name]
                saved[name] = dict(module.__dict__)
                self._reload_one(name, module)
        except ClassImportFailed:
            for name, namespace in saved.items():
                restored = sys.modules.get(name)
                if restored is not None:
                    restored.__dict__.clear()
                    restored.__dict__.update(namespace)
            raise
        for name in saved:
            mtime = _mtime(_module_source(sys.modules[name]) or "")
            if mtime is not None:
                self._seen[name] = mtime

    @staticmethod
    def _reload_one(name: str, module: ModuleType) -> None:
        importlib.invalidate_caches()
        try:
            importlib.reload(module)
        except SyntaxError as error:
            problem = f"syntax error in {error.filename}, line {error.lineno}: {error.msg}"
        except Exception as error:
            problem = f"reloading it raised {type(error).__name__}: {error}"
        else:
            return
        raise ClassImportFailed(
            f"cannot reload module '{name}': {problem}; the previous code stays in use",
            module=name,
            pythonpath=list(sys.path),
        )


class SourceWatcher:
    """Development mode: notice changed user modules and report them once changes settle.

    Polls source modification times every ``interval`` seconds on the injected clock (no
    inotify dependency, works on every file system); reports a set of changed modules once
    it has stayed the same for ``debounce`` seconds, so an editor's burst of writes causes
    one restart, not several.
    """

    def __init__(
        self,
        clock: Any,
        reloader: Reloader,
        on_change: Callable[[list[str]], Any],
        interval: float = 1.0,
        debounce: float = 0.5,
    ) -> None:
        from twisted.internet.task import LoopingCall

        self._clock = clock
        self._reloader = reloader
        self._on_change = on_change
        self._debounce = debounce
        self._interval = interval
        self._pending: tuple[tuple[str, float | None], ...] = ()
        self._pending_since = 0.0
        self._loop = LoopingCall(self.check)
        self._loop.clock = clock

    def start(self) -> None:
        # the loop ends only when stopped, or when a check raises: that must reach the log
        log_failure(self._loop.start(self._interval, now=False), _log,
                    "watching the component sources for changes")

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()

    def check(self) -> None:
        names = self._reloader.changed()
        signature = tuple((name, _mtime(_module_source(sys.modules[name]) or ""))
                          for name in names)
        now = self._clock.seconds()
        if signature != self._pending:
            self._pending, self._pending_since = signature, now
            return
        if signature and now - self._pending_since >= self._debounce:
            self._pending = ()
            self._on_change(names)

"""The development-mode source watcher on a fake clock, over real files: it reports a module
whose source changed once the changes settle, never one that did not change, and leaves no
timer behind once stopped."""

from __future__ import annotations

import importlib
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.task import Clock

from container.worker.loader import Reloader, SourceWatcher

INTERVAL = 1.0
DEBOUNCE = 0.5


class Sources:
    """Two user modules imported from a temporary folder, and a watcher over them."""

    def __init__(self, folder: Path, monkeypatch: Any) -> None:
        self.clock = Clock()
        self.reloader = Reloader()  # the modules below are imported after it: user modules
        monkeypatch.syspath_prepend(str(folder))
        self.edited, self.untouched = (self._module(folder) for _ in range(2))
        self.reloader.track()
        self.reports: list[list[str]] = []
        self.watcher = SourceWatcher(self.clock, self.reloader, self._changed, INTERVAL,
                                     DEBOUNCE)

    @staticmethod
    def _module(folder: Path) -> str:
        name = f"watched_{uuid.uuid4().hex}"
        path = folder / f"{name}.py"
        path.write_text("VALUE = 1\n")
        _set_mtime(path, 1_000_000.0)
        importlib.invalidate_caches()
        importlib.import_module(name)
        return name

    def forget(self) -> None:
        self.watcher.stop()
        for name in (self.edited, self.untouched):
            sys.modules.pop(name, None)

    def _changed(self, modules: list[str]) -> None:
        """As the worker does: the changed modules are reloaded, so they are seen as new."""
        self.reports.append(modules)
        self.reloader.reload(modules)

    def touch(self, name: str, mtime: float) -> None:
        path = sys.modules[name].__file__
        assert path is not None
        _set_mtime(Path(path), mtime)

    def tick(self, times: int = 1) -> None:
        for _ in range(times):
            self.clock.advance(INTERVAL)


def _set_mtime(path: Path, mtime: float) -> None:
    os.utime(path, (mtime, mtime))


@pytest.fixture
def sources(tmp_path: Path, monkeypatch: Any) -> Iterator[Sources]:
    made = Sources(tmp_path, monkeypatch)
    yield made
    made.forget()


def test_a_changed_source_is_reported_once_the_change_settles(sources: Sources) -> None:
    sources.watcher.start()
    sources.tick(2)
    assert sources.reports == []
    sources.touch(sources.edited, 2_000_000.0)
    sources.tick()  # noticed; it must stay the same for the debounce period
    assert sources.reports == []
    sources.tick()
    assert sources.reports == [[sources.edited]]
    sources.tick(3)  # reloaded: the same file is not reported again
    assert sources.reports == [[sources.edited]]
    sources.watcher.stop()
    assert sources.clock.getDelayedCalls() == []


def test_an_unchanged_source_is_never_reported(sources: Sources) -> None:
    sources.watcher.start()
    sources.touch(sources.untouched, 1_000_000.0)  # written again, same modification time
    sources.tick(5)
    assert sources.reports == []
    sources.touch(sources.edited, 2_000_000.0)
    sources.tick(2)
    assert sources.reports == [[sources.edited]]  # the untouched module is not in it
    sources.watcher.stop()
    assert sources.clock.getDelayedCalls() == []


def test_a_burst_of_writes_is_reported_once(sources: Sources) -> None:
    sources.watcher.start()
    sources.touch(sources.edited, 2_000_000.0)
    sources.tick()
    sources.touch(sources.edited, 2_000_001.0)  # the editor writes again: wait once more
    sources.tick()
    assert sources.reports == []
    sources.tick()
    assert sources.reports == [[sources.edited]]
    sources.watcher.stop()
    assert sources.clock.getDelayedCalls() == []


def test_a_stopped_watcher_leaves_no_timer_and_reports_nothing(sources: Sources) -> None:
    sources.watcher.start()
    assert len(sources.clock.getDelayedCalls()) == 1
    sources.watcher.stop()
    sources.touch(sources.edited, 2_000_000.0)
    sources.tick(3)
    assert sources.reports == []
    sources.watcher.stop()  # a second stop is harmless
    assert sources.clock.getDelayedCalls() == []

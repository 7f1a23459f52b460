"""Watching a guest's source folders, and restarting the guest when a file under them changes.

Crossbar.io's guest option ``watch`` (``directories``, ``action``, ``timeout``) as the node
runs it: :class:`DirectoryWatcher` polls file signatures on the reactor it is given (no
thread, no extra dependency, and a test drives it with ``task.Clock``), and
:func:`restart_on_change` wires a guest's watcher to :meth:`Supervised.restart`.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from container.management import RUN_FOLDER
from container.node.guest import GuestLaunch
from container.node.procs import Supervised

__all__ = [
    "DirectoryWatcher",
    "Signature",
    "first_change",
    "restart_on_change",
    "scan_files",
]

log = Logger()

#: Folders no guest's sources live in: version control, bytecode caches, and the node's own
#: run directory (its checkpoints change all the time, and watching "." would see them).
IGNORED_DIRS = frozenset({".git", ".hg", ".svn", "__pycache__", RUN_FOLDER})
IGNORED_SUFFIXES = (".pyc", ".pyo")
#: A watcher stats at most this many files per poll: it runs on the reactor thread.
MAX_WATCHED_FILES = 10_000


Signature = tuple[int, int, int]  # (mtime_ns, size, inode) of a regular file


class DirectoryWatcher:
    """Calls ``on_change(path)`` once per burst of changes to files under ``directories``.

    Crossbar.io uses watchdog (a thread and inotify); we poll file signatures (mtime, size,
    inode) every ``interval`` seconds on the reactor we are given, so it needs no extra
    dependency and a test drives it with ``task.Clock``. A burst is a run of polls that each
    see a change; ``on_change`` gets its first changed path after the first quiet poll, so an
    editor saving several files causes one call. A poll stats at most ``max_files`` files
    (it runs on the reactor thread) and skips VCS folders, ``__pycache__`` and the node's run
    directory.
    """

    def __init__(
        self,
        reactor: Any,
        directories: Iterable[Path],
        on_change: Callable[[str], None],
        interval: float = 1.0,
        *,
        max_files: int = MAX_WATCHED_FILES,
    ) -> None:
        self._reactor = reactor
        self._directories = [str(d) for d in directories]
        self._on_change = on_change
        self._interval = interval
        self._max_files = max_files
        self._snapshot: dict[str, Signature] = {}
        self._burst: str | None = None
        self._loop: LoopingCall | None = None
        self._warned = False

    @property
    def running(self) -> bool:
        return self._loop is not None

    def start(self) -> None:
        """Take the first snapshot now and poll from then on; a second start does nothing."""
        if self._loop is not None:
            return
        self._snapshot = self._scan()
        self._burst = None
        self._loop = LoopingCall(self._poll)
        self._loop.clock = self._reactor
        self._loop.start(self._interval, now=False).addErrback(self._loop_failed)

    def stop(self) -> None:
        """Stop polling (idempotent); a burst not yet reported is forgotten."""
        loop, self._loop = self._loop, None
        if loop is not None and loop.running:
            loop.stop()
        self._burst = None

    def _poll(self) -> None:
        current = self._scan()
        changed = first_change(self._snapshot, current)
        self._snapshot = current
        if changed is not None:
            self._burst = self._burst or changed
            return
        path, self._burst = self._burst, None
        if path is not None:
            self._report(path)

    def _report(self, path: str) -> None:
        try:
            self._on_change(path)
        except Exception:
            log.failure("watcher of {directories}: the change handler failed",
                        directories=self._directories)

    def _scan(self) -> dict[str, Signature]:
        found, complete = scan_files(self._directories, self._max_files)
        if not complete and not self._warned:
            self._warned = True
            log.warn("watcher of {directories}: more than {limit} files, watching only those",
                     directories=self._directories, limit=self._max_files)
        return found

    def _loop_failed(self, failure: Failure) -> None:
        self._loop = None
        log.failure("watcher of {directories} stopped", failure,
                    directories=self._directories)


def scan_files(directories: Sequence[str], limit: int) -> tuple[dict[str, Signature], bool]:
    """The signature of every regular file under ``directories`` (symlinked folders are not
    followed, so a link cycle cannot loop), up to ``limit`` files; and whether that was all.

    Folders are read in name order, so a bounded scan keeps watching the same files."""
    found: dict[str, Signature] = {}
    stack = list(reversed(directories))
    while stack:
        folder = stack.pop()
        subfolders: list[str] = []
        for entry in _entries(folder):
            if _descend(entry):
                subfolders.append(entry.path)
                continue
            signature = _signature(entry)
            if signature is None:
                continue
            if len(found) >= limit:
                return found, False
            found[entry.path] = signature
        stack.extend(reversed(subfolders))
    return found, True


def _entries(folder: str) -> list[os.DirEntry[str]]:
    """A folder's entries by name; none if it vanished or cannot be read (its files count
    as gone)."""
    try:
        with os.scandir(folder) as entries:
            return sorted(entries, key=lambda entry: entry.name)
    except OSError:
        return []


def _descend(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False) and entry.name not in IGNORED_DIRS
    except OSError:
        return False


def _signature(entry: os.DirEntry[str]) -> Signature | None:
    if entry.name.endswith(IGNORED_SUFFIXES):
        return None
    try:
        info = entry.stat()
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    return info.st_mtime_ns, info.st_size, info.st_ino


def first_change(before: Mapping[str, Signature], after: Mapping[str, Signature]) -> str | None:
    """A file that was added, changed or removed between two scans, or None."""
    if before == after:
        return None
    for path, signature in after.items():
        if before.get(path) != signature:
            return path
    return next(path for path in before if path not in after)


def restart_on_change(
    reactor: Any,
    guest: GuestLaunch,
    child: Supervised,
    stop_timeout: float,
    report: Callable[[str, bool], None],
) -> DirectoryWatcher | None:
    """The watcher of a guest with ``options.watch`` (None without), not yet started.

    Each change burst calls ``report(path, restarting)``; with ``"action": "restart"`` it then
    replaces the guest's process through :meth:`Supervised.restart`. Stop the watcher before
    stopping the guest.
    """
    if not guest.watch:
        return None

    def changed(path: str) -> None:
        report(path, guest.watch_restart)
        if guest.watch_restart:
            restart = Deferred.fromCoroutine(child.restart(stop_timeout))
            restart.addErrback(_restart_failed, guest.id)

    return DirectoryWatcher(reactor, guest.watch, changed, guest.watch_interval)


def _restart_failed(failure: Failure, guest_id: str) -> None:
    log.failure("guest {guest}: restart after a change failed", failure, guest=guest_id)

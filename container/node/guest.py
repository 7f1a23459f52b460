"""Crossbar.io guest workers: any program a node configuration names, run and supervised by us.

The facts follow Crossbar.io (``node/controller.py`` ``_start_guest_worker``, ``node/guest.py``,
``common/checkconfig.py`` ``check_guest``), so a configuration means what it means there:

- ``options.workdir`` is relative to the node directory (the folder of the configuration
  file) and defaults to it.
- ``executable`` is first taken as a path relative to the workdir (an absolute path stays
  itself); if that is not an executable file, a bare name is looked up on the node's
  ``PATH``. The child's ``argv[0]`` is the resolved path, then ``arguments``.
- ``options.env`` has the meaning it has for every worker (:func:`process_env`), and
  ``PYTHONUNBUFFERED=1`` is set unless the configuration sets it, as Crossbar.io does.
- ``options.stdout`` / ``options.stderr`` are ``"log"`` (the default: every non-blank line
  shown, tagged with the guest id), ``"drop"`` (read and discarded) or ``"close"`` (see
  :class:`container.node.procs.Stdio`).
- ``options.stdin``: absent, stdin is left open and nothing is written (Crossbar.io's
  default); ``"close"`` closes it; ``{"type": "json", "value": V, "close": true}`` writes V
  as JSON (no newline) and closes stdin unless ``close`` is false.
- ``options.watch.directories`` are relative to the node directory; with ``"action":
  "restart"`` the guest is restarted when a file under them changes
  (:mod:`container.node.watch`).

Where we differ, on purpose: a missing executable, workdir or watched directory is refused
before anything starts (Crossbar.io fails when it spawns); a name with a slash is not looked
up relative to the node's current directory (which depends on where the node was started);
a ``watch`` without ``"action": "restart"`` only reports changes (Crossbar.io terminates the
guest and never starts it again); ``watch.timeout`` (Crossbar.io: seconds between the change
and the restart, default 1) is the poll interval, so a restart follows the last change of a
burst within one to two of them.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from container.errors import InvalidConfiguration
from container.node.config import NodeConfig
from container.node.ids import number_like_crossbar
from container.node.plan import Launch, process_env
from container.node.procs import OnLine, Stdio
from container.validation import KeyPath, format_key_path

__all__ = [
    "OUTPUT_MODES",
    "GuestLaunch",
    "GuestOutput",
    "guest_key_paths",
    "guest_launch",
    "guest_launches",
    "line_shown",
]

OUTPUT_MODES = ("log", "drop", "close")


# ---------------------------------------------------------------------------------------------
# the launch


@dataclass(frozen=True)
class GuestLaunch:
    """One guest worker, resolved: what to spawn, what to do with its streams, what to watch.

    ``stdin`` is written to the guest right after the spawn; ``close_stdin`` then closes it.
    ``watch`` holds absolute directories; ``watch_restart`` says a change restarts the guest.
    """

    id: str
    launch: Launch
    stdout: str = "log"
    stderr: str = "log"
    stdin: bytes | None = None
    close_stdin: bool = False
    watch: tuple[Path, ...] = ()
    watch_restart: bool = False
    watch_interval: float = 1.0

    @property
    def stdio(self) -> Stdio:
        """The streams as :class:`Supervised` applies them to each new process."""
        return Stdio(stdin=self.stdin or b"", close_stdin=self.close_stdin,
                     close_stdout=self.stdout == "close", close_stderr=self.stderr == "close")


def guest_launch(
    config: Mapping[str, Any],
    config_dir: Path,
    environ: Mapping[str, str] = os.environ,
    *,
    where: KeyPath | None = None,
) -> GuestLaunch:
    """A guest worker item (its ``id`` set) resolved against the node directory.

    ``where`` is the item's key path in the document (``("workers", 2)``, see
    :func:`guest_key_paths`) so an error names the key; without it, the guest id does.
    Raises :class:`InvalidConfiguration` for what would only fail once spawned.
    """
    guest_id = str(config["id"])
    key = _KeyNamer(guest_id, where)
    options = config.get("options", {})
    node_dir = Path(os.path.abspath(config_dir))
    workdir = _workdir(options, node_dir, key)
    executable = _executable(config["executable"], workdir, environ, key)
    env = process_env(options, environ, {})
    env.setdefault("PYTHONUNBUFFERED", "1")
    argv = [executable, *_arguments(config.get("arguments", []), key)]
    stdin, close_stdin = _stdin(options.get("stdin"), key)
    watch, restart, interval = _watch(options.get("watch"), node_dir, key)
    return GuestLaunch(
        id=guest_id,
        launch=Launch(argv, env, str(workdir)),
        stdout=_output_mode(options, "stdout", key),
        stderr=_output_mode(options, "stderr", key),
        stdin=stdin,
        close_stdin=close_stdin,
        watch=watch,
        watch_restart=restart,
        watch_interval=interval,
    )


def guest_key_paths(document: Mapping[str, Any]) -> dict[str, KeyPath]:
    """Each guest's id (given, or the one Crossbar.io generates) -> its key path."""
    workers = number_like_crossbar(dict(document)).get("workers", [])
    return {worker["id"]: ("workers", index) for index, worker in enumerate(workers)
            if isinstance(worker, Mapping) and worker.get("type") == "guest"}


def guest_launches(
    config: NodeConfig, environ: Mapping[str, str] = os.environ
) -> list[GuestLaunch]:
    """Every enabled guest of a node configuration, in document order, errors with key paths."""
    where = guest_key_paths(config.raw)
    return [guest_launch(guest.config, config.config_dir, environ, where=where.get(guest.id))
            for guest in config.guests]


class _KeyNamer:
    """Names a key of one guest item in error messages."""

    def __init__(self, guest_id: str, where: KeyPath | None) -> None:
        self._guest_id = guest_id
        self._where = where

    def __call__(self, *keys: str | int) -> str:
        if self._where is not None:
            return format_key_path([*self._where, *keys])
        return f"guest worker {self._guest_id!r}: {format_key_path(keys)}"


def _workdir(options: Mapping[str, Any], node_dir: Path, key: _KeyNamer) -> Path:
    workdir = Path(os.path.abspath(node_dir / options.get("workdir", "")))
    if not workdir.is_dir():
        raise InvalidConfiguration(
            f"{key('options', 'workdir')}: directory {str(workdir)!r} does not exist "
            f"(a workdir is relative to the node directory {str(node_dir)!r})"
        )
    return workdir


def _executable(name: Any, workdir: Path, environ: Mapping[str, str], key: _KeyNamer) -> str:
    """Crossbar.io's order: ``workdir/name`` (or the absolute name), then a bare name on PATH."""
    if not isinstance(name, str) or not name:
        raise InvalidConfiguration(f"{key('executable')}: must be a non-empty string")
    candidate = os.path.abspath(workdir / name)
    if _is_executable(candidate):
        return candidate
    if _has_directory(name):
        why = "is not executable" if os.path.isfile(candidate) else "does not exist"
        raise InvalidConfiguration(f"{key('executable')}: {candidate!r} {why}")
    found = shutil.which(name, path=environ.get("PATH", os.defpath))
    if found is not None and _is_executable(found):
        return os.path.abspath(found)
    raise InvalidConfiguration(
        f"{key('executable')}: {name!r} not found on PATH or in {str(workdir)!r}"
    )


def _has_directory(name: str) -> bool:
    return os.sep in name or (os.altsep is not None and os.altsep in name)


def _is_executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def _arguments(arguments: Any, key: _KeyNamer) -> list[str]:
    if not isinstance(arguments, list) or not all(isinstance(a, str) for a in arguments):
        raise InvalidConfiguration(f"{key('arguments')}: must be a list of strings")
    return list(arguments)


def _output_mode(options: Mapping[str, Any], stream: str, key: _KeyNamer) -> str:
    mode = options.get(stream, "log")
    if mode not in OUTPUT_MODES:
        raise InvalidConfiguration(
            f"{key('options', stream)}: {mode!r} is not one of {', '.join(OUTPUT_MODES)}"
        )
    return str(mode)


def _stdin(stdin: Any, key: _KeyNamer) -> tuple[bytes | None, bool]:
    """(payload, close): Crossbar.io leaves stdin open unless told to close it."""
    if stdin is None:
        return None, False
    if stdin == "close":
        return None, True
    if not isinstance(stdin, Mapping) or stdin.get("type") != "json" or "value" not in stdin:
        raise InvalidConfiguration(
            f"{key('options', 'stdin')}: must be \"close\" or "
            '{"type": "json", "value": ..., "close": true}'
        )
    close = stdin.get("close", True)
    if not isinstance(close, bool):
        raise InvalidConfiguration(f"{key('options', 'stdin', 'close')}: must be true or false")
    return json.dumps(stdin["value"], ensure_ascii=False).encode("utf-8"), close


def _watch(
    watch: Any, node_dir: Path, key: _KeyNamer
) -> tuple[tuple[Path, ...], bool, float]:
    """(absolute directories, restart on change, poll interval)."""
    if watch is None:
        return (), False, 1.0
    if not isinstance(watch, Mapping):
        raise InvalidConfiguration(f"{key('options', 'watch')}: must be an object")
    interval = watch.get("timeout", 1.0)
    if isinstance(interval, bool) or not isinstance(interval, int | float) or interval <= 0:
        raise InvalidConfiguration(
            f"{key('options', 'watch', 'timeout')}: must be a positive number of seconds"
        )
    directories = watch.get("directories", [])
    if not isinstance(directories, list):
        raise InvalidConfiguration(f"{key('options', 'watch', 'directories')}: must be a list")
    found = tuple(_watched(d, node_dir, key, i) for i, d in enumerate(directories))
    return found, watch.get("action") == "restart", float(interval)


def _watched(directory: Any, node_dir: Path, key: _KeyNamer, index: int) -> Path:
    where = key("options", "watch", "directories", index)
    if not isinstance(directory, str):
        raise InvalidConfiguration(f"{where}: must be a string")
    path = Path(os.path.abspath(node_dir / directory))
    if not path.is_dir():
        raise InvalidConfiguration(
            f"{where}: directory {str(path)!r} does not exist "
            f"(watched directories are relative to the node directory {str(node_dir)!r})"
        )
    return path


# ---------------------------------------------------------------------------------------------
# output


def line_shown(mode: str, line: str) -> bool:
    """Whether the node shows a guest's line: only in ``"log"`` mode, and never a blank one
    (Crossbar.io skips those too). ``"drop"`` lines are read and discarded; in ``"close"``
    mode no line arrives, the pipe is closed."""
    return mode == "log" and bool(line.strip())


class GuestOutput:
    """The ``on_line`` of a guest's :class:`Supervised`: applies its stdout/stderr modes and
    hands the lines it shows to ``emit`` (which tags them with the guest id)."""

    def __init__(self, guest: GuestLaunch, emit: OnLine) -> None:
        self._modes = {"stdout": guest.stdout, "stderr": guest.stderr}
        self._emit = emit

    def __call__(self, stream: str, line: str) -> None:
        if line_shown(self._modes.get(stream, "log"), line):
            self._emit(stream, line)

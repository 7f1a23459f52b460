"""The node's run directory and the ``ctl.json`` contract in it: the node's file-system work.

One private folder (mode 0700) per configuration file,
``<config dir>/.container-run/<config file stem>/``, holds what the node's children need
(the routers' generated configurations, the workers' options and checkpoints, the management
socket) and ``ctl.json``: what ``container ctl --config FILE`` needs to reach the node
(address, realm, credentials, the children and their pids), readable by this user only.

The node takes its lock (:func:`lock_node`) before it touches anything, creates the folder
afresh, and removes it when it stops. The plan (:mod:`container.node.plan`) only names the
paths; every file-system call of the node's start is here.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import socket
import stat
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from container.errors import NodePlanError
from container.files import is_container_process, write_private_json
from container.management import CTL_FILE, RUN_FOLDER
from container.node.config import NodeConfig
from container.node.handles import GuestHandle, RouterHandle, WorkerHandle
from container.node.plan import NodePlan
from container.node.realm import SOCKET_NAME
from container.router.listeners import UNIX_PATH_MAX, pin_ports

__all__ = [
    "CtlFile",
    "ctl_path",
    "ctl_record",
    "lock_node",
    "management_socket",
    "prepare_run_dir",
    "prepare_socket_dir",
    "remove_node_files",
    "remove_run_dir",
    "run_dir_for",
    "running_node_pid",
    "write_child_files",
]

def run_dir_for(config: NodeConfig) -> Path:
    """``<config dir>/.container-run/<config file stem>/``: one per configuration file, so
    ``container ctl --config FILE`` finds the node running that file."""
    return config.config_dir / RUN_FOLDER / config.path.stem


def ctl_path(run_dir: Path) -> Path:
    return run_dir / CTL_FILE


def management_socket(run_dir: Path) -> tuple[Path, Path | None]:
    """Where the embedded management socket goes: in the run dir, or in a private folder of
    its own (returned second) when the run dir is too deep for a unix socket path."""
    socket = run_dir.absolute() / SOCKET_NAME
    if len(os.fsencode(socket)) <= UNIX_PATH_MAX:
        return socket, None
    # named after the run dir, so the next node of this configuration finds and replaces a
    # folder that a node killed with SIGKILL left behind (see prepare_socket_dir)
    digest = hashlib.sha256(os.fsencode(run_dir.absolute())).hexdigest()[:16]
    folder = Path(tempfile.gettempdir()) / f"container-{os.getuid()}-{digest}"
    return folder / SOCKET_NAME, folder


# ---------------------------------------------------------------------------------------------
# the lock and the folders


def lock_node(config_path: Path, run_dir: Path) -> int:
    """Take the node's exclusive lock: ``flock`` on the configuration file itself, held (the
    returned descriptor kept open) for the node's whole life and released by the kernel
    when the process ends, however it ends. A second node of the same configuration is
    refused before it touches anything of the first."""
    fd = os.open(config_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        other = running_node_pid(run_dir)
        who = f" (pid {other}); stop it first, e.g. `kill {other}`" if other else ""
        raise NodePlanError(f"a node is already running this configuration{who}") from None
    return fd


def running_node_pid(run_dir: Path) -> int | None:
    """The pid in a previous node's ctl file if that node process is still alive."""
    try:
        pid = int(json.loads(ctl_path(run_dir).read_text(encoding="utf-8"))["node_pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if pid == os.getpid() or not is_container_process(pid):
        return None
    return pid


def prepare_run_dir(run_dir: Path) -> None:
    """Create the run dir fresh (mode 0700): a new node starts from its configuration, not
    from the checkpoints of a previous run. Call it holding the node's lock."""
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    run_dir.mkdir(mode=0o700)
    os.chmod(run_dir, stat.S_IRWXU)


def prepare_socket_dir(folder: Path) -> None:
    """Create the private folder of a management socket that did not fit in the run dir,
    replacing one a previous node of this configuration left behind (only a folder of ours:
    not a link, owned by this user)."""
    try:
        status = os.lstat(folder)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISDIR(status.st_mode) or status.st_uid != os.getuid():
            raise NodePlanError(f"{folder} exists and is not a folder of this user's; "
                                "remove it")
        shutil.rmtree(folder)
    folder.mkdir(mode=0o700)


def remove_run_dir(run_dir: Path) -> None:
    """Remove a node's run directory, and ``.container-run/`` too when nothing else is in it."""
    shutil.rmtree(run_dir, ignore_errors=True)
    with contextlib.suppress(OSError):
        run_dir.parent.rmdir()


def remove_node_files(plan: NodePlan) -> None:
    """Everything the node left on disk: the management socket (and its own folder), then
    the run directory."""
    management = plan.management
    if management.socket is not None:
        management.socket.unlink(missing_ok=True)
    if management.socket_dir is not None:
        shutil.rmtree(management.socket_dir, ignore_errors=True)
    remove_run_dir(plan.run_dir)


def write_child_files(
    plan: NodePlan, sockets: Mapping[str, Mapping[str, socket.socket]]
) -> None:
    """What the children read when they start, all readable by this user only: each
    router's configuration (with the ports its listeners really got), the management
    router's, and each worker's options (they may hold secrets, which a command line
    would show)."""
    for router in plan.routers:
        pinned = pin_ports(router.config, sockets.get(router.id, {}))
        write_private_json(router.config_path, pinned)
        if router.management_path is not None:
            write_private_json(router.management_path, router.management_config)
    for worker in plan.workers:
        if worker.options_file is not None:
            write_private_json(worker.options_file, worker.options)


# ---------------------------------------------------------------------------------------------
# ctl.json


def ctl_record(
    plan: NodePlan,
    workers: Iterable[WorkerHandle],
    routers: Iterable[RouterHandle],
    guests: Iterable[GuestHandle],
) -> dict[str, Any]:
    """What ``container ctl --config`` reads to reach this node and name its children (a
    child's pid is None while it is down)."""
    management = plan.management
    ctl = management.ctl
    return {
        "node_pid": os.getpid(),
        "config": str(plan.config.path),
        "run_dir": str(plan.run_dir.absolute()),
        "management": management.url,
        "realm": management.realm,
        "authid": ctl.authid if ctl else None,
        "authmethod": ctl.method if ctl else None,
        "secret": ctl.secret if ctl else None,
        "workers": [{"id": w.plan.id, "prefix": w.plan.prefix, "pid": w.child.pid}
                    for w in workers],
        "routers": [{"id": r.plan.id, "pid": r.child.pid, "transports": r.transports}
                    for r in routers],
        "guests": [{"id": g.launch.id, "pid": g.child.pid} for g in guests],
    }


class CtlFile:
    """``ctl.json``, rewritten whenever a child's pid or a router's transports change.

    A failure to write it (the run directory was removed or made read-only under the node)
    is reported once, until a write succeeds again, and never stops the node from working
    or stopping: ``report`` gets the message.
    """

    def __init__(self, plan: NodePlan, report: Callable[[str], None]) -> None:
        self.path = ctl_path(plan.run_dir)
        self._plan = plan
        self._report = report
        self._failed = False

    def write(
        self,
        workers: Iterable[WorkerHandle],
        routers: Iterable[RouterHandle],
        guests: Iterable[GuestHandle],
    ) -> None:
        try:
            write_private_json(self.path, ctl_record(self._plan, workers, routers, guests))
        except OSError as error:
            if not self._failed:
                self._report(f"cannot write {self.path}: {error.strerror}; "
                             "`container ctl --config` will not find this node")
            self._failed = True
        else:
            self._failed = False

"""What the node controller will run, decided before anything runs: a plain value, no I/O.

From a valid :class:`~container.node.config.NodeConfig`, the run directory and this run's
secrets (both chosen by the caller, see :mod:`container.node.rundir` and
:func:`container.node.main.draw_secrets`) the plan derives the management realm (where it
lives, who may join it, with which secrets), the generated configuration of every router
worker, and the command line and environment of every container worker. Keeping this pure
means the node's start-up decisions are tested without spawning anything, and a
configuration the node cannot serve (an external management address we cannot speak to) is
refused before the first child process exists.

A plan is frozen and is never changed once made: what differs at run time (the listening
sockets a router inherits, the ports they really got) is derived from it as new values.
"""

from __future__ import annotations

import copy
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from container.management import DEFAULT_SECRET_ENV, worker_prefix
from container.node.config import ContainerWorker, NodeConfig, RouterWorker
from container.node.realm import (
    MANAGEMENT_ROUTER_ID,
    SOCKET_NAME,
    ManagementPlan,
    Secrets,
    embedded_management,
    external_management,
    management_router_config,
)

__all__ = [
    "Launch",
    "NodePlan",
    "RouterPlan",
    "WorkerPlan",
    "build_plan",
    "process_env",
    "with_listening_sockets",
    "with_management",
]


@dataclass(frozen=True)
class Launch:
    """One child process: what to execute, where, with which environment.

    ``fds`` maps a file descriptor number in the child to one of ours that it inherits
    (a listening socket handed to a router).
    """

    argv: list[str]
    env: dict[str, str]
    cwd: str
    fds: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class RouterPlan:
    """A router or proxy worker (or the node's own management router): Crossbar.io's worker
    class in a ``python -m container.router`` child."""

    id: str
    type: str
    config: dict[str, Any]
    config_path: Path
    launch: Launch
    management: bool = False
    #: the management router's configuration when this child also hosts it (see
    #: :func:`with_management`), and the file it is written to
    management_config: dict[str, Any] | None = None
    management_path: Path | None = None


@dataclass(frozen=True)
class WorkerPlan:
    id: str
    prefix: str
    components: list[dict[str, Any]]
    state_file: Path
    stop_timeout: float
    launch: Launch
    #: the worker's options, written by the node to ``options_file`` (mode 0600) before the
    #: worker starts: they may hold secrets (``env.vars``), which a command line would show
    options: dict[str, Any] = field(default_factory=dict)
    options_file: Path | None = None


@dataclass(frozen=True)
class NodePlan:
    config: NodeConfig
    run_dir: Path
    management: ManagementPlan
    routers: list[RouterPlan]
    workers: list[WorkerPlan]
    embedded: bool = field(default=True)


# ---------------------------------------------------------------------------------------------
# the plan


def build_plan(
    config: NodeConfig,
    run_dir: Path,
    secrets: Secrets,
    *,
    socket: Path | None = None,
    socket_dir: Path | None = None,
    environ: Mapping[str, str] = os.environ,
    executable: str = sys.executable,
    loglevel: str = "info",
    router_loglevel: str = "warn",
) -> NodePlan:
    """Everything the node will start, or :class:`NodePlanError` saying why it cannot.

    ``socket`` is the embedded management realm's unix socket (default: in the run
    directory); ``socket_dir`` the private folder holding it when it is elsewhere, because
    the run directory is too deep for a socket path (see
    :func:`container.node.rundir.management_socket`).
    """
    worker_ids = [worker.id for worker in config.containers]
    if config.management is None:
        where = socket or run_dir.absolute() / SOCKET_NAME
        management = embedded_management(where, socket_dir, worker_ids, secrets)
    else:
        management = external_management(config.management, worker_ids)
    routers = [
        _router_plan(config, router, run_dir, environ, executable, router_loglevel)
        for router in config.routers
    ]
    if management.socket is not None:
        host = next((i for i, router in enumerate(routers) if router.type == "router"), None)
        if host is None:
            routers.insert(0, _management_router_plan(config, run_dir, management, environ,
                                                      executable, router_loglevel))
        else:
            routers[host] = with_management(routers[host], run_dir, management)
    workers = [
        _worker_plan(config, worker, run_dir, management, environ, executable, loglevel)
        for worker in config.containers
    ]
    return NodePlan(config, run_dir, management, routers, workers, config.management is None)


# ---------------------------------------------------------------------------------------------
# routers


def _router_plan(
    config: NodeConfig,
    router: RouterWorker,
    run_dir: Path,
    environ: Mapping[str, str],
    executable: str,
    loglevel: str,
) -> RouterPlan:
    path = run_dir / f"router-{router.id}.json"
    argv = [*_router_argv(config, path, executable, loglevel), "--check-node", str(config.path)]
    env = process_env(router.config.get("options", {}), environ, {})
    launch = Launch(argv, env, str(config.config_dir))
    return RouterPlan(router.id, router.type, copy.deepcopy(router.config), path, launch)


def _router_argv(config: NodeConfig, path: Path, executable: str, loglevel: str) -> list[str]:
    return [executable, "-m", "container.router", str(path), "--cbdir", str(config.config_dir),
            "--node-id", config.controller_id, "--loglevel", loglevel]


def _management_router_plan(
    config: NodeConfig,
    run_dir: Path,
    management: ManagementPlan,
    environ: Mapping[str, str],
    executable: str,
    loglevel: str,
) -> RouterPlan:
    """The management realm's own router process, listening only on the private socket.

    No transport of the user's configuration reaches it, so no role a user's transport hands
    out (Crossbar.io's built-in ``trusted`` included) can get into the management realm. It
    also checks the node configuration with Crossbar.io's checker before it serves.
    """
    path = run_dir / f"router-{MANAGEMENT_ROUTER_ID}.json"
    worker = management_router_config(management)
    argv = [*_router_argv(config, path, executable, loglevel), "--check-node", str(config.path),
            "--key-dir", str(run_dir)]
    launch = Launch(argv, dict(environ), str(config.config_dir))
    return RouterPlan(MANAGEMENT_ROUTER_ID, "router", worker, path, launch, management=True)


def with_management(router: RouterPlan, run_dir: Path, management: ManagementPlan) -> RouterPlan:
    """The first router child also hosts the management router: a second Crossbar.io
    ``RouterController`` in that process, with its own router factory, realm and transport.

    A transport reaches only the realms of its own controller's factory, so the clients of
    the configuration's transports can no more reach the management realm than if it ran in
    a process of its own, and the node saves a whole Crossbar.io import (seconds of CPU on
    its critical path) and that process's memory. The management router's node key lives
    in the run directory.
    """
    path = run_dir / f"router-{MANAGEMENT_ROUTER_ID}.json"
    launch = router.launch
    argv = [*launch.argv, "--management", str(path)]
    return replace(router, launch=Launch(argv, launch.env, launch.cwd, launch.fds),
                   management=True, management_config=management_router_config(management),
                   management_path=path)


def with_listening_sockets(launch: Launch, sockets: Mapping[str, int]) -> Launch:
    """The router's launch serving each transport id on an inherited listening fd.

    The node binds the listeners itself (milliseconds, real ports known at once) and hands
    them over: clients that connect while the router still imports Crossbar.io wait in the
    accept queue instead of being refused and backing off.
    """
    fds: dict[int, int] = {}
    argv = list(launch.argv)
    for number, (transport_id, parent_fd) in enumerate(sorted(sockets.items()), start=3):
        fds[number] = parent_fd
        argv += ["--listen-fd", f"{transport_id}={number}"]
    return Launch(argv, launch.env, launch.cwd, fds)


# ---------------------------------------------------------------------------------------------
# container workers


def _worker_plan(
    config: NodeConfig,
    worker: ContainerWorker,
    run_dir: Path,
    management: ManagementPlan,
    environ: Mapping[str, str],
    executable: str,
    loglevel: str,
) -> WorkerPlan:
    state_file = run_dir / f"{worker.id}.state.json"
    options_file = run_dir / f"{worker.id}.options.json"  # never on the command line: env vars
    principal = management.workers.get(worker.id)
    argv = [
        worker.options.get("python") or executable, "-m", "container", "worker",
        "--management", management.url, "--realm", management.realm, "--id", worker.id,
        "--options-file", str(options_file),
        "--state-file", str(state_file), "--loglevel", loglevel,
    ]
    extra = {}
    if principal is not None:
        argv += ["--authid", principal.authid, "--authmethod", principal.method,
                 "--secret-env", DEFAULT_SECRET_ENV]
        extra[DEFAULT_SECRET_ENV] = principal.secret
    env = process_env(worker.options, environ, extra)
    env.setdefault("PYTHONUNBUFFERED", "1")  # component prints reach the node as they happen
    return WorkerPlan(
        id=worker.id,
        prefix=worker_prefix(worker.id),
        components=copy.deepcopy(worker.components),
        state_file=state_file,
        stop_timeout=float(worker.options.get("stop_timeout", 5.0)),
        launch=Launch(argv, env, str(config.config_dir)),
        options=copy.deepcopy(worker.options),
        options_file=options_file,
    )


def process_env(
    options: Mapping[str, Any], environ: Mapping[str, str], extra: Mapping[str, str]
) -> dict[str, str]:
    """A child's environment as Crossbar.io builds it from ``options.env``.

    ``inherit`` true (the default) copies the node's whole environment, a list copies only
    those names, false nothing; ``vars`` are set on top. ``extra`` (what the node itself must
    pass, such as the management secret) comes last: the configuration cannot remove it.
    """
    env_options = options.get("env", {})
    inherit = env_options.get("inherit", True)
    if inherit is True:
        env = dict(environ)
    elif inherit is False:
        env = {}
    else:
        env = {name: environ[name] for name in inherit if name in environ}
    env.update(env_options.get("vars", {}))
    env.update(extra)
    return env

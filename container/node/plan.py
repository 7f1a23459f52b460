"""What the node controller will run, decided before anything runs: a plain value, no I/O.

From a valid :class:`~container.nodeconfig.NodeConfig` the plan derives the run directory,
the management realm (where it lives, who may join it, with which fresh secrets), the
generated configuration of every router worker, and the command line and environment of
every container worker. Keeping this pure means the node's start-up decisions are tested
without spawning anything, and a configuration the node cannot serve (a user realm that
clashes with the management realm, an external management address we cannot speak to) is
refused before the first child process exists.

Only :func:`prepare_run_dir` and ``container.files.write_private_json`` touch the file system.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from container.errors import InvalidConfiguration
from container.files import is_container_process
from container.node.config import (
    DEFAULT_MANAGEMENT_REALM,
    ContainerWorker,
    Management,
    NodeConfig,
    RouterWorker,
)
from container.router.listeners import DEFAULT_BACKLOG, UNIX_PATH_MAX

#: The role every principal of the embedded management realm gets: allowed everything.
#: The embedded management realm's only role gets a fresh unguessable name per run: a
#: transport of the same router that hands out a role by name without tying it to a realm
#: (``"anonymous": {"role": "controller"}``) must not let its clients into the management
#: realm, and it cannot name a role it does not know.
CONTROLLER_ROLE_STEM = "node-management-"
#: Environment variable carrying a worker's management secret (never its command line).
SECRET_ENV = "CONTAINER_MANAGEMENT_SECRET"
RUN_DIR_NAME = ".container-run"
SOCKET_NAME = "management.sock"
CTL_FILE = "ctl.json"
SERIALIZERS = ("cbor", "msgpack", "json")


class NodePlanError(InvalidConfiguration):
    """The configuration is valid but this node cannot serve it as written."""


@dataclass(frozen=True)
class Principal:
    """Credentials for the management realm (``method`` is ``ticket`` or ``wampcra``)."""

    authid: str
    method: str
    secret: str


@dataclass(frozen=True)
class ManagementPlan:
    """Where the management realm is and who joins it with which credentials.

    ``socket`` is set in embedded mode (the unix socket the first router listens on);
    ``node``, ``ctl`` and ``workers`` are None for an external realm that admits anonymous
    sessions.
    """

    url: str
    realm: str
    node: Principal | None
    ctl: Principal | None
    workers: Mapping[str, Principal | None]
    socket: Path | None = None
    socket_dir: Path | None = None  # a private temporary folder when the run dir is too deep
    role: str = ""  # embedded mode: the management realm's only role


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

    @property
    def ctl_file(self) -> Path:
        return self.run_dir / CTL_FILE


# ---------------------------------------------------------------------------------------------
# the plan


def run_dir_for(config: NodeConfig) -> Path:
    """``<config dir>/.container-run/<config file stem>/``: one per configuration file, so
    ``container ctl --config FILE`` finds the node running that file."""
    return config.config_dir / RUN_DIR_NAME / config.path.stem


def build_plan(
    config: NodeConfig,
    run_dir: Path,
    *,
    token: Callable[[], str] = lambda: secrets.token_urlsafe(32),
    environ: Mapping[str, str] = os.environ,
    executable: str = sys.executable,
    loglevel: str = "info",
    router_loglevel: str = "warn",
) -> NodePlan:
    """Everything the node will start, or :class:`NodePlanError` saying why it cannot."""
    worker_ids = [worker.id for worker in config.containers]
    if config.management is None:
        management = _embedded_management(run_dir, worker_ids, token)
    else:
        management = _external_management(config.management, worker_ids)
    routers = [
        _router_plan(config, router, run_dir, environ, executable, router_loglevel)
        for router in config.routers
    ]
    if management.socket is not None:
        host = next((i for i, router in enumerate(routers) if router.type == "router"), None)
        if host is None:
            routers.insert(0, _management_router_plan(config, run_dir, management, executable,
                                                      router_loglevel))
        else:
            routers[host] = with_management(routers[host], run_dir, management)
    workers = [
        _worker_plan(config, worker, run_dir, management, environ, executable, loglevel)
        for worker in config.containers
    ]
    return NodePlan(config, run_dir, management, routers, workers, config.management is None)


def _embedded_management(
    run_dir: Path, worker_ids: list[str], token: Callable[[], str]
) -> ManagementPlan:
    socket, socket_dir = _socket_path(run_dir)
    workers = {worker_id: Principal(f"worker-{worker_id}", "ticket", token())
               for worker_id in worker_ids}
    return ManagementPlan(
        url=f"unix:{socket}",
        realm=DEFAULT_MANAGEMENT_REALM,
        node=Principal("node", "ticket", token()),
        ctl=Principal("ctl", "ticket", token()),
        workers=workers,
        socket=socket,
        socket_dir=socket_dir,
        role=CONTROLLER_ROLE_STEM + secrets.token_hex(8),
    )


def _socket_path(run_dir: Path) -> tuple[Path, Path | None]:
    """The management socket in the run dir, or in a private temporary folder when the run
    dir is too deep for a unix socket path (the kernel limits it to 107 bytes)."""
    socket = run_dir.absolute() / SOCKET_NAME
    if len(os.fsencode(socket)) <= UNIX_PATH_MAX:
        return socket, None
    # named after the run dir, so the next node of this configuration finds and replaces a
    # folder that a node killed with SIGKILL left behind (see prepare_socket_dir)
    digest = hashlib.sha256(os.fsencode(run_dir.absolute())).hexdigest()[:16]
    folder = Path(tempfile.gettempdir()) / f"container-{os.getuid()}-{digest}"
    return folder / SOCKET_NAME, folder


def _external_management(management: Management, worker_ids: list[str]) -> ManagementPlan:
    principal = _principal(management.auth)
    return ManagementPlan(
        url=management_url(management.transport),
        realm=management.realm,
        node=principal,
        ctl=principal,
        workers=dict.fromkeys(worker_ids, principal),
    )


def management_url(transport: Mapping[str, Any]) -> str:
    """A client transport config (component format) as a management address URL."""
    if transport["type"] == "websocket":
        return str(transport["url"])
    endpoint = transport["endpoint"]
    if endpoint["type"] == "unix":
        return f"unix:{endpoint['path']}"
    if endpoint.get("tls"):
        raise NodePlanError(
            "controller.management.transport: RawSocket over TLS cannot be used for the "
            "management connection; use a websocket transport with a wss:// url"
        )
    host = str(endpoint["host"])
    return f"rs://[{host}]:{endpoint['port']}" if ":" in host else f"rs://{host}:{endpoint['port']}"


def _principal(auth: Mapping[str, Any] | None) -> Principal | None:
    if not auth:
        return None
    if "ticket" in auth:
        return Principal(auth["ticket"]["authid"], "ticket", auth["ticket"]["ticket"])
    if "wampcra" in auth:
        return Principal(auth["wampcra"]["authid"], "wampcra", auth["wampcra"]["secret"])
    return None


# ---------------------------------------------------------------------------------------------
# routers


#: The node's own router, serving only the management realm on the private socket.
MANAGEMENT_ROUTER_ID = "node-management"


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
    return RouterPlan(router.id, router.type, router.config, path, launch)


def _router_argv(config: NodeConfig, path: Path, executable: str, loglevel: str) -> list[str]:
    return [executable, "-m", "container.router", str(path), "--cbdir", str(config.config_dir),
            "--node-id", config.controller_id, "--loglevel", loglevel]


def _management_router_plan(
    config: NodeConfig,
    run_dir: Path,
    management: ManagementPlan,
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
    launch = Launch(argv, {**os.environ}, str(config.config_dir))
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



def management_router_config(management: ManagementPlan) -> dict[str, Any]:
    """The management router worker: one realm, one role, one private ticket transport.

    The realm has one role, allowed everything and disclosing callers and publishers, named
    afresh per run. The transport is a RawSocket on a unix socket in a 0700 folder with
    static ticket auth: one principal per worker, one for the node and one for ``ctl``.
    """
    return {
        "type": "router",
        "id": MANAGEMENT_ROUTER_ID,
        "realms": [_management_realm(management.realm, management.role)],
        "transports": [_management_transport("management", management)],
    }


def _management_realm(name: str, role: str) -> dict[str, Any]:
    allow = {"call": True, "register": True, "publish": True, "subscribe": True}
    permission = {"uri": "", "match": "prefix", "allow": allow,
                  "disclose": {"caller": True, "publisher": True}, "cache": True}
    return {"name": name, "roles": [{"name": role, "permissions": [permission]}]}


def _management_transport(transport_id: str, management: ManagementPlan) -> dict[str, Any]:
    principals = {
        principal.authid: {"ticket": principal.secret, "role": management.role}
        for principal in _all_principals(management)
    }
    return {
        "type": "rawsocket",
        "id": transport_id,
        "endpoint": {"type": "unix", "path": str(management.socket), "backlog": DEFAULT_BACKLOG},
        "serializers": list(SERIALIZERS),
        "auth": {"ticket": {"type": "static", "principals": principals}},
    }


def _all_principals(management: ManagementPlan) -> list[Principal]:
    found = [management.node, management.ctl, *management.workers.values()]
    return [principal for principal in found if principal is not None]


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
                 "--secret-env", SECRET_ENV]
        extra[SECRET_ENV] = principal.secret
    env = process_env(worker.options, environ, extra)
    env.setdefault("PYTHONUNBUFFERED", "1")  # component prints reach the node as they happen
    return WorkerPlan(
        id=worker.id,
        prefix=f"crossbar.worker.{worker.id}",
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


# ---------------------------------------------------------------------------------------------
# files


def remove_run_dir(run_dir: Path) -> None:
    """Remove a node's run directory, and ``.container-run/`` too when nothing else is in it."""
    shutil.rmtree(run_dir, ignore_errors=True)
    with contextlib.suppress(OSError):
        run_dir.parent.rmdir()


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


def prepare_run_dir(run_dir: Path) -> None:
    """Create the run dir fresh (mode 0700): a new node starts from its configuration, not
    from the checkpoints of a previous run. Call it holding the node's lock."""
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    run_dir.mkdir(mode=0o700)
    os.chmod(run_dir, stat.S_IRWXU)


def running_node_pid(run_dir: Path) -> int | None:
    """The pid in a previous node's ctl file if that node process is still alive."""
    try:
        pid = int(json.loads((run_dir / CTL_FILE).read_text(encoding="utf-8"))["node_pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if pid == os.getpid() or not is_container_process(pid):
        return None
    return pid

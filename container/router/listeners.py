"""Listening sockets bound by the node before a router child exists (no Crossbar.io import).

The node binds every plain ``tcp`` and ``unix`` endpoint of a router or proxy worker itself,
in milliseconds, and hands the sockets to the child (``--listen-fd ID=FD``). Clients that
connect while the child still imports Crossbar.io wait in the accept queue instead of being
refused and backing off; ``port: 0`` (or no port) gets its real port at once; a port in use
is reported before anything starts; and a restarted router serves the same sockets.

Endpoints Crossbar.io must build itself (``twisted`` and ``onion`` endpoints, ``portrange``,
``shared`` or ``user_timeout`` sockets) are left to it, and so are TLS endpoints: an adopted
socket is served as Crossbar.io layers the factory above it, and only a transport with a
connection cap gets TLS layered there, so a TLS endpoint is never handed over plain.
"""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from container.errors import InvalidConfiguration
from container.transports import UNIX_PATH_MAX
from container.validation import format_key_path

__all__ = [
    "DEFAULT_BACKLOG",
    "MANAGEMENT_FD_NAME",
    "UNIX_PATH_MAX",
    "bind_listeners",
    "bindable",
    "close_listeners",
    "endpoint_key",
    "pin_ports",
]

#: Accept-queue depth when a configuration gives none. Crossbar.io's default of 50 overflows
#: when hundreds of components connect at once (the kernel then drops SYNs and clients stall).
DEFAULT_BACKLOG = 1024

_CROSSBAR_ONLY = ("shared", "user_timeout", "portrange", "tls")

#: The ``--listen-fd`` name of the management router's socket in a router child that hosts
#: the management router beside its own worker (no transport id can hold ``@``).
MANAGEMENT_FD_NAME = "@management"


def bindable(endpoint: Mapping[str, Any]) -> bool:
    """Whether the node binds this listening endpoint itself (see the module docstring)."""
    if endpoint.get("type") == "unix":
        return True
    return endpoint.get("type") == "tcp" and not any(key in endpoint for key in _CROSSBAR_ONLY)


def endpoint_key(endpoint: Mapping[str, Any], base_dir: str) -> tuple[str, Any]:
    """What identifies a listening endpoint: ``("tcp", port)`` or ``("unix", absolute path)``."""
    if endpoint["type"] == "unix":
        return ("unix", _absolute(base_dir, str(endpoint["path"])))
    return ("tcp", _port(endpoint))


def bind_listeners(
    worker: Mapping[str, Any], base_dir: str, where: tuple[str | int, ...] = ()
) -> dict[str, socket.socket]:
    """Bind and listen on each bindable endpoint of a worker's transports (ids already set).

    Raises :class:`InvalidConfiguration` naming the endpoint that cannot be bound; nothing
    stays bound then.
    """
    bound: dict[str, socket.socket] = {}
    try:
        for index, transport in enumerate(worker.get("transports", [])):
            endpoint = transport.get("endpoint", {})
            if bindable(endpoint):
                at = (*where, "transports", index, "endpoint")
                bound[str(transport["id"])] = _bind(endpoint, base_dir, at)
    except BaseException:
        for sock in bound.values():
            sock.close()
        raise
    return bound


def close_listeners(bound: Mapping[str, Mapping[str, socket.socket]]) -> None:
    """Close every socket of :func:`bind_listeners` results kept per worker id."""
    for sockets in bound.values():
        for sock in sockets.values():
            sock.close()


def pin_ports(
    worker: Mapping[str, Any], sockets: Mapping[str, socket.socket]
) -> dict[str, Any]:
    """A copy of the worker configuration with the ports its TCP sockets really got; the
    configuration given is left as it is (it belongs to a frozen plan)."""
    pinned = {**worker, "transports": []}
    for transport in worker.get("transports", []):
        sock = sockets.get(str(transport.get("id")))
        if sock is not None and sock.family != socket.AF_UNIX:
            endpoint = {**transport["endpoint"], "port": sock.getsockname()[1]}
            transport = {**transport, "endpoint": endpoint}
        pinned["transports"].append(transport)
    return pinned


def _bind(endpoint: Mapping[str, Any], base_dir: str, at: tuple[str | int, ...]) -> socket.socket:
    backlog = int(endpoint.get("backlog", DEFAULT_BACKLOG))
    if endpoint["type"] == "tcp":
        version = int(endpoint.get("version", 4))
        family = socket.AF_INET6 if version == 6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        # as Twisted's listenTCP does: a restarted router can take its port back at once
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        interface = str(endpoint.get("interface", "")).strip()
        address: Any = (interface or ("::" if version == 6 else "0.0.0.0"), _port(endpoint, at))
        shown = f"tcp {interface or '*'}:{address[1]}"
    else:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        address = _free_unix_path(_absolute(base_dir, str(endpoint["path"])), (*at, "path"))
        shown = f"unix {address}"
    try:
        sock.bind(address)
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as error:
        sock.close()
        raise _error(at, f"cannot listen on {shown}: {error.strerror}") from error
    return sock


def _port(endpoint: Mapping[str, Any], at: tuple[str | int, ...] = ()) -> int:
    """The configured port; ``"$NAME"`` reads it from the environment, as Crossbar.io does."""
    port = endpoint.get("port", 0)
    if isinstance(port, str):
        name = port[1:] if port.startswith("$") else port
        try:
            return int(os.environ[name])
        except (KeyError, ValueError):
            raise _error((*at, "port"), f"environment variable {name} holds no port") from None
    return int(port or 0)


def _absolute(base_dir: str, path: str) -> str:
    return os.path.abspath(os.path.join(base_dir, os.path.expandvars(path)))


def _free_unix_path(path: str, at: tuple[str | int, ...]) -> str:
    """The socket path, checked; a stale socket file (nobody listening) is removed first."""
    size = len(os.fsencode(path))
    if size > UNIX_PATH_MAX:
        raise _error(at, f"'{path}' is too long for a unix socket ({size} > {UNIX_PATH_MAX} bytes)")
    if not Path(path).parent.is_dir():
        raise _error(at, f"directory '{Path(path).parent}' does not exist")
    if os.path.lexists(path):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise _error(at, f"'{path}' exists and is not a socket")
        if _someone_listens(path):
            raise _error(at, f"'{path}' is in use by another process")
        os.unlink(path)
    return path


def _someone_listens(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except OSError:
            return False
        return True


def _error(at: tuple[str | int, ...], message: str) -> InvalidConfiguration:
    key = format_key_path(at)
    return InvalidConfiguration(f"{key}: {message}", key=key)

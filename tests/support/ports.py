"""Loopback ports: one way to pick a free one, one way to check that nobody listens."""

from __future__ import annotations

import random
import socket
from pathlib import Path

import psutil

# Ports are picked below the kernel's ephemeral range: a port picked now is often bound only
# later (a node configuration is written, then the node starts), and in between any outgoing
# connection of this machine may be given an ephemeral port, that one included.
_LOWEST = 10000
_handed_out: set[int] = set()


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listened on a moment ago, outside the ephemeral
    range, and not handed out before by this process."""
    high = _ephemeral_start()
    for _ in range(200):
        port = random.randrange(_LOWEST, high) if high > _LOWEST + 1000 else 0
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            port = int(sock.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise RuntimeError("no free loopback port found in 200 tries")


def port_is_free(port: int) -> bool:
    """Nobody listens on ``port``: a server can bind it again and listen.

    With SO_REUSEADDR, as servers (Twisted included) bind: connections of a killed router
    linger in TIME_WAIT on the port for a minute, which is not "something left listening".
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen(1)
        except OSError:
            return False
    return not any(c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN
                   for c in psutil.net_connections("tcp"))

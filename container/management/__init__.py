"""The management realm's names and addresses: the knowledge the worker, the node and
``ctl`` share about it. Light on purpose (no autobahn import): the node reads it before it
starts its children. The joined client session is in :mod:`container.management.client`.

Addresses are written as URLs: ``ws://HOST:PORT/PATH`` or ``wss://...`` (WebSocket),
``rs://HOST:PORT`` or ``tcp://HOST:PORT`` (RawSocket over TCP), ``unix:/PATH`` (RawSocket
over a unix socket).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from container.errors import InvalidConfiguration
from container.transports import EndpointSpec

# The wire names every program agrees on. Crossbar.io's container worker serves its API
# under ``crossbar.worker.<id>``; we keep that so that its tools and habits carry over.
WORKER_PREFIX_ROOT = "crossbar.worker."
# the environment variable that carries the management secret (never the command line)
DEFAULT_SECRET_ENV = "CONTAINER_MANAGEMENT_SECRET"
# ``<config dir>/.container-run/<config stem>/ctl.json``: where a node leaves what ``ctl``
# needs to reach it (address, realm, credentials, workers)
RUN_FOLDER = ".container-run"
CTL_FILE = "ctl.json"


def worker_prefix(worker_id: str) -> str:
    """The default URI prefix of a worker's procedures and topics."""
    return f"{WORKER_PREFIX_ROOT}{worker_id}"

# close reasons that mean "you are not welcome here": retrying will not help
REFUSALS = frozenset({
    "wamp.error.not_authorized", "wamp.error.authentication_failed",
    "wamp.error.no_such_realm", "wamp.error.no_auth_method",
    "wamp.error.cannot_authenticate", "wamp.error.no_such_role",
})


@dataclass(frozen=True)
class ManagementAddress:
    """Where the management realm is: a WebSocket URL or a RawSocket TCP/unix address."""

    kind: str  # "websocket" or "rawsocket"
    endpoint: EndpointSpec
    url: str = ""  # as the user wrote it (for messages; WebSocket also connects to it)

    def describe(self) -> str:
        return self.url or self.endpoint.describe()


def parse_management_url(url: str) -> ManagementAddress:
    """Parse ``ws://H:P/PATH``, ``wss://...``, ``rs://H:P`` (or ``tcp://``), ``unix:/PATH``."""
    parts = urlsplit(url)
    if parts.scheme in ("ws", "wss"):
        tls = {"hostname": parts.hostname or ""} if parts.scheme == "wss" else None
        port = _port(parts, url) or (443 if tls else 80)
        return ManagementAddress(
            "websocket", EndpointSpec("tcp", host=parts.hostname or "", port=port, tls=tls), url
        )
    if parts.scheme in ("rs", "tcp"):
        given = _port(parts, url)
        if not parts.hostname or not given:
            raise InvalidConfiguration(f"management address {url!r}: needs a host and a port")
        return ManagementAddress(
            "rawsocket", EndpointSpec("tcp", host=parts.hostname, port=given), url
        )
    if parts.scheme == "unix":
        path = parts.path or parts.netloc
        if not path:
            raise InvalidConfiguration(f"management address {url!r}: needs a socket path")
        return ManagementAddress("rawsocket", EndpointSpec("unix", path=path), url)
    raise InvalidConfiguration(
        f"management address {url!r}: use ws://HOST:PORT/PATH, wss://..., rs://HOST:PORT "
        "or unix:/PATH/TO/SOCKET"
    )


def _port(parts: SplitResult, url: str) -> int | None:
    try:
        return parts.port
    except ValueError:
        raise InvalidConfiguration(f"management address {url!r}: invalid port") from None


@dataclass(frozen=True)
class Credentials:
    """How to authenticate to the management realm (None where used: anonymous)."""

    authid: str
    method: str  # "ticket" or "wampcra"
    secret: str

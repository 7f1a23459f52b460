"""The node's management realm as the plan sees it: where it lives, who may join it with
which credentials, and the configuration of the router that carries it.

In embedded mode the realm is the node's own: one role named afresh per run, a ticket per
principal (the node, ``ctl``, each container worker), a RawSocket transport on a unix socket
in a private folder. In external mode it is the configured router's, with the configured
credentials. Pure values and functions, like :mod:`container.node.plan` that uses them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from container.errors import NodePlanError
from container.node.config import DEFAULT_MANAGEMENT_REALM, Management
from container.router.listeners import DEFAULT_BACKLOG
from container.transports import DEFAULT_SERIALIZERS

__all__ = [
    "CONTROLLER_ROLE_STEM",
    "MANAGEMENT_ROUTER_ID",
    "SOCKET_NAME",
    "ManagementPlan",
    "Principal",
    "Secrets",
    "embedded_management",
    "external_management",
    "management_router_config",
    "management_url",
]

#: The role every principal of the embedded management realm gets: allowed everything.
#: The embedded management realm's only role gets a fresh unguessable name per run: a
#: transport of the same router that hands out a role by name without tying it to a realm
#: (``"anonymous": {"role": "controller"}``) must not let its clients into the management
#: realm, and it cannot name a role it does not know.
CONTROLLER_ROLE_STEM = "node-management-"
SOCKET_NAME = "management.sock"
#: The node's own router, serving only the management realm on the private socket.
MANAGEMENT_ROUTER_ID = "node-management"


@dataclass(frozen=True)
class Secrets:
    """The secrets of one run of the embedded management realm, drawn by the caller: the
    suffix of the realm's only role, and a ticket for the node, for ``ctl`` and for each
    container worker (by id). Passed in, so the plan stays a pure function of its inputs."""

    role: str
    node: str
    ctl: str
    workers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def fixed(cls, value: str, worker_ids: Iterable[str]) -> Secrets:
        """The same value everywhere: for a plan that is only checked, never run."""
        return cls(value, value, value, dict.fromkeys(worker_ids, value))


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


def embedded_management(
    socket: Path, socket_dir: Path | None, worker_ids: list[str], secrets: Secrets
) -> ManagementPlan:
    """The node's own realm on ``socket``: one ticket principal per worker, the node, ``ctl``."""
    workers = {worker_id: Principal(f"worker-{worker_id}", "ticket", secrets.workers[worker_id])
               for worker_id in worker_ids}
    return ManagementPlan(
        url=f"unix:{socket}",
        realm=DEFAULT_MANAGEMENT_REALM,
        node=Principal("node", "ticket", secrets.node),
        ctl=Principal("ctl", "ticket", secrets.ctl),
        workers=workers,
        socket=socket,
        socket_dir=socket_dir,
        role=CONTROLLER_ROLE_STEM + secrets.role,
    )


def external_management(management: Management, worker_ids: list[str]) -> ManagementPlan:
    """The configured router's realm: everybody joins with the configured credentials."""
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
        "serializers": list(DEFAULT_SERIALIZERS),
        "auth": {"ticket": {"type": "static", "principals": principals}},
    }


def _all_principals(management: ManagementPlan) -> list[Principal]:
    found = [management.node, management.ctl, *management.workers.values()]
    return [principal for principal in found if principal is not None]

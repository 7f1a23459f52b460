"""The shared test router: realm1 for applications and the management realm "crossbar", its
credentials, and the addresses of its transports (the ``router`` fixture's value)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.support.routerproc import RouterProcess, Routers

WORKER_TICKET = "worker-secret"
TESTER_TICKET = "tester-secret"
#: Crossbar.io's built-in authrole "trusted" is the only one its meta API shows ``crossbar.*``
#: registrations to: the only management principal that can discover workers.
OBSERVER_TICKET = "observer-secret"
CRA_WORKER_SECRET = "cra-worker-secret"
APP_TICKET = "alice-ticket"
APP_CRA_SECRET = "bob-secret"
SERIALIZERS = ["cbor", "msgpack", "json"]


def allow_all(disclose: bool = False) -> list[dict[str, Any]]:
    return [{
        "uri": "", "match": "prefix",
        "allow": {"call": True, "register": True, "publish": True, "subscribe": True},
        "disclose": {"caller": disclose, "publisher": disclose},
        "cache": True,
    }]


def router_config(unix_path: str, management_unix_path: str | None = None) -> dict[str, Any]:
    """realm1 for applications (anonymous); realm 'crossbar' for management (ticket and
    WAMP-CRA only), over TCP and, given ``management_unix_path``, over a unix socket too."""
    management_auth = {
        "ticket": {"type": "static", "principals": {
            "worker": {"ticket": WORKER_TICKET, "role": "controller"},
            "tester": {"ticket": TESTER_TICKET, "role": "controller"},
            "observer": {"ticket": OBSERVER_TICKET, "role": "trusted"},
        }},
        "wampcra": {"type": "static", "users": {
            "cra-worker": {"secret": CRA_WORKER_SECRET, "role": "controller"},
        }},
    }
    app_auth = {
        "ticket": {"type": "static",
                   "principals": {"alice": {"ticket": APP_TICKET, "role": "app"}}},
        "wampcra": {"type": "static", "users": {"bob": {"secret": APP_CRA_SECRET, "role": "app"}}},
    }
    transports: list[dict[str, Any]] = [
        {"type": "universal", "id": "app",
         "endpoint": {"type": "tcp", "port": 0, "interface": "127.0.0.1", "backlog": 1024},
         "rawsocket": {"serializers": SERIALIZERS},
         "websocket": {"ws": {"type": "websocket", "serializers": SERIALIZERS}}},
        {"type": "websocket", "id": "wst",
         "endpoint": {"type": "tcp", "port": 0, "interface": "127.0.0.1"}},
        {"type": "rawsocket", "id": "management",
         "endpoint": {"type": "tcp", "port": 0, "interface": "127.0.0.1", "backlog": 1024},
         "serializers": SERIALIZERS, "auth": management_auth},
        {"type": "rawsocket", "id": "appauth",
         "endpoint": {"type": "tcp", "port": 0, "interface": "127.0.0.1"},
         "serializers": SERIALIZERS, "auth": app_auth},
        {"type": "rawsocket", "id": "appunix",
         "endpoint": {"type": "unix", "path": unix_path}, "serializers": SERIALIZERS},
    ]
    if management_unix_path is not None:
        transports.append({"type": "rawsocket", "id": "mgmtunix",
                           "endpoint": {"type": "unix", "path": management_unix_path},
                           "serializers": SERIALIZERS, "auth": management_auth})
    return {
        "type": "router",
        "id": "testrouter",
        "realms": [
            {"name": "realm1", "roles": [{"name": "anonymous", "permissions": allow_all()},
                                         {"name": "app", "permissions": allow_all()}]},
            {"name": "crossbar",
             "roles": [{"name": "controller", "permissions": allow_all(disclose=True)}]},
        ],
        "transports": transports,
    }


@dataclass
class RouterAddresses:
    """Where a router made from ``router_config`` listens, in the forms the tests use."""

    process: RouterProcess

    def port(self, transport_id: str) -> int:
        return self.process.port(transport_id)

    @property
    def app_port(self) -> int:
        return self.port("app")

    @property
    def management_port(self) -> int:
        return self.port("management")

    @property
    def unix_path(self) -> str:
        return self.process.unix_path("appunix")

    def rawsocket_transport(self, serializer: str = "cbor") -> dict[str, Any]:
        return {"type": "rawsocket", "serializer": serializer,
                "endpoint": {"type": "tcp", "host": "127.0.0.1", "port": self.app_port}}

    def websocket_transport(self, path: str = "ws") -> dict[str, Any]:
        url = f"ws://127.0.0.1:{self.app_port}/{path}"
        return {"type": "websocket", "url": url,
                "endpoint": {"type": "tcp", "host": "127.0.0.1", "port": self.app_port}}

    def authenticated_transport(self) -> dict[str, Any]:
        """RawSocket to realm1 on the transport that requires ticket or WAMP-CRA auth."""
        return {"type": "rawsocket",
                "endpoint": {"type": "tcp", "host": "127.0.0.1", "port": self.port("appauth")}}

    def management_address(self) -> dict[str, Any]:
        return {"kind": "rawsocket", "host": "127.0.0.1", "port": self.management_port}


def start_router(routers: Routers) -> RouterAddresses:
    """A router on ``router_config`` (in a folder of its own), started with ``routers``."""
    folder = routers.folder()
    config = router_config(str(folder / "app.sock"), str(folder / "mgmt.sock"))
    return RouterAddresses(routers.start(config, folder))

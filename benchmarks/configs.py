"""Configurations the benchmark runs: the embedded router's, and node files for both nodes.

A node file is written once per scenario in Crossbar.io's node-config format and used
unchanged by ``container run FILE`` and by ``crossbar start --cbdir DIR`` (as DIR/config.json):
one router worker with realm1 (anonymous, everything allowed) on a fixed loopback RawSocket
port with a listen backlog of 1024, and one container worker hosting the benchmark classes.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

APPS = str(Path(__file__).resolve().parent / "apps")
APP_REALM = "realm1"
MANAGEMENT_REALM = "crossbar"
WORKER_AUTHID = "worker"
BENCH_AUTHID = "bench"
BACKLOG = 1024


def allow_all(disclose: bool = False) -> list[dict[str, Any]]:
    return [{
        "uri": "", "match": "prefix",
        "allow": {"call": True, "register": True, "publish": True, "subscribe": True},
        "disclose": {"caller": disclose, "publisher": disclose},
        "cache": True,
    }]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def router_config(worker_ticket: str, bench_ticket: str) -> dict[str, Any]:
    """The embedded router of the API benchmarks: realm1 for components (and the floor's
    sessions), realm ``crossbar`` for management (ticket), both over RawSocket on loopback."""
    principals = {
        WORKER_AUTHID: {"ticket": worker_ticket, "role": "controller"},
        BENCH_AUTHID: {"ticket": bench_ticket, "role": "controller"},
    }
    return {
        "type": "router",
        "id": "benchrouter",
        "realms": [
            {"name": APP_REALM, "roles": [{"name": "anonymous", "permissions": allow_all()}]},
            {"name": MANAGEMENT_REALM,
             "roles": [{"name": "controller", "permissions": allow_all(disclose=True)}]},
        ],
        "transports": [
            {"type": "rawsocket", "id": "app", "serializers": ["cbor", "msgpack", "json"],
             "endpoint": {"type": "tcp", "port": free_port(), "interface": "127.0.0.1",
                          "backlog": BACKLOG}},
            {"type": "rawsocket", "id": "management", "serializers": ["cbor", "msgpack", "json"],
             "endpoint": {"type": "tcp", "port": free_port(), "interface": "127.0.0.1",
                          "backlog": BACKLOG},
             "auth": {"ticket": {"type": "static", "principals": principals}}},
        ],
    }


def rawsocket_transport(port: int, serializer: str = "cbor") -> dict[str, Any]:
    """A component's client transport to the app realm's RawSocket port."""
    return {"type": "rawsocket", "serializer": serializer,
            "endpoint": {"type": "tcp", "host": "127.0.0.1", "port": port}}


def component(
    classname: str, port: int, extra: dict[str, Any] | None = None, component_id: str = ""
) -> dict[str, Any]:
    """A class component on realm1 (Crossbar.io's component format)."""
    config: dict[str, Any] = {"type": "class", "classname": f"benchapps.{classname}",
                              "realm": APP_REALM, "transport": rawsocket_transport(port)}
    if component_id:
        config["id"] = component_id
    if extra:
        config["extra"] = extra
    return config


def websocket_transport(port: int) -> dict[str, Any]:
    """A component's client transport to the node's web transport, path ``ws``."""
    return {"type": "websocket", "url": f"ws://127.0.0.1:{port}/ws", "serializers": ["cbor"],
            "endpoint": {"type": "tcp", "host": "127.0.0.1", "port": port}}


def node_config(
    port: int, components: list[dict[str, Any]], options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One router worker serving a web transport (a static page at ``/``, WAMP at ``ws``) and
    one container worker, for ``container run`` and ``crossbar start``; the node folder needs
    a ``web`` folder (:func:`write_web_folder`)."""
    return {
        "version": 2,
        "controller": {},
        "workers": [
            {
                "type": "router",
                "id": "router1",
                "realms": [{"name": APP_REALM,
                            "roles": [{"name": "anonymous", "permissions": allow_all()}]}],
                "transports": [{
                    "type": "web",
                    "id": "app",
                    "endpoint": {"type": "tcp", "port": port, "interface": "127.0.0.1",
                                 "backlog": BACKLOG},
                    "paths": {
                        "/": {"type": "static", "directory": "web"},
                        "ws": {"type": "websocket", "serializers": ["cbor", "msgpack", "json"]},
                    },
                }],
            },
            {
                "type": "container",
                "id": "container1",
                "options": {"pythonpath": [APPS], **(options or {})},
                "components": components,
            },
        ],
    }


def stamp_components(
    classname: str, port: int, count: int, stamp_file: Path, **extra: Any
) -> list[dict[str, Any]]:
    """``count`` components of one benchmark class, keys c0000..., stamping into one file."""
    return [
        component(classname, port, {"stamp_file": str(stamp_file), "key": f"c{i:04d}", **extra},
                  component_id=f"c{i:04d}")
        for i in range(count)
    ]


def write_web_folder(folder: Path) -> None:
    """The static page the node configuration's web transport serves."""
    (folder / "web").mkdir(exist_ok=True)
    (folder / "web" / "index.html").write_text("<!doctype html><title>bench</title>\n")

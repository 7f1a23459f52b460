"""Fixtures: a real Crossbar.io router process on free loopback ports, and container workers
joined to its management realm, each with a management client following its events."""

from __future__ import annotations

import itertools
import os
import sys
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor

from container.config import EndpointSpec, parse_container_options
from container.management import Credentials, ManagementAddress
from container.worker.process import Worker, WorkerSettings
from tests import wampclient
from tests.routerproc import RouterProcess, start_router_process

APPS = os.path.join(os.path.dirname(__file__), "apps")
WORKER_TICKET = "worker-secret"
TESTER_TICKET = "tester-secret"
CRA_WORKER_SECRET = "cra-worker-secret"
APP_TICKET = "alice-ticket"
APP_CRA_SECRET = "bob-secret"

if APPS not in sys.path:
    sys.path.insert(0, APPS)


def _allow_all(disclose: bool = False) -> list[dict[str, Any]]:
    return [{
        "uri": "", "match": "prefix",
        "allow": {"call": True, "register": True, "publish": True, "subscribe": True},
        "disclose": {"caller": disclose, "publisher": disclose},
        "cache": True,
    }]


def router_config(unix_path: str) -> dict[str, Any]:
    """realm1 for applications (anonymous); realm 'crossbar' for management (ticket only)."""
    management_auth = {
        "ticket": {"type": "static", "principals": {
            "worker": {"ticket": WORKER_TICKET, "role": "controller"},
            "tester": {"ticket": TESTER_TICKET, "role": "controller"},
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
    return {
        "type": "router",
        "id": "testrouter",
        "realms": [
            {"name": "realm1", "roles": [{"name": "anonymous", "permissions": _allow_all()},
                                         {"name": "app", "permissions": _allow_all()}]},
            {"name": "crossbar",
             "roles": [{"name": "controller", "permissions": _allow_all(disclose=True)}]},
        ],
        "transports": [
            {"type": "universal", "id": "app",
             "endpoint": {"type": "tcp", "port": 0, "interface": "127.0.0.1", "backlog": 1024},
             "rawsocket": {"serializers": ["cbor", "msgpack", "json"]},
             "websocket": {"ws": {"type": "websocket",
                                  "serializers": ["cbor", "msgpack", "json"]}}},
            {"type": "rawsocket", "id": "management",
             "endpoint": {"type": "tcp", "port": 0, "interface": "127.0.0.1", "backlog": 1024},
             "serializers": ["cbor", "msgpack", "json"],
             "auth": management_auth},
            {"type": "rawsocket", "id": "appauth",
             "endpoint": {"type": "tcp", "port": 0, "interface": "127.0.0.1"},
             "serializers": ["cbor", "msgpack", "json"], "auth": app_auth},
            {"type": "rawsocket", "id": "appunix",
             "endpoint": {"type": "unix", "path": unix_path},
             "serializers": ["cbor", "msgpack", "json"]},
        ],
    }


@dataclass
class RouterAddresses:
    process: RouterProcess

    def port(self, transport_id: str) -> int:
        for transport in self.process.transports:
            if transport["id"] == transport_id:
                return int(transport["endpoint"]["port"])
        raise KeyError(transport_id)

    @property
    def app_port(self) -> int:
        return self.port("app")

    @property
    def management_port(self) -> int:
        return self.port("management")

    @property
    def unix_path(self) -> str:
        for transport in self.process.transports:
            if transport["id"] == "appunix":
                return str(transport["endpoint"]["path"])
        raise KeyError("appunix")

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


@pytest.fixture(scope="session")
def router(tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = tmp_path_factory.mktemp("router")
    process = start_router_process(router_config(str(folder / "app.sock")), folder)
    yield RouterAddresses(process)
    process.stop()


_worker_ids = itertools.count(1)


@dataclass
class WorkerEnv:
    """A container worker in this process, and a management client watching it."""

    worker: Worker
    client: wampclient.ClientSession
    events: wampclient.EventLog
    router: RouterAddresses
    prefix: str
    ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def call(self, procedure: str, *args: Any, **kwargs: Any) -> Any:
        return self.client.call(f"{self.prefix}.{procedure}", *args, **kwargs)

    def component(self, classname: str, transport: dict[str, Any] | None = None,
                  **fields: Any) -> dict[str, Any]:
        """A class component config on realm1 over RawSocket (unless told otherwise)."""
        config = {"type": "class", "classname": classname, "realm": "realm1",
                  "transport": transport or self.router.rawsocket_transport()}
        config.update(fields)
        return config

    def unique(self, stem: str = "com.test") -> str:
        """A URI prefix no other test uses."""
        return f"{stem}.{self.worker.settings.worker_id}.n{next(self.ids)}"


async def start_worker_env(
    router: RouterAddresses, options: dict[str, Any] | None = None,
    state_file: str | None = None, worker_id: str | None = None,
    credentials: Credentials | None = None,
) -> WorkerEnv:
    worker_id = worker_id or f"w{next(_worker_ids)}"
    prefix = f"crossbar.worker.{worker_id}"
    client = await wampclient.connect(
        router.management_address(), "crossbar", authid="tester", ticket=TESTER_TICKET
    )
    events = wampclient.EventLog()
    await events.subscribe(client, prefix + ".")
    settings = WorkerSettings(
        worker_id=worker_id,
        management=ManagementAddress(
            "rawsocket", EndpointSpec("tcp", host="127.0.0.1", port=router.management_port)
        ),
        options=parse_container_options(options or {}),
        credentials=credentials or Credentials("worker", "ticket", WORKER_TICKET),
        state_file=state_file,
    )
    worker = Worker(reactor, settings)
    worker.start()
    await events.wait_for("on_worker_ready")
    return WorkerEnv(worker, client, events, router, prefix)


async def stop_worker_env(env: WorkerEnv) -> None:
    if env.worker.exit_code is None:
        await env.worker.shutdown()
        await env.worker.done.addTimeout(30, reactor)
    await wampclient.close(env.client)


@pytest_twisted.async_yield_fixture
async def workers(router: RouterAddresses) -> Any:
    """``await workers(options)`` starts a worker; all are shut down after the test."""
    started: list[WorkerEnv] = []

    async def start(options: dict[str, Any] | None = None, **kwargs: Any) -> WorkerEnv:
        env = await start_worker_env(router, options, **kwargs)
        started.append(env)
        return env

    yield start
    for env in started:
        await stop_worker_env(env)


@pytest_twisted.async_yield_fixture
async def env(workers: Any) -> Any:
    """One worker with default options."""
    yield await workers()

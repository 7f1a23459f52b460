"""Container workers in the test process, each joined to the shared router's management realm
and followed by a management client that records its events."""

from __future__ import annotations

import itertools
import json
import sys
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import reactor

from container.management import Credentials, ManagementAddress
from container.options import parse_container_options
from container.transports import EndpointSpec
from container.worker.process import Worker, WorkerSettings
from tests.support import wampclient
from tests.support.paths import APPS
from tests.support.router import TESTER_TICKET, WORKER_TICKET, RouterAddresses

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


async def management_events(
    router: RouterAddresses, prefix: str
) -> tuple[wampclient.ClientSession, wampclient.EventLog]:
    """A management client ("tester") and the events it receives under ``prefix``."""
    client = await wampclient.connect(
        router.management_address(), "crossbar", authid="tester", ticket=TESTER_TICKET
    )
    return client, await wampclient.follow(client, prefix)


def worker_argv(port: int, worker_id: str, options: dict[str, Any], *extra: str,
                realm: str = "crossbar", secret_env: str = "TEST_WORKER_TICKET") -> list[str]:
    """``container worker`` joining the management realm at ``127.0.0.1:port`` as "worker",
    its ticket read from the environment variable ``secret_env``."""
    return [sys.executable, "-m", "container", "worker",
            "--management", f"rs://127.0.0.1:{port}", "--realm", realm,
            "--id", worker_id, "--authid", "worker", "--secret-env", secret_env,
            "--options", json.dumps(options), *extra]


def worker_command(router: RouterAddresses, worker_id: str, *extra: str,
                   options: dict[str, Any] | None = None) -> list[str]:
    """``worker_argv`` for ``router`` (the ticket in TEST_WORKER_TICKET), the test apps
    importable."""
    return worker_argv(router.management_port, worker_id,
                       options or {"pythonpath": [APPS]}, *extra)


async def start_worker_env(
    router: RouterAddresses, options: dict[str, Any] | None = None,
    state_file: str | None = None, worker_id: str | None = None,
    credentials: Credentials | None = None,
) -> WorkerEnv:
    worker_id = worker_id or f"w{next(_worker_ids)}"
    prefix = f"crossbar.worker.{worker_id}"
    client, events = await management_events(router, prefix)
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

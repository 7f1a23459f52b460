"""The managed floor: the least a process can do to start sessions through a management call.

``python benchmarks/managed_floor.py --port P --management-port M --prefix PREFIX``
(the ticket for the management realm in ``$BENCH_WORKER_TICKET``)

A bare autobahn/Twisted process, like ``floor.py``, that joins the management realm as the
container worker does (RawSocket over TCP, CBOR, ticket) and registers one procedure,
``PREFIX.start_component(component_id, config)``: each call opens one plain session to the
application router, exactly as ``floor.py`` opens each of its sessions, and returns
``{"id", "session", "started"}`` once that session joined (``started`` is the wall-clock
time of its ``onJoin``, as in the container's result). Nothing else: no configuration
check, no records, no events, no timers. The runner calls it N times concurrently and
times it as it times the container: the difference from ``floor.py`` is the cost of
starting through a WAMP call at all; the difference from the container is what the
container adds on top. It prints ``{"event": "ready", "pid": ...}`` once registered and
exits on SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from typing import Any

from autobahn.twisted.rawsocket import WampRawSocketClientFactory
from autobahn.twisted.wamp import ApplicationSession
from autobahn.wamp.serializer import CBORSerializer
from autobahn.wamp.types import ComponentConfig
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint


def say(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


class PlainSession(ApplicationSession):
    """A plain session that reports its join to the call waiting for it."""

    joined: Deferred[dict[str, Any]]

    def onJoin(self, details: Any) -> None:
        self.joined.callback({"session": details.session,
                              "started": datetime.now(UTC).isoformat().replace("+00:00", "Z")})


class Manager(ApplicationSession):
    """Joins the management realm with a ticket and serves ``start_component``."""

    args: argparse.Namespace

    def onConnect(self) -> None:
        self.join(self.config.realm, authmethods=["ticket"], authid=self.args.authid)

    def onChallenge(self, challenge: Any) -> str:
        return os.environ["BENCH_WORKER_TICKET"]

    async def onJoin(self, details: Any) -> None:
        await self.register(self.start_component, f"{self.args.prefix}.start_component")
        say({"event": "ready", "pid": os.getpid()})

    def start_component(self, component_id: str, config: dict[str, Any]) -> Deferred[Any]:
        session = PlainSession(ComponentConfig(realm=self.args.app_realm))
        session.joined = Deferred()
        factory = WampRawSocketClientFactory(lambda: session, serializer=CBORSerializer())
        factory.noisy = False
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.args.port, timeout=30)
        endpoint.connect(factory).addErrback(session.joined.errback)
        return session.joined.addCallback(lambda joined: {"id": component_id, **joined})

    def onDisconnect(self) -> None:
        if reactor.running:
            reactor.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="application router port")
    parser.add_argument("--management-port", type=int, required=True)
    parser.add_argument("--management-realm", default="crossbar")
    parser.add_argument("--app-realm", default="realm1")
    parser.add_argument("--authid", default="worker")
    parser.add_argument("--prefix", required=True)
    args = parser.parse_args()
    manager = Manager(ComponentConfig(realm=args.management_realm))
    manager.args = args
    factory = WampRawSocketClientFactory(lambda: manager, serializer=CBORSerializer())
    factory.noisy = False
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", args.management_port, timeout=30)
    endpoint.connect(factory).addErrback(lambda failure: (say(
        {"event": "error", "error": str(failure.value)}), reactor.stop()))
    reactor.run()


if __name__ == "__main__":
    main()

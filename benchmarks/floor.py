"""The floor: a bare process that imports autobahn's Twisted stack and opens N plain sessions.

``python benchmarks/floor.py --host H --port P --realm R --n N [--serializer cbor]``

It imports only what any autobahn/Twisted client needs (the reactor, autobahn's Twisted
WAMP session, its RawSocket and WebSocket client factories and its serializers, as the
container worker does), prints ``{"event": "ready", "pid": ...}`` and waits for commands
on stdin, one per line:

* ``go``: open N sessions concurrently (one TCP connection and one RawSocket client factory
  with its own serializer each, as the container does per component), then print
  ``{"event": "joined", "elapsed": S, "first": S1, "joined": N, "failed": F}``, where
  ``elapsed`` runs from the first connect to the last ``onJoin`` and ``first`` to the first;
* ``quit``: leave every session, wait (bounded) for the transports to close, exit 0.

Nothing else is imported (no psutil): the runner measures this process's memory from
outside, so the idle figure is the cost of the autobahn/Twisted stack alone.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import autobahn.twisted.websocket  # noqa: F401 - part of the stack the worker imports
from autobahn.twisted.rawsocket import WampRawSocketClientFactory
from autobahn.twisted.wamp import ApplicationSession
from autobahn.wamp.serializer import CBORSerializer, JsonSerializer, MsgPackSerializer
from autobahn.wamp.types import ComponentConfig
from twisted.internet import reactor, stdio
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.protocols.basic import LineReceiver

SERIALIZERS = {"cbor": CBORSerializer, "msgpack": MsgPackSerializer, "json": JsonSerializer}
JOIN_TIMEOUT = 120.0
QUIT_TIMEOUT = 10.0


def say(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


class FloorSession(ApplicationSession):
    """A plain session: tells the opener when it joined and when its transport closed."""

    opener: Opener

    def onJoin(self, details: Any) -> None:
        self.opener.joined_one()

    def onLeave(self, details: Any) -> None:
        self.disconnect()

    def onDisconnect(self) -> None:
        self.opener.closed_one()


class Opener:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.sessions: list[FloorSession] = []
        self.joined = 0
        self.failed = 0
        self.closed = 0
        self.started = 0.0
        self.first_joined = 0.0
        self.reported = False
        self.quitting = False

    def go(self) -> None:
        endpoint = TCP4ClientEndpoint(reactor, self.args.host, self.args.port, timeout=30)
        self.started = time.monotonic()
        for _ in range(self.args.n):
            session = FloorSession(ComponentConfig(realm=self.args.realm))
            session.opener = self
            self.sessions.append(session)
            factory = WampRawSocketClientFactory(
                lambda s=session: s, serializer=SERIALIZERS[self.args.serializer]()
            )
            factory.noisy = False
            endpoint.connect(factory).addErrback(self.failed_one)
        reactor.callLater(JOIN_TIMEOUT, self.report)

    def joined_one(self) -> None:
        if not self.joined:
            self.first_joined = time.monotonic() - self.started
        self.joined += 1
        self.check()

    def failed_one(self, failure: Any) -> None:
        self.failed += 1
        self.check()

    def check(self) -> None:
        if self.joined + self.failed >= self.args.n:
            self.report()

    def report(self) -> None:
        if self.reported:
            return
        self.reported = True
        say({"event": "joined", "elapsed": time.monotonic() - self.started,
             "first": self.first_joined,
             "joined": self.joined, "failed": self.failed})

    def closed_one(self) -> None:
        self.closed += 1
        if self.quitting and self.closed >= self.joined:
            self.stop()

    def quit(self) -> None:
        self.quitting = True
        attached = [s for s in self.sessions if s.is_attached()]
        if not attached:
            self.stop()
            return
        for session in attached:
            session.leave()
        reactor.callLater(QUIT_TIMEOUT, self.stop)

    def stop(self) -> None:
        if reactor.running:
            reactor.stop()


class Commands(LineReceiver):
    delimiter = b"\n"

    def __init__(self, opener: Opener) -> None:
        self.opener = opener

    def lineReceived(self, line: bytes) -> None:
        command = line.strip().decode()
        if command == "go":
            self.opener.go()
        elif command == "quit":
            self.opener.quit()

    def connectionLost(self, reason: Any = None) -> None:
        self.opener.quit()  # the runner went away


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--realm", default="realm1")
    parser.add_argument("--serializer", default="cbor", choices=sorted(SERIALIZERS))
    parser.add_argument("--n", type=int, required=True)
    args = parser.parse_args()
    opener = Opener(args)
    stdio.StandardIO(Commands(opener))
    reactor.callWhenRunning(say, {"event": "ready", "pid": os.getpid()})
    reactor.run()


if __name__ == "__main__":
    main()

"""What tests/node/test_crossbar_features.py needs besides the nodes of tests/node/test_node.py: the
feature corpus placed on free ports, a WAMP client that speaks every auth method the corpus
uses, and a plain HTTP client (Twisted's Agent)."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import socket
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

from autobahn.twisted.rawsocket import WampRawSocketClientFactory
from autobahn.twisted.wamp import ApplicationSession
from autobahn.twisted.websocket import WampWebSocketClientFactory
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import ComponentConfig
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers

FEATURES = Path(__file__).resolve().parent / "configs" / "features"
TIMEOUT = 30.0

#: Where the corpus writes a port: ``"port": 18180`` and ``127.0.0.1:18180`` in URLs. Every
#: placeholder port is in 18000..18999 and stands for one free port in every file of a run.
_PORT = re.compile(r'(?<="port": )18\d{3}\b|(?<=127\.0\.0\.1:)18\d{3}\b')


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Corpus:
    """A copy of tests/configs/features/ whose placeholder ports are free ports; only the
    numbers change, so line and column positions stay those of the files in the repo."""

    root: Path
    ports: dict[int, int] = field(default_factory=dict)

    @classmethod
    def copy_to(cls, folder: Path) -> Corpus:
        # what a run in the repository may have left (run dir, node keys) is not copied
        shutil.copytree(FEATURES, folder, ignore=shutil.ignore_patterns(
            "__pycache__", ".container-run", "key.priv", "key.pub"))
        corpus = cls(folder)
        for path in sorted(folder.rglob("*.json")):
            corpus.place(path)
        return corpus

    def place(self, path: Path) -> None:
        """Rewrite the placeholder ports of ``path`` (in place) to free ports."""
        text = path.read_text()
        path.write_text(_PORT.sub(lambda m: str(self.port(int(m[0]))), text))

    def port(self, placeholder: int) -> int:
        if placeholder not in self.ports:
            self.ports[placeholder] = free_port()
        return self.ports[placeholder]

    def path(self, name: str) -> Path:
        return self.root / name

    def config(self, name: str) -> dict[str, Any]:
        return json.loads(self.path(name).read_text())


def node_public_key(folder: Path) -> str:
    """The Ed25519 public key in a node directory's ``key.pub`` (Crossbar.io's tag format)."""
    for line in (folder / "key.pub").read_text().splitlines():
        tag, _, value = line.partition(":")
        if tag.strip() == "public-key-ed25519":
            return value.strip()
    raise AssertionError(f"no public-key-ed25519 in {folder / 'key.pub'}")


# -------------------------------------------------------------------------------------------
# WAMP


@dataclass(frozen=True)
class Auth:
    """How a client authenticates: WAMP-Anonymous by default."""

    methods: tuple[str, ...] = ("anonymous",)
    authid: str | None = None
    ticket: str | None = None
    key: Any = None  # autobahn.wamp.cryptosign.CryptosignKey

    @classmethod
    def with_ticket(cls, authid: str, ticket: str) -> Auth:
        return cls(("ticket",), authid, ticket=ticket)

    @classmethod
    def with_key(cls, authid: str, key: Any) -> Auth:
        return cls(("cryptosign",), authid, key=key)


class Client(ApplicationSession):
    """``joined`` fires with the session on WELCOME, fails with the ABORT's URI and message."""

    def __init__(self, config: ComponentConfig, auth: Auth) -> None:
        super().__init__(config)
        self.auth = auth
        self.details: Any = None
        self.joined: Deferred[Client] = Deferred()
        self.closed: Deferred[None] = Deferred()

    def onConnect(self) -> None:
        extra = {"pubkey": self.auth.key.public_key()} if self.auth.key is not None else None
        self.join(self.config.realm, authmethods=list(self.auth.methods), authid=self.auth.authid,
                  authextra=extra)

    def onChallenge(self, challenge: Any) -> Any:
        if challenge.method == "ticket":
            return self.auth.ticket
        if challenge.method == "cryptosign":
            return self.auth.key.sign_challenge(challenge)
        raise ValueError(f"unexpected challenge {challenge.method}")

    def onJoin(self, details: Any) -> None:
        self.details = details
        if not self.joined.called:
            self.joined.callback(self)

    def onLeave(self, details: Any) -> None:
        if not self.joined.called:
            self.joined.errback(ApplicationError(details.reason, details.message or ""))
        self.disconnect()

    def onDisconnect(self) -> None:
        super().onDisconnect()
        if not self.joined.called:
            self.joined.errback(ConnectionError("transport closed before the session joined"))
        if not self.closed.called:
            self.closed.callback(None)


async def join(address: str, realm: str = "realm1", auth: Auth | None = None) -> Client:
    """Join ``realm`` at ``rs://127.0.0.1:PORT`` (RawSocket) or ``ws://127.0.0.1:PORT/PATH``."""
    session = Client(ComponentConfig(realm=realm), auth or Auth())
    scheme, _, rest = address.partition("://")
    hostport = rest.split("/", 1)[0]
    host, _, port = hostport.rpartition(":")
    if scheme == "ws":
        factory: Any = WampWebSocketClientFactory(lambda: session, url=address)
    else:
        factory = WampRawSocketClientFactory(lambda: session)
    factory.noisy = False
    await TCP4ClientEndpoint(reactor, host, int(port)).connect(factory)
    return await session.joined.addTimeout(TIMEOUT, reactor)


async def leave(session: Client) -> None:
    if session.is_attached():
        session.leave()
    elif session._transport is not None:
        session.disconnect()
    else:
        return
    with contextlib.suppress(Exception):
        await session.closed.addTimeout(TIMEOUT, reactor)


class Events:
    """Events of one subscription, in order; ``next()`` waits for the next one."""

    def __init__(self) -> None:
        self.received: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        self._waiting: list[Deferred[Any]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        self.received.append((args, kwargs))
        waiting, self._waiting = self._waiting, []
        for deferred in waiting:
            deferred.callback(None)

    async def wait(self, count: int = 1) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
        while len(self.received) < count:
            waiter: Deferred[Any] = Deferred()
            self._waiting.append(waiter)
            await waiter.addTimeout(TIMEOUT, reactor)
        return self.received


# -------------------------------------------------------------------------------------------
# HTTP


@dataclass(frozen=True)
class Response:
    code: int
    headers: Headers
    body: bytes

    def header(self, name: str) -> str:
        values = self.headers.getRawHeaders(name.encode(), [b""])
        return values[0].decode()

    def json(self) -> Any:
        return json.loads(self.body)


async def http(method: str, url: str, body: bytes | None = None,
               content_type: str | None = None) -> Response:
    """One HTTP request on a fresh connection (closed after), redirects not followed."""
    agent = Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False))
    headers = Headers({b"content-type": [content_type.encode()]} if content_type else {})
    producer = FileBodyProducer(BytesIO(body)) if body is not None else None
    response = await agent.request(method.encode(), url.encode(), headers, producer).addTimeout(
        TIMEOUT, reactor)
    data = await readBody(response)
    return Response(response.code, response.headers, data)


async def post_json(url: str, document: Any) -> Response:
    return await http("POST", url, json.dumps(document).encode(), "application/json")

"""What the feature tests (tests/node/test_crossbar_features.py, test_tls_auth.py) need besides
nodes: the feature corpus placed on free ports, a WAMP client that speaks every auth method the
corpus uses, and a plain HTTP client (Twisted's Agent)."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

from autobahn.twisted.wamp import ApplicationSession
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import ComponentConfig
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers

from tests.support import wampclient
from tests.support.paths import TESTS
from tests.support.ports import free_port

FEATURES = TESTS / "configs" / "features"
TIMEOUT = 30.0

#: Where the corpus writes a port: ``"port": 18180`` and ``127.0.0.1:18180`` in URLs. Every
#: placeholder port is in 18000..18999 and stands for one free port in every file of a run.
_PORT = re.compile(r'(?<="port": )18\d{3}\b|(?<=127\.0\.0\.1:)18\d{3}\b')


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
    kind = "websocket" if scheme == "ws" else "rawsocket"
    return await wampclient.open_session(
        session, {"kind": kind, "url": address, "host": host, "port": int(port)}, TIMEOUT)


@contextlib.asynccontextmanager
async def joined(address: str, realm: str = "realm1",
                 auth: Auth | None = None) -> AsyncIterator[Client]:
    """``async with joined(address) as session``: ``join``, and ``leave`` after."""
    session = await join(address, realm, auth)
    try:
        yield session
    finally:
        await leave(session)


async def call_once(address: str, procedure: str, *args: Any, realm: str = "realm1") -> Any:
    """Join ``realm`` at ``address`` anonymously, call ``procedure`` and leave again."""
    async with joined(address, realm) as session:
        return await session.call(procedure, *args)


async def leave(session: Client) -> None:
    """Leave, and wait (a while, at most) for the transport to close."""
    with contextlib.suppress(Exception):
        await wampclient.close(session)


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
    body_read = _Body()
    response.deliverBody(body_read)
    data = await body_read.done.addTimeout(TIMEOUT, reactor)
    return Response(response.code, response.headers, data)


class _Body(Protocol):
    """Collects a response body. Twisted's ``readBody`` would do, but it warns (deprecated)
    when the transport has no ``abortConnection``, which the Agent's responses lack."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.done: Deferred[bytes] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if reason.check(ResponseDone, PotentialDataLoss):
            self.done.callback(bytes(self.data))
        else:
            self.done.errback(reason)


async def post_json(url: str, document: Any) -> Response:
    return await http("POST", url, json.dumps(document).encode(), "application/json")

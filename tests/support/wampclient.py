"""A WAMP client for tests: join a realm over a real socket, call, and await events."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from autobahn.twisted.rawsocket import WampRawSocketClientFactory
from autobahn.twisted.wamp import ApplicationSession
from autobahn.twisted.websocket import WampWebSocketClientFactory
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import ComponentConfig, SubscribeOptions
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, UNIXClientEndpoint

DEFAULT_TIMEOUT = 30.0


class ClientSession(ApplicationSession):
    """Joins with optional ticket credentials; ``joined`` fires once it is on the realm."""

    def __init__(self, config: ComponentConfig, authid: str | None, ticket: str | None):
        super().__init__(config)
        self.joined: Deferred[ClientSession] = Deferred()
        self.closed: Deferred[None] = Deferred()
        self._authid = authid
        self._ticket = ticket

    def onConnect(self) -> None:
        if self._authid:
            self.join(self.config.realm, authmethods=["ticket"], authid=self._authid)
        else:
            self.join(self.config.realm)

    def onChallenge(self, challenge: Any) -> str:
        return self._ticket or ""

    def onJoin(self, details: Any) -> None:
        if not self.joined.called:
            self.joined.callback(self)

    def onLeave(self, details: Any) -> None:
        if not self.joined.called:
            self.joined.errback(RuntimeError(f"refused: {details.reason} {details.message}"))
        self.disconnect()

    def onDisconnect(self) -> None:
        super().onDisconnect()
        if not self.closed.called:
            self.closed.callback(None)


async def connect(
    address: dict[str, Any],
    realm: str,
    authid: str | None = None,
    ticket: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    serializer: Any = None,
) -> ClientSession:
    """Join ``realm`` at ``address`` ({"kind": "websocket", "url", "host", "port"} or
    {"kind": "rawsocket", "host", "port"} or {"kind": "rawsocket", "path"}), with autobahn's
    default serializer unless ``serializer`` (an autobahn serializer instance) is given."""
    session = ClientSession(ComponentConfig(realm=realm), authid, ticket)
    return await open_session(session, address, timeout, serializer)


async def open_session(session: Any, address: dict[str, Any],
                       timeout: float = DEFAULT_TIMEOUT, serializer: Any = None) -> Any:
    """Connect ``session`` (whose ``joined`` Deferred fires once it is on its realm) to
    ``address`` (as for :func:`connect`) and wait until it has joined."""
    if address["kind"] == "websocket":
        serializers = [serializer] if serializer is not None else None
        factory: Any = WampWebSocketClientFactory(lambda: session, url=address["url"],
                                                  serializers=serializers)
    else:
        factory = WampRawSocketClientFactory(lambda: session, serializer=serializer)
    factory.noisy = False
    if "path" in address:
        endpoint: Any = UNIXClientEndpoint(reactor, address["path"])
    else:
        endpoint = TCP4ClientEndpoint(reactor, address["host"], address["port"])
    await endpoint.connect(factory)
    return await session.joined.addTimeout(timeout, reactor)


async def close(session: Any) -> None:
    """Leave (or, not joined, disconnect) and wait until the transport has closed; a session
    of any class with a ``closed`` Deferred."""
    if session.is_attached():
        session.leave()
    elif session._transport is not None:
        session.disconnect()
    else:
        return
    await session.closed.addTimeout(DEFAULT_TIMEOUT, reactor)


class EventLog:
    """Every event under a topic prefix, in arrival order, with awaitable matching."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self._waiters: list[tuple[Callable[[str, dict[str, Any]], bool], Deferred[Any]]] = []

    async def subscribe(self, session: ApplicationSession, prefix: str) -> None:
        await session.subscribe(
            self._received, prefix, options=SubscribeOptions(match="prefix", details_arg="details")
        )

    def _received(self, payload: Any = None, details: Any = None) -> None:
        topic = details.topic
        self.events.append((topic, payload))
        for waiter in list(self._waiters):
            predicate, deferred = waiter
            if deferred.called:
                self._waiters.remove(waiter)
            elif predicate(topic, payload):
                self._waiters.remove(waiter)
                deferred.callback((topic, payload))

    def topics(self, suffix: str) -> list[dict[str, Any]]:
        return [payload for topic, payload in self.events if topic.endswith("." + suffix)]

    def wait_for(
        self, suffix: str, timeout: float = DEFAULT_TIMEOUT,
        where: Callable[[dict[str, Any]], bool] = lambda payload: True, **fields: Any
    ) -> Deferred[dict[str, Any]]:
        """The first event (already seen or future) on ``*.suffix`` whose payload has
        ``fields`` and satisfies ``where``; fails after ``timeout`` seconds."""

        def matches(topic: str, payload: Any) -> bool:
            return topic.endswith("." + suffix) and isinstance(payload, dict) and all(
                payload.get(k) == v for k, v in fields.items()
            ) and where(payload)

        for topic, payload in self.events:
            if matches(topic, payload):
                done: Deferred[Any] = Deferred()
                done.callback(payload)
                return done
        waiter: Deferred[Any] = Deferred()
        self._waiters.append((matches, waiter))
        waiter.addCallback(lambda found: found[1])
        return waiter.addTimeout(timeout, reactor)

    def count(self, suffix: str, **fields: Any) -> int:
        return sum(
            1 for payload in self.topics(suffix)
            if all(payload.get(k) == v for k, v in fields.items())
        )


async def follow(session: ApplicationSession, prefix: str) -> EventLog:
    """An ``EventLog`` of every event ``session`` receives under the topic ``prefix``."""
    events = EventLog()
    await events.subscribe(session, prefix + ".")
    return events


async def poll(condition: Callable[[], bool], timeout: float = DEFAULT_TIMEOUT,
               interval: float = 0.01) -> None:
    """Wait until ``condition()`` is true, checking every ``interval`` up to ``timeout``.

    For state that no event announces; prefer :meth:`EventLog.wait_for` where one does.
    """
    deadline = reactor.seconds() + timeout
    while not condition():
        if reactor.seconds() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        waiter: Deferred[None] = Deferred()
        reactor.callLater(interval, waiter.callback, None)
        await waiter


async def expect_error(deferred: Any, uri: str) -> ApplicationError:
    """The ``ApplicationError`` a call fails with, after checking its URI."""
    with pytest.raises(ApplicationError) as caught:
        await deferred
    assert caught.value.error == uri, caught.value
    return caught.value


def message(error: ApplicationError) -> str:
    """An error's message: its first positional argument."""
    return error.args[0] if error.args else ""

"""A joined client session on the management realm: the worker serves the API through it,
the node and ``ctl`` call it and follow events."""


from __future__ import annotations

from collections.abc import Callable
from typing import Any

from autobahn.twisted.rawsocket import WampRawSocketClientFactory
from autobahn.twisted.wamp import ApplicationSession
from autobahn.twisted.websocket import WampWebSocketClientFactory
from autobahn.wamp import auth as wamp_auth
from autobahn.wamp.serializer import CBORSerializer, JsonSerializer, MsgPackSerializer
from autobahn.wamp.types import CloseDetails, ComponentConfig, SubscribeOptions
from twisted.internet.defer import Deferred

from container.connector import build_endpoint
from container.errors import CannotConnect
from container.management import Credentials, ManagementAddress

SERIALIZERS = {"cbor": CBORSerializer, "msgpack": MsgPackSerializer, "json": JsonSerializer}


class AuthenticatingSession(ApplicationSession):
    """Joins its realm with optional ticket or WAMP-CRA credentials."""

    credentials: Credentials | None = None

    def onConnect(self) -> None:
        if self.credentials is None:
            self.join(self.config.realm)
        else:
            self.join(self.config.realm, authmethods=[self.credentials.method],
                      authid=self.credentials.authid)

    def onChallenge(self, challenge: Any) -> str:
        credentials = self.credentials
        if credentials is None or challenge.method != credentials.method:
            raise RuntimeError(f"unexpected authentication challenge {challenge.method}")
        if challenge.method == "ticket":
            return credentials.secret
        extra = challenge.extra
        key = credentials.secret.encode("utf8")
        if "salt" in extra:
            key = wamp_auth.derive_key(
                credentials.secret, extra["salt"], extra["iterations"], extra["keylen"]
            )
        return wamp_auth.compute_wcs(key, extra["challenge"].encode("utf8")).decode("ascii")


def client_factory(
    address: ManagementAddress, make_session: Callable[[], ApplicationSession],
    serializer: str = "cbor",
) -> Any:
    """autobahn's client transport factory for ``address``."""
    instance = SERIALIZERS[serializer]()
    if address.kind == "websocket":
        factory: Any = WampWebSocketClientFactory(make_session, url=address.url,
                                                  serializers=[instance])
    else:
        factory = WampRawSocketClientFactory(make_session, serializer=instance)
    factory.noisy = False
    return factory


class ManagementClient(AuthenticatingSession):
    """A session on the management realm for callers: ``ready`` fires once joined."""

    def __init__(self, config: ComponentConfig) -> None:
        super().__init__(config)
        self.ready: Deferred[ManagementClient] = Deferred()
        self.closed: Deferred[CloseDetails | None] = Deferred()
        self.close_details: CloseDetails | None = None

    def onJoin(self, details: Any) -> None:
        if not self.ready.called:
            self.ready.callback(self)

    def onLeave(self, details: CloseDetails) -> None:
        self.close_details = details
        if not self.ready.called:
            self.ready.errback(CannotConnect(
                f"the management realm '{self.config.realm}' refused to let us join: "
                f"{details.reason} {details.message or ''}".strip()
            ))
        self.disconnect()

    def onDisconnect(self) -> None:
        super().onDisconnect()
        if not self.ready.called:
            self.ready.errback(CannotConnect("the management connection closed before joining"))
        if not self.closed.called:
            self.closed.callback(self.close_details)

    def worker_call(self, worker_prefix: str, procedure: str, *args: Any, **kwargs: Any) -> Any:
        """Call ``PREFIX.procedure``; errors stay ``ApplicationError``s."""
        return self.call(f"{worker_prefix}.{procedure}", *args, **kwargs)

    def follow(self, prefix: str, on_event: Callable[[str, Any], None]) -> Deferred[Any]:
        """Subscribe to every topic under ``prefix``; calls ``on_event(topic, payload)``."""

        def received(payload: Any = None, details: Any = None) -> None:
            on_event(details.topic, payload)

        return self.subscribe(
            received, prefix, options=SubscribeOptions(match="prefix", details_arg="details")
        )

    async def close(self, timeout: float = 5.0) -> None:
        if self.is_attached():
            self.leave()
        elif self._transport is not None:
            self.disconnect()
        else:
            return
        try:
            await self.closed.addTimeout(timeout, _reactor())
        except Exception:
            if self._transport is not None:
                self._transport.transport.abortConnection()


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


async def connect_management(
    reactor: Any, address: ManagementAddress, realm: str,
    credentials: Credentials | None = None, timeout: float = 10.0,
) -> ManagementClient:
    """Join the management realm once (no retry); fails with ``CannotConnect`` saying why."""
    session = ManagementClient(ComponentConfig(realm=realm))
    session.credentials = credentials
    endpoint = build_endpoint(reactor, address.endpoint)
    try:
        await endpoint.connect(client_factory(address, lambda: session))
    except Exception as error:
        raise CannotConnect(
            f"cannot connect to the management realm at {address.describe()}: {error}"
        ) from None
    return await session.ready.addTimeout(timeout, reactor)



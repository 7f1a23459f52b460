"""A joined client session on the management realm: joined once, or kept joined.

The worker serves the API through such a session; the node and ``ctl`` call it and follow
events. :func:`connect_management` joins once and says why it could not;
:class:`ReconnectingSession` keeps a session joined across router restarts, on Twisted's
``ClientService`` (the node's link and ``ctl watch`` use it; the worker can, too).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, cast

from autobahn.twisted.rawsocket import WampRawSocketClientFactory
from autobahn.twisted.wamp import ApplicationSession
from autobahn.twisted.websocket import WampWebSocketClientFactory
from autobahn.wamp import auth as wamp_auth
from autobahn.wamp.types import CloseDetails, ComponentConfig, SubscribeOptions
from twisted.application.internet import ClientService
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IProtocolFactory, IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from container.connector import SERIALIZERS, build_endpoint
from container.deferreds import log_failure, share
from container.errors import CannotConnect, InvalidConfiguration
from container.management import REFUSALS, Credentials, ManagementAddress
from container.undecodable import TolerantRawSocketProtocol, TolerantWebSocketProtocol, tolerant

log = Logger()


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
        return str(wamp_auth.compute_wcs(key, extra["challenge"].encode("utf8")).decode("ascii"))


def client_factory(
    address: ManagementAddress, make_session: Callable[[], ApplicationSession],
    serializer: str = "cbor",
) -> Any:
    """autobahn's client transport factory for ``address``."""
    make = SERIALIZERS.get(serializer)
    if make is None:
        raise InvalidConfiguration(f"the {serializer!r} serializer is not available here")
    instance = tolerant(make(), "the management session")
    if address.kind == "websocket":
        factory: Any = WampWebSocketClientFactory(make_session, url=address.url,
                                                  serializers=[instance])
        factory.protocol = TolerantWebSocketProtocol
    else:
        factory = WampRawSocketClientFactory(make_session, serializer=instance)
        factory.protocol = TolerantRawSocketProtocol
    factory.noisy = False
    return factory


class ManagementClient(AuthenticatingSession):
    """A session on the management realm for callers: ``ready`` fires once joined, ``closed``
    once the connection is gone (whoever ended it)."""

    def __init__(self, config: ComponentConfig, clock: Any) -> None:
        super().__init__(config)
        self.clock = clock  # for close()'s timeout: never the global reactor
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

        subscribed: Deferred[Any] = self.subscribe(
            received, prefix, options=SubscribeOptions(match="prefix", details_arg="details")
        )
        return subscribed

    async def close(self, timeout: float = 5.0) -> None:
        """Leave (or hang up) and wait for the connection to go, dropping it after
        ``timeout`` seconds: a router that no longer answers must not hold up a stop."""
        if self.is_attached():
            self.leave()
        elif self._transport is not None:
            self.disconnect()
        else:
            return
        try:
            await share(self.closed).addTimeout(timeout, self.clock)
        except Exception:
            self.abort()

    def abort(self) -> None:
        """Drop the connection at once."""
        _drop(self._transport)


def _drop(protocol: Any) -> None:
    transport = getattr(protocol, "transport", None)
    if transport is not None:
        transport.abortConnection()


async def connect_management(
    reactor: Any, address: ManagementAddress, realm: str,
    credentials: Credentials | None = None, timeout: float = 10.0,
) -> ManagementClient:
    """Join the management realm once (no retry); fails with ``CannotConnect`` saying why.

    A join that is refused, times out or is cancelled leaves no connection behind: a
    reconnecting caller would otherwise collect one per attempt.
    """
    session = ManagementClient(ComponentConfig(realm=realm), reactor)
    session.credentials = credentials
    endpoint: Any = build_endpoint(reactor, address.endpoint)  # zope: connect() is untyped
    try:
        protocol = await endpoint.connect(client_factory(address, lambda: session))
    except CancelledError:
        raise
    except Exception as error:
        raise CannotConnect(
            f"cannot connect to the management realm at {address.describe()}: {error}"
        ) from None
    try:
        return await session.ready.addTimeout(timeout, reactor)
    except BaseException:
        _drop(protocol)
        raise


# -- kept joined ---------------------------------------------------------------------------

Join = Callable[[], Deferred[ManagementClient]]


def joiner(
    reactor: Any, address: ManagementAddress, realm: str,
    credentials: Credentials | None = None, timeout: float = 10.0,
) -> Join:
    """One :func:`connect_management` attempt per call: the ``join`` of a
    :class:`ReconnectingSession`."""

    def join() -> Deferred[ManagementClient]:
        return Deferred.fromCoroutine(
            connect_management(reactor, address, realm, credentials, timeout))

    return join


def is_refusal(error: BaseException) -> bool:
    """The realm refused our credentials or role: joining again will not help."""
    text = str(error)
    return any(reason in text for reason in REFUSALS)


def _nothing(*_: Any) -> None:
    return None


class ReconnectingSession:
    """One management session, kept joined until :meth:`stop`.

    Twisted's ``ClientService`` does the retrying (its state machine, the ``retry`` policy
    ``attempt -> seconds`` on ``clock``, a stop that cancels a join in flight); to it, a
    *connection* is a joined session: its endpoint joins the realm and runs ``prepare``
    (subscribe, register), so a refused or timed-out join backs off like a refused TCP
    connection. A ``final`` error (by default a refusal of our credentials) is not
    retried: the session stops and ``on_given_up`` is told.

    ``on_joined(session)`` follows each join (``session`` is then set); ``on_lost(session)``
    each loss the caller did not cause by :meth:`stop`. Both run outside ClientService's
    state machine, so they may call :meth:`stop` or :meth:`kick`.
    """

    def __init__(
        self,
        clock: Any,  # IReactorTime (zope interfaces need a mypy plugin)
        join: Join,
        retry: Callable[[int], float],
        *,
        prepare: Callable[[ManagementClient], Awaitable[object]] | None = None,
        on_joined: Callable[[ManagementClient], object] = _nothing,
        on_lost: Callable[[ManagementClient], object] = _nothing,
        final: Callable[[BaseException], bool] = is_refusal,
        on_given_up: Callable[[BaseException], object] = _nothing,
        close_timeout: float = 5.0,
    ) -> None:
        self.session: ManagementClient | None = None
        self._clock = clock
        self._join = join
        self._retry = retry
        self._prepare = prepare
        self._on_joined = on_joined
        self._on_lost = on_lost
        self._final = final
        self._on_given_up = on_given_up
        self._close_timeout = close_timeout
        self._waiting = False  # ClientService waits for its next attempt
        self._in_connect = False  # inside ClientService's own transition (a synchronous join)
        self._stopping = False
        self._service = ClientService(
            cast(IStreamClientEndpoint, _JoiningEndpoint(self._attempt)),
            cast(IProtocolFactory, Factory.forProtocol(Protocol)),
            retryPolicy=self._delay, clock=clock,
        )

    def start(self) -> None:
        """Join now, and again after every loss, until :meth:`stop`."""
        self._service.startService()

    def kick(self) -> None:
        """Try at once rather than at the end of the backoff delay (the router has just
        said that it listens); nothing while joined or joining. The attempt count goes on."""
        if self._waiting and not self._stopping:
            self._service.stopService()  # while waiting: cancels the retry timer, at once
            self._service.startService()

    def stop(self) -> Deferred[None]:
        """Stop retrying and leave; fires once the session is gone (cancelling a join in
        flight, dropping a session that does not leave within ``close_timeout``)."""
        self._stopping = True
        if not self._service.running:
            return succeed(None)
        return self._service.stopService()

    # -- ClientService's side ------------------------------------------------------------------

    def _delay(self, attempt: int) -> float:
        self._waiting = True
        return self._retry(attempt)

    def _attempt(self, factory: Any) -> Deferred[Any]:
        self._waiting = False
        self._in_connect = True
        try:
            attempt = Deferred.fromCoroutine(self._join_prepared())
            connected: Deferred[Any] = attempt.addCallbacks(
                self._connected, self._failed, callbackArgs=(factory, attempt))
        finally:
            self._in_connect = False
        return connected

    async def _join_prepared(self) -> ManagementClient:
        session = await self._join()
        if self._prepare is not None:
            try:
                await self._prepare(session)
            except BaseException:
                session.abort()  # half prepared: of no use, and not ours to keep
                raise
        return session

    def _connected(
        self, session: ManagementClient, factory: Any, attempt: Deferred[Any]
    ) -> Any:
        """The session joined: hand ClientService a connection that stands for it (the
        factory is ClientService's, whose protocols tell it when they are lost)."""
        if session.closed.called:
            raise CannotConnect("the management connection closed while joining")
        connection = factory.buildProtocol(None)
        connection.makeConnection(_SessionTransport(lambda: self._close(session)))
        session.closed.addBoth(self._closed, session, connection)

        def settled(result: object) -> object:
            if not self._stopping and not session.closed.called:
                self.session = session
                self._notify(self._on_joined, session, "on_joined")
            return result

        if self._in_connect:  # ClientService takes the connection only after this call
            self._clock.callLater(0, settled, None)
        else:  # runs after ClientService's own callbacks: it is in its Connected state
            attempt.addBoth(settled)
        return connection

    def _failed(self, failure: Failure) -> Failure:
        error = failure.value
        if (self._stopping or error is None or isinstance(error, CancelledError)
                or not self._final(error)):
            return failure  # ClientService waits and tries again (or finishes stopping)
        if self._in_connect:  # not within ClientService's own transition: after it
            self._clock.callLater(0, self._give_up, error)
        else:
            self._give_up(error)
        return failure

    def _give_up(self, error: BaseException) -> None:
        if self._stopping:
            return
        self._stopping = True
        self._service.stopService()
        self._notify(self._on_given_up, error, "on_given_up")

    def _closed(self, result: object, session: ManagementClient, connection: Any) -> object:
        if self.session is session:
            self.session = None
            if not self._stopping:
                self._notify(self._on_lost, session, "on_lost")
        lost = Failure(ConnectionDone("the management session closed"))  # type: ignore[no-untyped-call]
        connection.connectionLost(lost)
        return result

    def _close(self, session: ManagementClient) -> None:
        closing = Deferred.fromCoroutine(session.close(self._close_timeout))
        log_failure(closing, log, "closing the management session")

    def _notify(self, callback: Callable[[Any], object], argument: Any, name: str) -> None:
        """A caller's callback that raises must not break the retrying: it is logged."""
        try:
            callback(argument)
        except Exception:
            log.failure("management session: the {name} callback raised", name=name)


class _JoiningEndpoint:
    """``ClientService``'s endpoint (an ``IStreamClientEndpoint``): its connections are
    joined sessions."""

    def __init__(self, attempt: Callable[[Any], Deferred[Any]]) -> None:
        self._attempt = attempt

    def connect(self, protocolFactory: Any) -> Deferred[Any]:
        return self._attempt(protocolFactory)


class _SessionTransport:
    """What ``ClientService`` closes when it stops: the joined session."""

    def __init__(self, close: Callable[[], None]) -> None:
        self._close = close

    def loseConnection(self) -> None:
        self._close()

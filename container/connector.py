"""Transport configuration to a connected autobahn client transport.

``connect`` builds the Twisted endpoint (TCP, TLS over TCP, unix socket, a Twisted endpoint
string, Tor) and autobahn's WebSocket or RawSocket client factory for one component, and
returns a :class:`ClientConnection` that calls ``on_closed`` once the transport is gone, for
whatever reason, even when the WebSocket or RawSocket opening handshake never completed
(autobahn tells the session nothing in that case). The connect Deferred is cancellable.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from autobahn.twisted.rawsocket import WampRawSocketClientFactory
from autobahn.twisted.websocket import WampWebSocketClientFactory
from autobahn.wamp import serializer as wamp_serializers
from autobahn.wamp.interfaces import ISession
from twisted.internet import error as net_error
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    UNIXClientEndpoint,
    clientFromString,
    wrapClientTLS,
)
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure

from container.errors import CannotConnect, InvalidConfiguration
from container.tls import client_tls_options
from container.transports import EndpointSpec, TransportSpec
from container.undecodable import TolerantRawSocketProtocol, TolerantWebSocketProtocol, tolerant

# The one table from serializer name to autobahn serializer class (each made with no
# argument), keyed by the names a configuration accepts
# (``container.transports.COMPONENT_SERIALIZERS``); None for one this Python lacks
# (UBJSONSerializer exists only when the py-ubjson package is installed).
SERIALIZERS: dict[str, Callable[[], wamp_serializers.Serializer] | None] = {
    "cbor": wamp_serializers.CBORSerializer,
    "msgpack": wamp_serializers.MsgPackSerializer,
    "json": wamp_serializers.JsonSerializer,
    "ubjson": getattr(wamp_serializers, "UBJSONSerializer", None),
}


class ClientConnection:
    """One component's live transport to its router."""

    __slots__ = ("close_reason", "is_closed", "on_closed", "protocol")

    def __init__(self, on_closed: Callable[[BaseException], None]) -> None:
        self.protocol: Protocol | None = None
        # told once, with the exception that ended the connection (ConnectionDone when
        # clean): a plain callback, as thousands of connections live in one worker
        self.on_closed = on_closed
        self.is_closed = False
        self.close_reason = ""

    def transport_closed(self, protocol: Protocol, reason: Failure) -> None:
        if not self.is_closed:
            self.is_closed = True
            self.on_closed(cast(BaseException, reason.value))

    def _transport(self) -> Any:
        """The protocol's transport, if any (an ``ITCPTransport``: zope interfaces are not
        typed for mypy)."""
        return None if self.protocol is None else self.protocol.transport

    def close(self) -> None:
        """Close the transport gracefully (the peer sees a clean close)."""
        transport = self._transport()
        if transport is not None:
            transport.loseConnection()

    def abort(self) -> None:
        """Drop the transport at once."""
        transport = self._transport()
        if transport is not None:
            transport.abortConnection()


class _ReportingWebSocketProtocol(TolerantWebSocketProtocol):
    def onClose(self, wasClean: bool, code: Any, reason: Any) -> None:
        if reason:
            self.factory.connection.close_reason = str(reason)
        super().onClose(wasClean, code, reason)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        try:
            super().connectionLost(reason)
        finally:
            self.factory.connection.transport_closed(self, reason)


class _ReportingRawSocketProtocol(TolerantRawSocketProtocol):
    def connectionLost(self, reason: Failure = connectionDone) -> None:
        try:
            super().connectionLost(reason)  # type: ignore[no-untyped-call]
        finally:
            self.factory.connection.transport_closed(self, reason)


class _WebSocketFactory(WampWebSocketClientFactory):
    protocol = _ReportingWebSocketProtocol
    noisy = False
    connection: ClientConnection


class _RawSocketFactory(WampRawSocketClientFactory):
    protocol = _ReportingRawSocketProtocol
    noisy = False
    connection: ClientConnection


def _serializer(name: str) -> Any:
    serializer = SERIALIZERS.get(name)
    if serializer is None:
        raise InvalidConfiguration(
            f"transport.serializer: the '{name}' serializer is not "
            "available in this Python (for ubjson, install the py-ubjson package)",
            key="transport.serializer",
        )
    return tolerant(serializer(), "this component")


def _build_factory(
    spec: TransportSpec, session_factory: Callable[[], ISession]
) -> _WebSocketFactory | _RawSocketFactory:
    if spec.kind == "websocket":
        factory = _WebSocketFactory(  # type: ignore[no-untyped-call]
            session_factory,
            url=spec.url,
            serializers=[_serializer(name) for name in spec.serializers],
        )
        if spec.options:
            _set_websocket_options(factory, spec.options)
        return factory
    rawsocket = _RawSocketFactory(  # type: ignore[no-untyped-call]
        session_factory, serializer=_serializer(spec.serializers[0]))
    if "max_message_size" in spec.options:
        rawsocket.protocol = _with_max_message_size(int(spec.options["max_message_size"]))
    return rawsocket


def _set_websocket_options(factory: _WebSocketFactory, options: dict[str, Any]) -> None:
    try:
        factory.setProtocolOptions(**options)  # type: ignore[no-untyped-call]
    except (TypeError, ValueError, AssertionError) as error:
        raise InvalidConfiguration(
            f"transport.options: {error}",
            key="transport.options",
        ) from None


def _with_max_message_size(size: int) -> type[_ReportingRawSocketProtocol]:
    class _SizedRawSocketProtocol(_ReportingRawSocketProtocol):
        def __init__(self) -> None:
            super().__init__()  # type: ignore[no-untyped-call]
            self._max_message_size = size

    return _SizedRawSocketProtocol


def build_endpoint(reactor: Any, spec: EndpointSpec) -> IStreamClientEndpoint:
    """The Twisted client endpoint for an endpoint configuration.

    (Twisted's endpoint classes declare ``IStreamClientEndpoint`` with zope's
    ``@implementer``, which mypy does not read: hence the casts.)
    """
    if spec.kind == "unix":
        unix = UNIXClientEndpoint(  # type: ignore[no-untyped-call]
            reactor, spec.path, timeout=spec.timeout)
        return cast(IStreamClientEndpoint, unix)
    if spec.kind == "twisted":
        return _string_endpoint(reactor, spec.client_string)
    if spec.kind == "tor":
        return _tor_endpoint(reactor, spec)
    tcp_class = TCP6ClientEndpoint if spec.version == 6 else TCP4ClientEndpoint
    endpoint = cast(IStreamClientEndpoint,
                    tcp_class(reactor, spec.host, spec.port, timeout=spec.timeout))
    if spec.tls is None:
        return endpoint
    return wrapClientTLS(_tls_options(spec), endpoint)


def _string_endpoint(reactor: Any, description: str) -> IStreamClientEndpoint:
    """Crossbar.io's ``twisted`` endpoint: any client endpoint Twisted can parse."""
    try:
        endpoint = clientFromString(reactor, description)  # type: ignore[no-untyped-call]
    except Exception as error:  # whatever Twisted's parser raises: the description is bad
        why = str(error) or type(error).__name__  # a file named in it may be missing
        raise InvalidConfiguration(
            f"transport.endpoint.client_string: "
            f"{description!r} is not a Twisted client endpoint description: {why}",
            key="transport.endpoint.client_string",
        ) from None
    return cast(IStreamClientEndpoint, endpoint)


def _tor_endpoint(reactor: Any, spec: EndpointSpec) -> IStreamClientEndpoint:
    """Crossbar.io's ``tor`` endpoint: through the Tor SOCKS port on 127.0.0.1."""
    try:
        import txtorcon  # type: ignore[import-untyped]
    except ImportError:
        raise InvalidConfiguration(
            "transport.endpoint.type: a 'tor' endpoint needs the "
            "txtorcon package, which is not installed",
            key="transport.endpoint.type",
        ) from None
    socks = TCP4ClientEndpoint(reactor, "127.0.0.1", spec.socks_port)
    return cast(IStreamClientEndpoint, txtorcon.TorClientEndpoint(
        spec.host, spec.port, socks_endpoint=socks, reactor=reactor, use_tls=False))


def _tls_options(spec: EndpointSpec) -> Any:
    """Checked before a start (``container.tls``); a file gone since is still named here."""
    return client_tls_options(spec.tls or {}, spec.host)


def connect(
    reactor: Any,
    spec: TransportSpec,
    session_factory: Callable[[], ISession],
    on_closed: Callable[[BaseException], None],
) -> tuple[ClientConnection, Deferred[ClientConnection]]:
    """Start connecting; returns the connection and a Deferred that fires once connected.

    The Deferred fails with :class:`CannotConnect` naming the address when the transport
    cannot be established; cancelling it stops the attempt.
    """
    connection = ClientConnection(on_closed)
    factory = _build_factory(spec, session_factory)
    factory.connection = connection
    endpoint: Any = build_endpoint(reactor, spec.endpoint)  # see build_endpoint on typing
    attempt: Deferred[Protocol] = endpoint.connect(factory)

    def connected(protocol: Protocol) -> ClientConnection:
        connection.protocol = protocol
        return connection

    def failed(failure: Failure) -> Failure:
        if isinstance(failure.value, CancelledError):
            return failure
        raise CannotConnect(
            f"cannot connect to {spec.describe()}: {_explain(failure)}", **spec.address())

    return connection, attempt.addCallbacks(connected, failed)


def _explain(failure: Failure) -> str:
    error = failure.value
    if isinstance(error, net_error.ConnectionRefusedError):
        return "connection refused (is the router running and listening there?)"
    if isinstance(error, net_error.TimeoutError | net_error.UserError):
        return "timed out"
    if isinstance(error, net_error.DNSLookupError):
        return "host name not found"
    return str(error) or type(error).__name__

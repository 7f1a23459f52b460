"""A message our serializer cannot decode costs that one message, not the session.

autobahn drops the whole connection when a message cannot be decoded (its transports turn
the serializer's ``ProtocolError`` into a close). Some messages are valid WAMP that only our
side cannot decode: an argument nested deeper than the decoder's limit (Python's recursion
limit for JSON, 400 levels for CBOR), which any client of a realm may send to a component.
Losing the component's session (or the worker's management session) for that would let one
anonymous caller knock components off.

:class:`TolerantSerializer` wraps a transport's serializer. When a payload cannot be decoded
it reads just the head of the message (its type and request id, which come first and are
small) and answers for that one message:

- an INVOCATION gets an ERROR back to the router, so the caller gets
  ``wamp.error.invalid_argument`` with the reason;
- a RESULT or ERROR for a call of ours becomes an ERROR for that call, so the caller inside
  the component gets the same;
- an EVENT is dropped, with a warning.

Anything else, or a payload whose head cannot be read, is still a protocol error and ends
the connection as before.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

import txaio
from autobahn.twisted.rawsocket import WampRawSocketClientProtocol
from autobahn.twisted.websocket import WampWebSocketClientProtocol
from autobahn.wamp import message
from autobahn.wamp.exception import ProtocolError

log = txaio.make_logger()

UNDECODABLE_URI = "wamp.error.invalid_argument"

_JSON_INTEGER = re.compile(rb"\s*,?\s*(\d+)")


def message_head(payload: bytes, serializer_name: str, count: int = 3) -> list[int]:
    """The leading integers (up to ``count``) of an encoded WAMP message: its type, then the
    request id (or, for an ERROR, the request type and id), without decoding the rest."""
    try:
        if serializer_name == "json":
            return _json_head(payload, count)
        if serializer_name == "msgpack":
            return _msgpack_head(payload, count)
        if serializer_name == "cbor":
            return _cbor_head(payload, count)
    except Exception:
        log.debug("the head of an undecodable message could not be read either")
    return []


def _json_head(payload: bytes, count: int) -> list[int]:
    start = re.match(rb"\s*\[", payload)
    if start is None:
        return []
    found: list[int] = []
    offset = start.end()
    while len(found) < count and (match := _JSON_INTEGER.match(payload, offset)):
        found.append(int(match.group(1)))
        offset = match.end()
    return found


def _msgpack_head(payload: bytes, count: int) -> list[int]:
    import msgpack

    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(payload)
    found: list[int] = []
    for _ in range(min(count, unpacker.read_array_header())):
        value = unpacker.unpack()
        if not isinstance(value, int):
            break
        found.append(value)
    return found


def _cbor_head(payload: bytes, count: int) -> list[int]:
    """CBOR: an array header (major type 4), then unsigned integers (major type 0)."""
    array = _cbor_uint(payload, 0, major=4)
    if array is None:
        return []
    found: list[int] = []
    offset = array[1]
    while len(found) < min(count, array[0]) and (item := _cbor_uint(payload, offset, major=0)):
        found.append(item[0])
        offset = item[1]
    return found


def _cbor_uint(payload: bytes, offset: int, major: int) -> tuple[int, int] | None:
    """The argument of the CBOR item at ``offset`` if it has major type ``major``, and the
    offset after it (RFC 8949, section 3: 0-23 inline, 24-27 for 1, 2, 4, 8 following bytes)."""
    if offset >= len(payload) or payload[offset] >> 5 != major:
        return None
    info = payload[offset] & 0x1F
    if info < 24:
        return info, offset + 1
    size = {24: 1, 25: 2, 26: 4, 27: 8}.get(info)
    if size is None or offset + 1 + size > len(payload):
        return None
    return int.from_bytes(payload[offset + 1: offset + 1 + size], "big"), offset + 1 + size


def _reason(error: ProtocolError) -> str:
    text = str(error)
    if "recursion" in text or "nesting depth" in text:
        return f"nested too deeply to decode ({text.split(': ', 1)[-1]})"
    return text


class TolerantSerializer:
    """A transport's serializer that answers for an undecodable message instead of raising.

    ``send`` is the transport's send and ``log`` the session's logger (both set by the
    protocol once it has them, :func:`bind`): an INVOCATION that cannot be decoded is
    answered through ``send``. Everything else is the wrapped serializer's.
    """

    def __init__(self, inner: Any, describe: Callable[[], str] = lambda: "session") -> None:
        self._inner = inner
        self.send: Callable[[Any], None] | None = None
        self.describe = describe
        self.log: Any = log

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "_inner":  # copy and pickle probe for these
            raise AttributeError(name)
        return getattr(self._inner, name)

    def __copy__(self) -> TolerantSerializer:
        """autobahn copies the factory's serializer for each connection (its statistics are
        per connection): copy the wrapped one, not just the wrapper."""
        return TolerantSerializer(copy.copy(self._inner), self.describe)

    def serialize(self, msg: Any) -> Any:
        return self._inner.serialize(msg)

    def unserialize(self, payload: bytes, isBinary: bool | None = None) -> list[Any]:
        try:
            return list(self._inner.unserialize(payload, isBinary))
        except ProtocolError as error:
            answered = self._answer(message_head(payload, self._inner.SERIALIZER_ID),
                                    _reason(error))
            if answered is None:
                raise
            return answered

    def _answer(self, head: list[int], reason: str) -> list[Any] | None:
        """The messages to hand to the session instead, or None when this one cannot be
        answered for (then the connection ends, as autobahn would have it)."""
        request = _request_of(head)
        if request is None:
            return None
        kind = head[0]
        if kind == message.Invocation.MESSAGE_TYPE and self.send is not None:
            self.log.warn("{who}: a call could not be decoded and was answered with an error: "
                     "{reason}", who=self.describe(), reason=reason)
            self.send(message.Error(kind, request, UNDECODABLE_URI,
                                    args=[f"the callee could not decode the call: {reason}"]))
            return []
        if kind in (message.Result.MESSAGE_TYPE, message.Error.MESSAGE_TYPE):
            self.log.warn("{who}: the answer to a call could not be decoded: {reason}",
                     who=self.describe(), reason=reason)
            return [message.Error(message.Call.MESSAGE_TYPE, request, UNDECODABLE_URI,
                                  args=[f"the answer could not be decoded: {reason}"])]
        if kind == message.Event.MESSAGE_TYPE:
            self.log.warn("{who}: an event could not be decoded and was dropped: {reason}",
                     who=self.describe(), reason=reason)
            return []
        return None


def _request_of(head: list[int]) -> int | None:
    """The request id an undecodable message refers to: ``[TYPE, REQUEST, ...]``, or for an
    ERROR ``[8, REQUEST_TYPE, REQUEST, ...]`` (only errors for our calls are answered)."""
    if len(head) >= 2 and head[0] != message.Error.MESSAGE_TYPE:
        return head[1]
    if len(head) == 3 and head[1] == message.Call.MESSAGE_TYPE:
        return head[2]
    return None


def bind(protocol: Any) -> None:
    """Give a connection's tolerant serializer the connection's ``send`` and, for a hosted
    component, its tagged logger (so a warning names the component)."""
    serializer = getattr(protocol, "_serializer", None)
    if isinstance(serializer, TolerantSerializer) and serializer.send is None:
        serializer.send = protocol.send
        run = getattr(protocol._session, "_container_run", None)
        if run is not None:
            serializer.log = run.log
            serializer.describe = lambda: "this component"


class TolerantWebSocketProtocol(WampWebSocketClientProtocol):
    """WAMP over WebSocket, answering for a message that cannot be decoded (module doc)."""

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        bind(self)
        super().onMessage(payload, isBinary)


class TolerantRawSocketProtocol(WampRawSocketClientProtocol):
    """WAMP over RawSocket, answering for a message that cannot be decoded (module doc)."""

    def stringReceived(self, payload: bytes) -> None:
        bind(self)
        super().stringReceived(payload)  # type: ignore[no-untyped-call]


def tolerant(serializer: Any, describe: str) -> TolerantSerializer:
    """``serializer`` (an autobahn WAMP serializer instance) wrapped for a connection of
    ``describe`` (e.g. "the management session")."""
    return TolerantSerializer(serializer, lambda: describe)

"""A message nested too deeply to decode costs that one message, not the session."""

from __future__ import annotations

import pytest
from autobahn.wamp import message
from autobahn.wamp.exception import ProtocolError
from autobahn.wamp.serializer import CBORSerializer, JsonSerializer, MsgPackSerializer

from container.undecodable import UNDECODABLE_URI, TolerantSerializer, message_head

SERIALIZERS = {"json": JsonSerializer, "msgpack": MsgPackSerializer, "cbor": CBORSerializer}


def nested(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


def too_deep(name: str, msg: message.Message) -> bytes:
    """``msg`` with a last argument nested past what ``name``'s decoder accepts: 600 levels
    for CBOR (its limit is 400); for JSON far past any recursion limit a process may set."""
    if name == "cbor":
        msg.args = [*msg.args[:-1], nested(600)]
        payload, _ = CBORSerializer().serialize(msg)
        return payload
    msg.args = [*msg.args[:-1], "DEEP"]
    payload, _ = JsonSerializer().serialize(msg)
    depth = 200_000
    return payload.replace(b'"DEEP"', b"[" * depth + b"]" * depth)


def binary(name: str) -> bool:
    return name != "json"


def invocation(depth: int) -> message.Invocation:
    return message.Invocation(123456, 77, args=[nested(depth)])


@pytest.mark.parametrize("name", ["json", "msgpack", "cbor"])
@pytest.mark.parametrize(("msg", "head"), [
    (message.Invocation(123456, 77, args=[1]), [68, 123456, 77]),
    (message.Result(4242, args=[1]), [50, 4242]),
    (message.Error(48, 99, "x.y", args=[1]), [8, 48, 99]),
    (message.Event(5, 6, args=[1]), [36, 5, 6]),
])
def test_message_head_reads_type_and_request_id_of_each_encoding(name, msg, head):
    payload, _ = SERIALIZERS[name]().serialize(msg)
    assert message_head(payload, name) == head


@pytest.mark.parametrize("name", ["json", "cbor"])
def test_an_invocation_too_deep_to_decode_is_answered_with_an_error(name):
    serializer = TolerantSerializer(SERIALIZERS[name](), lambda: "component c1")
    sent: list[message.Message] = []
    serializer.send = sent.append
    payload = too_deep(name, invocation(1))
    with pytest.raises(ProtocolError):
        SERIALIZERS[name]().unserialize(payload, binary(name))

    assert serializer.unserialize(payload, binary(name)) == []
    [error] = sent
    assert (error.request_type, error.request, error.error) == (68, 123456, UNDECODABLE_URI)
    assert "nested too deeply" in error.args[0]


@pytest.mark.parametrize("name", ["json", "cbor"])
def test_a_result_too_deep_to_decode_fails_that_call_only(name):
    serializer = TolerantSerializer(SERIALIZERS[name]())
    payload = too_deep(name, message.Result(4242, args=[nested(1)]))
    [error] = serializer.unserialize(payload, binary(name))
    assert isinstance(error, message.Error)
    assert (error.request_type, error.request, error.error) == (48, 4242, UNDECODABLE_URI)


def test_an_event_too_deep_to_decode_is_dropped():
    serializer = TolerantSerializer(JsonSerializer())
    payload = too_deep("json", message.Event(5, 6, args=[nested(1)]))
    assert serializer.unserialize(payload, False) == []


def test_garbage_is_still_a_protocol_error():
    serializer = TolerantSerializer(JsonSerializer())
    with pytest.raises(ProtocolError):
        serializer.unserialize(b"[68, 1, 2, {}, [" + b"[" * 600 + b"]", False)
    with pytest.raises(ProtocolError):
        serializer.unserialize(b'{"not": "wamp"', False)


def test_decodable_messages_pass_through_unchanged():
    serializer = TolerantSerializer(CBORSerializer())
    payload, binary = CBORSerializer().serialize(invocation(3))
    [msg] = serializer.unserialize(payload, binary)
    assert isinstance(msg, message.Invocation)
    assert msg.args == [nested(3)]

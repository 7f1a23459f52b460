"""What any client of a realm can send must not knock a component, or the worker's API, off
its router: a message too deep for our decoder costs that one message. And a component's
``onLeave`` that raises is reported with the component's id, never swallowed."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.serializer import MsgPackSerializer
from twisted.logger import LogEvent, formatEvent, globalLogPublisher

from tests.support import wampclient
from tests.support.router import TESTER_TICKET

# deeper than CBOR's decoder takes (400 levels), shallower than msgpack's encoder refuses
# (512): the caller can send it, the router passes it on, our CBOR side cannot decode it
DEPTH = 450


def nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


async def msgpack_client(address: dict[str, Any], realm: str, **auth: Any) -> Any:
    return await wampclient.connect(address, realm, serializer=MsgPackSerializer(), **auth)


@pytest_twisted.ensureDeferred
async def test_a_call_too_deep_to_decode_fails_that_call_and_the_component_stays(env):
    prefix = env.unique()
    await env.call("start_component", "greeter",
                   env.component("hello.Greeter", extra={"prefix": prefix}))
    caller = await msgpack_client(
        {"kind": "rawsocket", "host": "127.0.0.1", "port": env.router.app_port}, "realm1")
    try:
        with pytest.raises(ApplicationError) as caught:
            await caller.call(f"{prefix}.greet", nested(DEPTH))
        assert caught.value.error == "wamp.error.invalid_argument"
        assert "could not decode" in caught.value.args[0]
        # the same session answers the next call
        assert await caller.call(f"{prefix}.greet", "bob") == "hello bob"
    finally:
        await wampclient.close(caller)
    record = await env.call("get_component", "greeter")
    assert (record["state"], record["restarts"], record["stop_reason"]) == ("running", 0, None)
    assert env.events.count("on_component_stop") == 0


@pytest_twisted.ensureDeferred
async def test_a_management_call_too_deep_to_decode_fails_and_the_worker_keeps_its_session(
        env):
    tester = await msgpack_client(env.router.management_address(), "crossbar",
                                  authid="tester", ticket=TESTER_TICKET)
    try:
        config = env.component("hello.Quiet", extra={"deep": nested(DEPTH)})
        with pytest.raises(ApplicationError) as caught:
            await tester.call(f"{env.prefix}.start_component", "deep", config)
        assert caught.value.error == "wamp.error.invalid_argument"
        status = await tester.call(f"{env.prefix}.get_status")
    finally:
        await wampclient.close(tester)
    assert status["total"] == 0
    # the worker never lost its management session: it was not ready a second time
    assert env.events.count("on_worker_ready") == 1
    assert await env.call("get_components") == []


@pytest_twisted.ensureDeferred
async def test_an_onleave_that_raises_is_logged_with_the_component_id(env):
    events: list[LogEvent] = []
    globalLogPublisher.addObserver(events.append)
    try:
        await env.call("start_component", "leaver", env.component("faulty.LeaveRaises"))
        stopped = await env.call("stop_component", "leaver")
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert stopped["reason"] == "requested"
    lines = [formatEvent(event) for event in events]
    assert any("[component leaver]" in line and "onLeave raised RuntimeError: cleanup failed"
               in line for line in lines), lines


@pytest_twisted.ensureDeferred
async def test_a_wamp_error_a_procedure_raises_on_purpose_is_one_line_without_traceback(env):
    prefix = env.unique()
    await env.call("start_component", "errors",
                   env.component("hello.RaisesOnPurpose", extra={"prefix": prefix}))
    caller = await wampclient.connect(
        {"kind": "rawsocket", "host": "127.0.0.1", "port": env.router.app_port}, "realm1")
    events: list[LogEvent] = []
    globalLogPublisher.addObserver(events.append)
    try:
        with pytest.raises(ApplicationError) as caught:
            await caller.call(f"{prefix}.reserved")
    finally:
        globalLogPublisher.removeObserver(events.append)
        await wampclient.close(caller)
    assert caught.value.error == "com.myapp.error.reserved"
    lines = [line for line in map(formatEvent, events) if "[component errors]" in line]
    assert lines == ["[component errors] a handler raised com.myapp.error.reserved: "
                     "this name is reserved"]

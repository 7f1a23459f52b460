"""The management API end to end: a worker in this process, a real Crossbar.io router
process, and a management client calling over a real loopback socket."""

from __future__ import annotations

import os
from typing import Any

import pytest
import pytest_twisted
from autobahn.wamp.exception import ApplicationError
from twisted.internet import reactor
from twisted.internet.defer import DeferredList

from tests.support import wampclient
from tests.support.paths import APPS
from tests.support.ports import free_port
from tests.support.router import CRA_WORKER_SECRET
from tests.support.wampclient import expect_error, message, poll


async def app_client(env):
    return await wampclient.connect(
        {"kind": "rawsocket", "host": "127.0.0.1", "port": env.router.app_port}, "realm1"
    )


@pytest_twisted.ensureDeferred
async def test_start_returns_after_onjoin_finished(env):
    prefix = env.unique()
    started = await env.call("start_component", "c1",
                             env.component(
        "hello.Greeter", extra={"prefix": prefix}))
    assert started["id"] == "c1"
    assert started["state"] == "running"
    assert (started["ready_by"], started["phase"]) == ("onjoin", "joined")
    assert started["realm"] == "realm1"
    assert isinstance(started["session"], int)
    assert started["config"]["classname"] == "hello.Greeter"
    app = await app_client(env)
    try:
        # registered in onJoin: callable the moment start_component returned
        assert await app.call(f"{prefix}.greet", "bob") == "hello bob"
        assert await app.call(f"{prefix}.extra") == {"prefix": prefix}
    finally:
        await wampclient.close(app)


@pytest_twisted.ensureDeferred
async def test_get_component_and_get_components(env):
    for component_id in ("b", "a", "c"):
        await env.call("start_component", component_id, env.component("hello.Quiet"))
    assert await env.call("get_components") == ["a", "b", "c"]
    full = await env.call("get_components", full=True)
    assert [record["id"] for record in full] == ["a", "b", "c"]
    record = await env.call("get_component", "b")
    assert record["state"] == "running"
    assert record["restarts"] == 0
    assert record["last_error"] is None
    assert record["uptime"] >= 0
    assert record["realm"] == "realm1"
    assert record["started"].endswith("Z")


@pytest_twisted.ensureDeferred
async def test_the_configuration_is_kept_whole(env):
    """The worker keeps each configuration as sent, JSON-able or not (bytes over CBOR)."""
    plain = env.component("hello.Quiet", extra={"n": [1, 2], "name": "x"})
    binary = env.component("hello.Quiet", extra={"blob": b"\x00\xff"})
    for component_id, config in (("p1", plain), ("p2", plain), ("b1", binary)):
        started = await env.call("start_component", component_id, config)
        assert started["config"] == config
    for component_id, config in (("p1", plain), ("p2", plain), ("b1", binary)):
        assert (await env.call("get_component", component_id))["config"] == config
    await env.call("restart_component", "b1")
    assert (await env.call("get_component", "b1"))["config"] == binary


@pytest_twisted.ensureDeferred
async def test_stop_component_leaves_and_is_forgotten(env):
    prefix = env.unique()
    await env.call("start_component", "c1", env.component(
        "hello.Greeter", extra={"prefix": prefix}))
    stopped = await env.call("stop_component", "c1")
    assert stopped["component_id"] == "c1"
    assert stopped["caller"]["authid"] == "tester"
    assert stopped["uptime"] >= 0
    event = await env.events.wait_for("on_component_stop", id="c1")
    assert event["reason"] == "requested"
    assert event["will_restart"] is False
    assert await env.call("get_components") == []
    await expect_error(env.call("get_component", "c1"), "crossbar.error.no_such_object")
    app = await app_client(env)
    try:
        await expect_error(app.call(f"{prefix}.greet", "x"), "wamp.error.no_such_procedure")
    finally:
        await wampclient.close(app)


@pytest_twisted.ensureDeferred
async def test_restart_component_keeps_config_and_gets_new_session(env):
    prefix = env.unique()
    first = await env.call("start_component", "c1",
                           env.component(
        "hello.Greeter", extra={"prefix": prefix}))
    restarted = await env.call("restart_component", "c1")
    assert restarted["stopped"]["component_id"] == "c1"
    assert restarted["started"]["config"] == first["config"]
    assert restarted["started"]["session"] != first["session"]
    assert restarted["caller"]["authid"] == "tester"
    assert (await env.call("get_component", "c1"))["restarts"] == 1
    await env.events.wait_for("on_component_restart", id="c1", cause="requested")
    app = await app_client(env)
    try:
        assert await app.call(f"{prefix}.greet", "x") == "hello x"
    finally:
        await wampclient.close(app)


@pytest.mark.parametrize(
    ("mutate", "key"),
    [
        (lambda c: c.pop("realm"), "realm"),
        (lambda c: c["transport"].update(type="carrier-pigeon"), "transport.type"),
        (lambda c: c["transport"]["endpoint"].update(port="8080"), "transport.endpoint.port"),
        (lambda c: c.update(type="class", classname=None), "classname"),
        (lambda c: c.update(colour="blue"), "colour"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_invalid_configuration_names_the_key(env, mutate, key):
    config = env.component("hello.Quiet")
    mutate(config)
    error = await expect_error(env.call("start_component", "bad", config),
                               "crossbar.error.invalid_configuration")
    assert key in message(error)
    assert await env.call("get_components") == []


IMPORT_FAILED = "crossbar.error.class_import_failed"
CANNOT_START = "crossbar.error.cannot_start"


@pytest.mark.parametrize(
    ("classname", "uri", "says"),
    [
        ("no_such_module.Thing", IMPORT_FAILED, "module 'no_such_module' not found"),
        ("broken_syntax.Broken", IMPORT_FAILED, "syntax error in"),
        ("hello.NoSuchClass", IMPORT_FAILED, "has no attribute 'NoSuchClass'"),
        ("faulty.NotASession", IMPORT_FAILED, "is not a session class"),
        ("faulty.NOT_A_CLASS", IMPORT_FAILED, "is not a session class"),
        ("asyncio_session.Hello", IMPORT_FAILED, "Explicitly using 'twisted' already"),
        ("faulty.ConstructorRaises", CANNOT_START,
         "constructor raised ValueError: bad constructor argument"),
        ("faulty.JoinRaises", CANNOT_START, "onJoin raised RuntimeError: database unavailable"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_a_component_that_cannot_be_loaded_or_started_says_why(env, classname, uri, says):
    error = await expect_error(env.call("start_component", "bad", env.component(classname)), uri)
    assert says in message(error)
    if "not found" in says:
        assert APPS in message(error)  # the module search path is shown
    assert await env.call("get_components") == []


@pytest.mark.parametrize(
    ("classname", "where"),
    [
        ("faulty.NeverJoins", "(joining realm 'realm1' over rawsocket"),
        ("faulty.SlowJoin", "(joined realm 'realm1' over rawsocket"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_start_that_never_becomes_ready_times_out_saying_where_it_was(
        workers, classname, where):
    env = await workers({"start_timeout": 0.5, "ready_grace": 5})
    error = await expect_error(env.call("start_component", "slow", env.component(classname)),
                               "crossbar.error.cannot_start")
    assert "did not become ready within 0.5 s" in message(error)
    assert where in message(error)
    assert error.kwargs["cause"] == "timeout"
    assert await env.call("get_components") == []
    started = await env.call("start_component", "quiet", env.component("hello.Quiet"))
    assert started["state"] == "running"


@pytest_twisted.ensureDeferred
async def test_cannot_connect_names_the_address(env):
    closed_port = free_port()
    transport = {"type": "rawsocket",
                 "endpoint": {"type": "tcp", "host": "127.0.0.1", "port": closed_port}}
    error = await expect_error(
        env.call("start_component", "c1", env.component("hello.Quiet", transport)),
        "crossbar.error.cannot_connect")
    assert f"127.0.0.1:{closed_port}" in message(error)
    assert "refused" in message(error)


@pytest_twisted.ensureDeferred
async def test_websocket_path_refused_is_cannot_connect(env):
    transport = env.router.websocket_transport(path="nope")
    error = await expect_error(
        env.call("start_component", "c1", env.component("hello.Quiet", transport)),
        "crossbar.error.cannot_connect")
    assert transport["url"] in message(error)


@pytest_twisted.ensureDeferred
async def test_duplicate_and_unknown_ids(env):
    await env.call("start_component", "c1", env.component("hello.Quiet"))
    await expect_error(env.call("start_component", "c1", env.component("hello.Quiet")),
                       "crossbar.error.already_running")
    for procedure in ("get_component", "stop_component", "restart_component"):
        await expect_error(env.call(procedure, "nope"), "crossbar.error.no_such_object")
    assert await env.call("get_components") == ["c1"]


@pytest_twisted.ensureDeferred
async def test_arguments_that_do_not_fit_are_invalid_argument(env):
    await env.call("start_component", "c1", env.component("hello.Quiet"))
    missing = await expect_error(env.call("start_component", "c2"), "wamp.error.invalid_argument")
    assert "config" in message(missing)
    await expect_error(env.call("get_component", "c1", "extra"), "wamp.error.invalid_argument")
    await expect_error(env.call("get_status", details=1), "wamp.error.invalid_argument")
    await expect_error(env.call("start_component", "", env.component("hello.Quiet")),
                       "crossbar.error.invalid_configuration")
    assert await env.call("get_components") == ["c1"]


@pytest_twisted.ensureDeferred
async def test_failed_starts_leave_the_worker_healthy(env):
    prefix = env.unique()
    await env.call("start_component", "good", env.component(
        "hello.Greeter", extra={"prefix": prefix}))
    for classname in ("faulty.JoinRaises", "faulty.ConstructorRaises", "no_such.Module"):
        with pytest.raises(ApplicationError):
            await env.call("start_component", "bad", env.component(classname))
    assert await env.call("get_components") == ["good"]
    assert (await env.call("get_component", "good"))["state"] == "running"
    status = await env.call("get_status")
    assert status["components"] == {"running": 1}
    app = await app_client(env)
    try:
        assert await app.call(f"{prefix}.greet", "x") == "hello x"
    finally:
        await wampclient.close(app)
    await env.call("start_component", "bad", env.component("hello.Quiet"))


@pytest_twisted.ensureDeferred
async def test_forty_concurrent_starts_all_succeed(env):
    calls = [env.call("start_component", f"c{i:02d}", env.component("hello.Quiet"))
             for i in range(40)]
    results = await DeferredList(calls, consumeErrors=True)
    assert [ok for ok, _ in results] == [True] * 40
    assert await env.call("get_components") == [f"c{i:02d}" for i in range(40)]
    assert env.events.count("on_component_start") == 40


@pytest_twisted.ensureDeferred
async def test_concurrent_starts_of_one_id_one_wins(env):
    calls = [env.call("start_component", "same", env.component("hello.Quiet")) for _ in range(5)]
    results = await DeferredList(calls, consumeErrors=True)
    assert sum(ok for ok, _ in results) == 1
    errors = [result.value.error for ok, result in results if not ok]
    assert errors == ["crossbar.error.already_running"] * 4


@pytest_twisted.ensureDeferred
async def test_stop_during_start_cancels_the_start(env):
    starting = env.call("start_component", "slow",
                        env.component("faulty.SlowJoin", ready_grace=60))
    await poll(lambda: env.worker.supervisor.components.get("slow") is not None
               and env.worker.supervisor.components["slow"].run is not None
               and env.worker.supervisor.components["slow"].run._opened)
    stopped = await env.call("stop_component", "slow")
    assert stopped["component_id"] == "slow"
    await expect_error(starting, "crossbar.error.cancelled")
    assert await env.call("get_components") == []


@pytest_twisted.ensureDeferred
async def test_function_component(env):
    prefix = env.unique()
    config = {"type": "function", "realm": "realm1",
              "transport": env.router.rawsocket_transport(),
              "callbacks": {"join": "functions.on_join", "leave": "functions.on_leave"},
              "extra": {"prefix": prefix}}
    await env.call("start_component", "f1", config)
    app = await app_client(env)
    try:
        assert await app.call(f"{prefix}.ping") == "pong"
    finally:
        await wampclient.close(app)
    config["callbacks"] = {"join": "functions.failing_join"}
    error = await expect_error(env.call("start_component", "f2", config),
                               "crossbar.error.cannot_start")
    assert "KeyError" in message(error)


@pytest.mark.parametrize("serializer", ["cbor", "msgpack", "json"])
@pytest_twisted.ensureDeferred
async def test_transports_and_serializers(env, serializer):
    prefix = env.unique()
    transports = {
        "rawsocket": env.router.rawsocket_transport(serializer),
        "websocket": {**env.router.websocket_transport(), "serializers": [serializer]},
        "unix": {"type": "rawsocket", "serializer": serializer,
                 "endpoint": {"type": "unix", "path": env.router.unix_path}},
    }
    app = await app_client(env)
    try:
        for name, transport in transports.items():
            extra = {"prefix": f"{prefix}.{name}"}
            await env.call("start_component", name,
                           env.component("hello.Greeter", transport, extra=extra))
            assert await app.call(f"{prefix}.{name}.greet", name) == f"hello {name}"
    finally:
        await wampclient.close(app)


@pytest_twisted.ensureDeferred
async def test_shared_object_when_exposed(workers):
    env = await workers({"expose_shared": True})
    prefix = env.unique()
    await env.call("start_component", "c1", env.component(
        "hello.Greeter", extra={"prefix": prefix}))
    app = await app_client(env)
    try:
        assert "reactor" in await app.call(f"{prefix}.shared_keys")
    finally:
        await wampclient.close(app)


@pytest_twisted.ensureDeferred
async def test_application_component_cannot_join_management_realm(env):
    config = env.component("hello.Quiet")
    config["realm"] = "crossbar"
    config["transport"] = {"type": "rawsocket", "endpoint": {
        "type": "tcp", "host": "127.0.0.1", "port": env.router.management_port}}
    error = await expect_error(env.call("start_component", "intruder", config),
                               "crossbar.error.cannot_start")
    assert "left before it was ready" in message(error)


@pytest_twisted.ensureDeferred
async def test_get_status(env):
    await env.call("start_component", "c1", env.component("hello.Quiet"))
    status = await env.call("get_status")
    assert status["id"] == env.worker.settings.worker_id
    assert status["pid"] == os.getpid()
    assert status["components"] == {"running": 1}
    assert status["policies"]["restart"] == "restart-never"
    assert status["policies"]["shutdown"] == "shutdown-manual"
    assert status["policies"]["ready_grace"] == 1.0


@pytest_twisted.ensureDeferred
async def test_shutdown_stops_everything_and_exits_zero(env):
    for component_id in ("a", "b"):
        await env.call("start_component", component_id, env.component("hello.Quiet"))
    stopped = await env.call("shutdown")
    assert sorted(stopped) == ["a", "b"]
    exit_code = await env.worker.done.addTimeout(30, reactor)
    assert exit_code == 0
    event = await env.events.wait_for("on_shutdown")
    assert sorted(event["stopped"]) == ["a", "b"]
    assert event["exit_code"] == 0
    assert env.events.count("on_component_stop", reason="requested") == 2


@pytest_twisted.ensureDeferred
async def test_events_tell_the_whole_life(env):
    await env.call("start_component", "c1", env.component("hello.Quiet"))
    await env.call("stop_component", "c1")
    started = await env.events.wait_for("on_component_start", id="c1")
    stopped = await env.events.wait_for("on_component_stop", id="c1")
    assert started["worker"] == env.worker.settings.worker_id
    assert started["state"] == "running"
    assert stopped["reason"] == "requested"
    topics = [topic.rsplit(".", 1)[1] for topic, _ in env.events.events]
    assert topics.index("on_component_start") < topics.index("on_component_stop")


@pytest_twisted.ensureDeferred
async def test_worker_authenticates_with_wampcra(workers):
    from container.management import Credentials
    env = await workers({}, credentials=Credentials("cra-worker", "wampcra", CRA_WORKER_SECRET))
    await env.call("start_component", "c1", env.component("hello.Quiet"))
    assert await env.call("get_components") == ["c1"]


@pytest.mark.parametrize(
    ("auth", "ok"),
    [
        ({"ticket": {"authid": "alice", "ticket": "alice-ticket"}}, True),
        ({"wampcra": {"authid": "bob", "secret": "bob-secret"}}, True),
        ({"ticket": {"authid": "alice", "ticket": "wrong"}}, False),
    ],
)
@pytest_twisted.ensureDeferred
async def test_component_authentication(env, auth, ok):
    config = env.component("hello.Quiet", env.router.authenticated_transport(), auth=auth)
    if ok:
        started = await env.call("start_component", "authed", config)
        assert started["state"] == "running"
    else:
        error = await expect_error(env.call("start_component", "authed", config),
                                   "crossbar.error.cannot_start")
        assert "not_authorized" in message(error)


@pytest_twisted.ensureDeferred
async def test_tls_to_a_plain_listener_is_cannot_connect(env):
    transport = env.router.rawsocket_transport()
    transport["endpoint"]["tls"] = {"hostname": "localhost"}
    error = await expect_error(
        env.call("start_component", "tls", env.component("hello.Quiet", transport)),
        "crossbar.error.cannot_connect")
    assert f"tls 127.0.0.1:{env.router.app_port}" in message(error)
    assert await env.call("get_components") == []


@pytest.mark.parametrize(
    ("auth", "secret"),
    [
        ({"ticket": {"authid": "alice", "ticket": "alice-ticket"}}, "alice-ticket"),
        ({"wampcra": {"authid": "bob", "secret": "bob-secret"}}, "bob-secret"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_auth_secrets_are_never_shown(env, auth, secret):
    config = env.component("hello.Quiet", env.router.authenticated_transport(), auth=auth)
    started = await env.call("start_component", "secretive", config)
    assert started["state"] == "running"  # it joined with the real secret
    shown = await env.call("get_component", "secretive")
    event = await env.events.wait_for("on_component_start", id="secretive")
    for answer in (started, shown, event):
        assert secret not in repr(answer)
        method = next(iter(auth))
        assert answer["config"]["auth"][method]["authid"] == auth[method]["authid"]
        assert "***" in answer["config"]["auth"][method].values()
    # a restart joins again: the container kept the real secret
    restarted = await env.call("restart_component", "secretive")
    assert restarted["started"]["state"] == "running"
    assert secret not in repr(restarted)


def _unreachable_transport() -> dict[str, Any]:
    port = free_port()  # a port nobody listens on
    return {"type": "rawsocket", "endpoint": {"type": "tcp", "host": "127.0.0.1", "port": port}}


@pytest_twisted.ensureDeferred
async def test_a_stop_while_waiting_for_an_unreachable_router_answers(env):
    config = env.component("hello.Quiet", _unreachable_transport())
    starting = env.call("start_component", "waiting", config, wait_for_router=True)
    await env.events.wait_for("on_component_restart", id="waiting")
    stopped = await env.call("stop_component", "waiting")
    assert stopped["reason"] == "requested"
    await expect_error(starting, "crossbar.error.cancelled")
    assert await env.call("get_components") == []


@pytest.mark.parametrize("wait_for_router", [False, True])
@pytest_twisted.ensureDeferred
async def test_a_stop_right_after_a_start_answers_both(env, wait_for_router):
    config = env.component("hello.Quiet", _unreachable_transport())
    starting = env.call("start_component", "hasty", config, wait_for_router=wait_for_router)
    stopped = await env.call("stop_component", "hasty")
    assert stopped["reason"] == "requested"
    await expect_error(starting, "crossbar.error.cancelled")
    assert await env.call("get_components") == []
    # the worker is not wedged: it still starts and stops components
    await env.call("start_component", "after", env.component("hello.Quiet"))
    assert (await env.call("stop_component", "after"))["reason"] == "requested"


@pytest_twisted.ensureDeferred
async def test_a_client_that_leaves_inside_onjoin_started_and_then_left(env):
    """autobahn's RPC frontends call in onJoin, leave, and stop the reactor once
    disconnected: that is a component that ran and ended by itself, not a failed start."""
    prefix = env.unique()
    await env.call("start_component", "greeter",
                   env.component("hello.Greeter", extra={"prefix": prefix}))
    started = await env.call("start_component", "frontend",
                             env.component("hello.CallsThenLeaves", extra={"target": prefix}))
    assert (started["id"], started["ready_by"]) == ("frontend", "onjoin")
    stop = await env.events.wait_for("on_component_stop", id="frontend")
    assert (stop["reason"], stop["will_restart"]) == ("left", False)
    record = await env.call("get_component", "frontend")
    assert (record["state"], record["stop_reason"], record["restarts"]) == ("stopped", "left", 0)
    assert (await env.call("get_component", "greeter"))["state"] == "running"


@pytest_twisted.ensureDeferred
async def test_a_component_that_leaves_cleanly_before_onjoin_ends_counts_as_started(env):
    started = await env.call("start_component", "quitter",
                             env.component("faulty.LeavesDuringJoin"))
    assert started["id"] == "quitter"
    stop = await env.events.wait_for("on_component_stop", id="quitter")
    assert stop["reason"] == "left"
    assert "changed my mind" in stop["message"]

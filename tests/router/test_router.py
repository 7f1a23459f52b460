"""The router tier (container/router/) as the node and the tests use it: a child process running
Crossbar.io's own RouterController, reached by real autobahn sessions on 127.0.0.1."""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from autobahn.twisted.rawsocket import WampRawSocketClientFactory
from autobahn.twisted.wamp import ApplicationSession
from autobahn.twisted.websocket import WampWebSocketClientFactory
from autobahn.wamp import auth as wamp_auth
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import CloseDetails, ComponentConfig, PublishOptions, SessionDetails
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, UNIXClientEndpoint

from container.router.listeners import bind_listeners, pin_ports
from tests.routerproc import RouterProcess, start_router_process

TIMEOUT = 10.0

ALL_ACTIONS = {"call": True, "register": True, "publish": True, "subscribe": True}


def router_config(mgmt_socket: str) -> dict[str, Any]:
    """The layout the node uses: an app realm, a management realm only a controller may join."""
    return {
        "type": "router",
        "id": "router1",
        "realms": [
            {
                "name": "realm1",
                "roles": [
                    {
                        "name": "anonymous",
                        "permissions": [
                            {
                                "uri": "",
                                "match": "prefix",
                                "allow": ALL_ACTIONS,
                                "disclose": {"caller": False, "publisher": False},
                                "cache": True,
                            }
                        ],
                    }
                ],
            },
            {
                "name": "crossbar",
                "roles": [
                    {
                        "name": "controller",
                        "permissions": [
                            {
                                "uri": "",
                                "match": "prefix",
                                "allow": ALL_ACTIONS,
                                "disclose": {"caller": True, "publisher": True},
                            }
                        ],
                    }
                ],
            },
        ],
        "transports": [
            {
                "type": "universal",
                "id": "app",
                "endpoint": {"type": "tcp", "port": 0, "interface": "127.0.0.1"},
                "rawsocket": {"serializers": ["cbor", "msgpack", "json"]},
                "websocket": {"ws": {"type": "websocket", "serializers": ["cbor", "json"]}},
            },
            {
                "type": "websocket",
                "id": "wst",
                "endpoint": {"type": "tcp", "port": 0, "interface": "127.0.0.1"},
            },
            {
                "type": "rawsocket",
                "id": "mgmt",
                "endpoint": {"type": "unix", "path": mgmt_socket},
                "auth": {
                    "ticket": {
                        "type": "static",
                        "principals": {"worker-1": {"ticket": "secret", "role": "controller"}},
                    },
                    "wampcra": {
                        "type": "static",
                        "users": {"node": {"secret": "s3", "role": "controller"}},
                    },
                },
            },
        ],
    }


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A directory with a short path: unix socket paths are limited to 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="rt-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def proc() -> Iterator[RouterProcess]:
    """One router process for the tests that only connect to it."""
    tmp = Path(tempfile.mkdtemp(prefix="rt-"))
    router = start_router_process(router_config(str(tmp / "mgmt.sock")), tmp)
    try:
        yield router
    finally:
        router.stop()
        shutil.rmtree(tmp, ignore_errors=True)


# -- a minimal client --------------------------------------------------------------------------


class Refused(Exception):
    """The router ended the session before it joined."""

    def __init__(self, reason: str, message: str | None) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


class Probe(ApplicationSession):
    """A session that joins with the given credentials and reports join / refusal / close."""

    def __init__(self, config: ComponentConfig, credentials: dict[str, str] | None) -> None:
        super().__init__(config)
        self.credentials = credentials or {}
        self.joined: Deferred[SessionDetails] = Deferred()
        self.closed: Deferred[None] = Deferred()

    def onConnect(self) -> None:
        method = self.credentials.get("method", "anonymous")
        self.join(self.config.realm, authmethods=[method], authid=self.credentials.get("authid"))

    def onChallenge(self, challenge: Any) -> str:
        if challenge.method == "ticket":
            return self.credentials["secret"]
        if challenge.method == "wampcra":
            key = self.credentials["secret"].encode("utf8")
            return wamp_auth.compute_wcs(key, challenge.extra["challenge"].encode("utf8")).decode()
        raise ValueError(f"unexpected challenge {challenge.method}")

    def onJoin(self, details: SessionDetails) -> None:
        self.joined.callback(details)

    def onLeave(self, details: CloseDetails) -> None:
        if not self.joined.called:
            self.joined.errback(Refused(details.reason, details.message))
        self.disconnect()

    def onDisconnect(self) -> None:
        if not self.joined.called:
            self.joined.errback(ConnectionError("transport closed before the session joined"))
        if not self.closed.called:
            self.closed.callback(None)


async def connect(
    address: dict[str, Any], realm: str, credentials: dict[str, str] | None = None
) -> Probe:
    """Open a session; ``address`` is {"websocket": url} / {"tcp": (host, port)} / {"unix": p}."""
    created: Deferred[Probe] = Deferred()  # WebSocket makes the session after its handshake

    def make_session() -> Probe:
        session = Probe(ComponentConfig(realm), credentials)
        created.callback(session)
        return session

    if "websocket" in address:
        url = address["websocket"]
        factory: Any = WampWebSocketClientFactory(make_session, url=url)
        host, port = factory.host, factory.port
        endpoint: Any = TCP4ClientEndpoint(reactor, host, port, timeout=TIMEOUT)
    elif "tcp" in address:
        factory = WampRawSocketClientFactory(make_session)
        endpoint = TCP4ClientEndpoint(reactor, *address["tcp"], timeout=TIMEOUT)
    else:
        factory = WampRawSocketClientFactory(make_session)
        endpoint = UNIXClientEndpoint(reactor, address["unix"], timeout=TIMEOUT)
    await endpoint.connect(factory).addTimeout(TIMEOUT, reactor)
    session = await created.addTimeout(TIMEOUT, reactor)
    await session.joined.addTimeout(TIMEOUT, reactor)
    return session


async def leave(session: Probe) -> None:
    if session.is_attached():
        session.leave()
    await session.closed.addTimeout(TIMEOUT, reactor)


async def exercise(session: Probe) -> None:
    """Register, call, subscribe and publish through the router."""
    await session.register(lambda a, b: a + b, "com.example.add")
    assert await session.call("com.example.add", 2, 3) == 5

    received: Deferred[Any] = Deferred()
    await session.subscribe(received.callback, "com.example.topic")
    await session.publish(
        "com.example.topic", "hello", options=PublishOptions(acknowledge=True, exclude_me=False)
    )
    assert await received.addTimeout(TIMEOUT, reactor) == "hello"


# -- joining -----------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_anonymous_session_works_over_universal_websocket_path(proc: RouterProcess) -> None:
    session = await connect({"websocket": proc.url("app", "ws")}, "realm1")
    try:
        await exercise(session)
    finally:
        await leave(session)


@pytest_twisted.ensureDeferred
async def test_anonymous_session_works_over_plain_websocket_transport(proc: RouterProcess) -> None:
    session = await connect({"websocket": proc.url("wst", "")}, "realm1")
    try:
        await exercise(session)
    finally:
        await leave(session)


@pytest_twisted.ensureDeferred
async def test_anonymous_session_works_over_rawsocket_tcp(proc: RouterProcess) -> None:
    session = await connect({"tcp": proc.tcp("app")}, "realm1")
    try:
        await exercise(session)
    finally:
        await leave(session)


@pytest_twisted.ensureDeferred
async def test_sessions_on_different_transports_reach_each_other(proc: RouterProcess) -> None:
    callee = await connect({"tcp": proc.tcp("app")}, "realm1")
    caller = await connect({"websocket": proc.url("wst")}, "realm1")
    try:
        await callee.register(lambda: "pong", "com.example.ping")
        assert await caller.call("com.example.ping") == "pong"
    finally:
        await leave(caller)
        await leave(callee)


@pytest_twisted.ensureDeferred
async def test_anonymous_session_on_a_realm_without_that_role_may_do_nothing(
    proc: RouterProcess,
) -> None:
    """Crossbar.io lets an anonymous session join a realm that has no ``anonymous`` role, and
    then authorizes none of its actions: we serve exactly that."""
    session = await connect({"tcp": proc.tcp("app")}, "crossbar")
    try:
        with pytest.raises(ApplicationError) as denied:
            await session.register(lambda: None, "com.example.nothing")
        assert denied.value.error == ApplicationError.NOT_AUTHORIZED
    finally:
        await leave(session)


@pytest_twisted.ensureDeferred
async def test_unknown_realm_is_refused(proc: RouterProcess) -> None:
    with pytest.raises(Refused) as refused:
        await connect({"websocket": proc.url("app", "ws")}, "nosuchrealm")
    assert refused.value.reason == ApplicationError.NO_SUCH_REALM


@pytest_twisted.ensureDeferred
async def test_ticket_principal_joins_management_realm_over_unix_socket(
    proc: RouterProcess,
) -> None:
    credentials = {"method": "ticket", "authid": "worker-1", "secret": "secret"}
    session = await connect({"unix": proc.unix_path("mgmt")}, "crossbar", credentials)
    try:
        details = await session.joined
        assert (details.authid, details.authrole) == ("worker-1", "controller")
        await exercise(session)
    finally:
        await leave(session)


@pytest_twisted.ensureDeferred
async def test_wampcra_user_joins_management_realm_over_unix_socket(proc: RouterProcess) -> None:
    credentials = {"method": "wampcra", "authid": "node", "secret": "s3"}
    session = await connect({"unix": proc.unix_path("mgmt")}, "crossbar", credentials)
    try:
        details = await session.joined
        assert (details.authid, details.authrole) == ("node", "controller")
    finally:
        await leave(session)


@pytest_twisted.ensureDeferred
async def test_wrong_ticket_is_refused(proc: RouterProcess) -> None:
    credentials = {"method": "ticket", "authid": "worker-1", "secret": "wrong"}
    with pytest.raises(Refused) as refused:
        await connect({"unix": proc.unix_path("mgmt")}, "crossbar", credentials)
    assert refused.value.reason == ApplicationError.NOT_AUTHORIZED


@pytest_twisted.ensureDeferred
async def test_anonymous_is_refused_where_auth_is_configured_without_it(
    proc: RouterProcess,
) -> None:
    with pytest.raises(Refused) as refused:
        await connect({"unix": proc.unix_path("mgmt")}, "crossbar")
    assert refused.value.reason == ApplicationError.NO_AUTH_METHOD


# -- the process -------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_sigterm_drops_sessions_exits_0_and_frees_the_addresses(short_tmp: Path) -> None:
    proc = start_router_process(router_config(str(short_tmp / "mgmt.sock")), short_tmp)
    try:
        host, port = proc.tcp("app")
        session = await connect({"tcp": (host, port)}, "realm1")
        assert proc.stop() == 0
        await session.closed.addTimeout(TIMEOUT, reactor)
    finally:
        proc.kill()
    assert not os.path.exists(short_tmp / "mgmt.sock")
    assert_nobody_listens(host, port)


def assert_nobody_listens(host: str, port: int) -> None:
    with socket.socket() as probe:
        assert probe.connect_ex((host, port)) == errno.ECONNREFUSED
    with socket.socket() as rebind:
        rebind.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        rebind.bind((host, port))


@pytest_twisted.ensureDeferred
async def test_restart_comes_back_on_the_same_port(short_tmp: Path) -> None:
    proc = start_router_process(router_config(str(short_tmp / "mgmt.sock")), short_tmp)
    try:
        first_pid, addresses = proc.pid, (proc.tcp("app"), proc.tcp("wst"))
        session = await connect({"tcp": proc.tcp("app")}, "realm1")
        proc.kill()  # a crash: no clean close, the unix socket file stays behind
        await session.closed.addTimeout(TIMEOUT, reactor)

        proc.restart()
        assert proc.pid != first_pid
        assert (proc.tcp("app"), proc.tcp("wst")) == addresses
        again = await connect({"tcp": proc.tcp("app")}, "realm1")
        await leave(again)
        credentials = {"method": "ticket", "authid": "worker-1", "secret": "secret"}
        mgmt = await connect({"unix": proc.unix_path("mgmt")}, "crossbar", credentials)
        await leave(mgmt)
    finally:
        proc.stop()


@pytest_twisted.ensureDeferred
async def test_prebound_listeners_queue_clients_until_the_router_serves_them(
    short_tmp: Path,
) -> None:
    config = router_config(str(short_tmp / "mgmt.sock"))
    sockets = bind_listeners(config, str(short_tmp))
    config = pin_ports(config, sockets)
    port = sockets["app"].getsockname()[1]
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as early:
        early.sendall(RAWSOCKET_HELLO_CBOR)  # before the router process even exists
        proc = start_router_process(config, short_tmp, sockets=sockets)
        try:
            assert proc.tcp("app") == ("127.0.0.1", port)
            assert early.recv(4)[:1] == b"\x7f"  # the RawSocket handshake reply
            session = await connect({"unix": proc.unix_path("mgmt")}, "crossbar", WORKER_TICKET)
            await leave(session)
        finally:
            proc.stop()
    assert not os.path.exists(short_tmp / "mgmt.sock")


# RawSocket opening handshake: magic 0x7f, max message length 2**24 and serializer 3 (CBOR).
RAWSOCKET_HELLO_CBOR = bytes([0x7F, 0xF3, 0x00, 0x00])
WORKER_TICKET = {"method": "ticket", "authid": "worker-1", "secret": "secret"}


def test_an_endpoint_crossbar_refuses_exits_2_with_its_reason(tmp_path: Path) -> None:
    config = router_config(str(tmp_path / "mgmt.sock"))
    config["transports"] = [{"type": "rawsocket", "id": "udpt",
                             "endpoint": {"type": "udp", "port": 8080}}]
    result = run_router(config, tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    (error,) = [line for line in result.stderr.splitlines() if "container router: error" in line]
    assert "crossbar.error.invalid_configuration" in error
    assert "udp" in error


def run_router(config: dict[str, Any], folder: Path) -> subprocess.CompletedProcess[str]:
    path = folder / "router.json"
    path.write_text(json.dumps(config))
    return subprocess.run(
        [sys.executable, "-m", "container.router", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )


def test_a_port_in_use_exits_2_naming_the_reason(proc: RouterProcess, tmp_path: Path) -> None:
    config = router_config(str(tmp_path / "other.sock"))
    config["transports"] = [config["transports"][0], config["transports"][2]]
    config["transports"][0]["endpoint"]["port"] = proc.port("app")
    result = run_router(config, tmp_path)
    assert result.returncode == 2
    (error,) = [line for line in result.stderr.splitlines() if "container router: error" in line]
    assert "Address already in use" in error
    assert not (tmp_path / "other.sock").exists()



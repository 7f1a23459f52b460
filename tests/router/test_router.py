"""The router tier (container/router/) as the node and the tests use it: a child process running
Crossbar.io's own RouterController, reached by real autobahn sessions on 127.0.0.1.

The tests that only connect use the shared router (tests/support/router.py: an app realm, and a
management realm only a controller may join); the ones that stop, kill or restart a router
start their own on the same configuration."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
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
from tests.support.paths import ROOT
from tests.support.ports import port_is_free
from tests.support.router import (
    CRA_WORKER_SECRET,
    WORKER_TICKET,
    RouterAddresses,
    router_config,
    start_router,
)
from tests.support.routerproc import Routers

TIMEOUT = 10.0


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


def address(router: RouterAddresses, transport: str) -> dict[str, Any]:
    """A ``connect`` address of one of the shared router's transports."""
    return {
        "universal websocket path": {"websocket": router.process.url("app", "ws")},
        "plain websocket": {"websocket": router.process.url("wst", "")},
        "rawsocket tcp": {"tcp": router.process.tcp("app")},
        "management unix socket": {"unix": router.process.unix_path("mgmtunix")},
    }[transport]


@pytest.mark.parametrize("transport", ["universal websocket path", "plain websocket",
                                       "rawsocket tcp"])
@pytest_twisted.ensureDeferred
async def test_anonymous_session_works(router: RouterAddresses, transport: str) -> None:
    session = await connect(address(router, transport), "realm1")
    try:
        await exercise(session)
    finally:
        await leave(session)


@pytest_twisted.ensureDeferred
async def test_sessions_on_different_transports_reach_each_other(router: RouterAddresses) -> None:
    callee = await connect(address(router, "rawsocket tcp"), "realm1")
    caller = await connect({"websocket": router.process.url("wst")}, "realm1")
    try:
        await callee.register(lambda: "pong", "com.example.ping")
        assert await caller.call("com.example.ping") == "pong"
    finally:
        await leave(caller)
        await leave(callee)


@pytest_twisted.ensureDeferred
async def test_anonymous_session_on_a_realm_without_that_role_may_do_nothing(
    router: RouterAddresses,
) -> None:
    """Crossbar.io lets an anonymous session join a realm that has no ``anonymous`` role, and
    then authorizes none of its actions: we serve exactly that."""
    session = await connect(address(router, "rawsocket tcp"), "crossbar")
    try:
        with pytest.raises(ApplicationError) as denied:
            await session.register(lambda: None, "com.example.nothing")
        assert denied.value.error == ApplicationError.NOT_AUTHORIZED
    finally:
        await leave(session)


@pytest_twisted.ensureDeferred
async def test_unknown_realm_is_refused(router: RouterAddresses) -> None:
    with pytest.raises(Refused) as refused:
        await connect(address(router, "universal websocket path"), "nosuchrealm")
    assert refused.value.reason == ApplicationError.NO_SUCH_REALM


@pytest.mark.parametrize(("credentials", "exercised"), [
    ({"method": "ticket", "authid": "worker", "secret": WORKER_TICKET}, True),
    ({"method": "wampcra", "authid": "cra-worker", "secret": CRA_WORKER_SECRET}, False),
], ids=["ticket", "wampcra"])
@pytest_twisted.ensureDeferred
async def test_a_principal_joins_management_realm_over_unix_socket(
    router: RouterAddresses, credentials: dict[str, str], exercised: bool,
) -> None:
    session = await connect(address(router, "management unix socket"), "crossbar", credentials)
    try:
        details = await session.joined
        assert (details.authid, details.authrole) == (credentials["authid"], "controller")
        if exercised:
            await exercise(session)
    finally:
        await leave(session)


@pytest.mark.parametrize(("credentials", "reason"), [
    ({"method": "ticket", "authid": "worker", "secret": "wrong"}, ApplicationError.NOT_AUTHORIZED),
    (None, ApplicationError.NO_AUTH_METHOD),  # anonymous, where auth is configured without it
], ids=["wrong ticket", "anonymous"])
@pytest_twisted.ensureDeferred
async def test_management_realm_refuses(
    router: RouterAddresses, credentials: dict[str, str] | None, reason: str,
) -> None:
    with pytest.raises(Refused) as refused:
        await connect(address(router, "management unix socket"), "crossbar", credentials)
    assert refused.value.reason == reason


# -- the process -------------------------------------------------------------------------------


MANAGEMENT_TICKET = {"method": "ticket", "authid": "worker", "secret": WORKER_TICKET}


@pytest_twisted.ensureDeferred
async def test_sigterm_drops_sessions_exits_0_and_frees_the_addresses(routers: Routers) -> None:
    proc = start_router(routers).process
    host, port = proc.tcp("app")
    session = await connect({"tcp": (host, port)}, "realm1")
    assert proc.stop() == 0
    await session.closed.addTimeout(TIMEOUT, reactor)
    assert not os.path.exists(proc.tmp_dir / "mgmt.sock")
    with socket.socket() as probe:
        assert probe.connect_ex((host, port)) == errno.ECONNREFUSED
    assert port_is_free(port)


@pytest_twisted.ensureDeferred
async def test_restart_comes_back_on_the_same_port(routers: Routers) -> None:
    proc = start_router(routers).process
    first_pid, addresses = proc.pid, (proc.tcp("app"), proc.tcp("wst"))
    session = await connect({"tcp": proc.tcp("app")}, "realm1")
    proc.kill()  # a crash: no clean close, the unix socket file stays behind
    await session.closed.addTimeout(TIMEOUT, reactor)

    proc.restart()
    assert proc.pid != first_pid
    assert (proc.tcp("app"), proc.tcp("wst")) == addresses
    again = await connect({"tcp": proc.tcp("app")}, "realm1")
    await leave(again)
    mgmt = await connect({"unix": proc.unix_path("mgmtunix")}, "crossbar", MANAGEMENT_TICKET)
    await leave(mgmt)


@pytest_twisted.ensureDeferred
async def test_prebound_listeners_queue_clients_until_the_router_serves_them(
    routers: Routers,
) -> None:
    folder = routers.folder()
    config = router_config(str(folder / "app.sock"), str(folder / "mgmt.sock"))
    sockets = bind_listeners(config, str(folder))
    config = pin_ports(config, sockets)
    port = sockets["app"].getsockname()[1]
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as early:
        early.sendall(RAWSOCKET_HELLO_CBOR)  # before the router process even exists
        proc = routers.start(config, folder, sockets=sockets)
        assert proc.tcp("app") == ("127.0.0.1", port)
        assert early.recv(4)[:1] == b"\x7f"  # the RawSocket handshake reply
        session = await connect({"unix": proc.unix_path("mgmtunix")}, "crossbar",
                                MANAGEMENT_TICKET)
        await leave(session)
        proc.stop()
    assert not os.path.exists(folder / "mgmt.sock")


# RawSocket opening handshake: magic 0x7f, max message length 2**24 and serializer 3 (CBOR).
RAWSOCKET_HELLO_CBOR = bytes([0x7F, 0xF3, 0x00, 0x00])


def test_an_endpoint_crossbar_refuses_exits_2_with_its_reason(tmp_path: Path) -> None:
    config = router_config(str(tmp_path / "app.sock"))
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
        cwd=ROOT,
    )


def test_a_port_in_use_exits_2_naming_the_reason(router: RouterAddresses, tmp_path: Path) -> None:
    config = router_config(str(tmp_path / "other.sock"))
    config["transports"] = [t for t in config["transports"] if t["id"] in ("app", "appunix")]
    config["transports"][0]["endpoint"]["port"] = router.port("app")
    result = run_router(config, tmp_path)
    assert result.returncode == 2
    (error,) = [line for line in result.stderr.splitlines() if "container router: error" in line]
    assert "Address already in use" in error
    assert not (tmp_path / "other.sock").exists()

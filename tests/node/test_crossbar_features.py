"""Crossbar.io's features under ``container run``, end to end.

Each node configuration of tests/configs/features/ (one per feature, see its README) runs as a
real ``container run`` process on free loopback ports, and a real client proves the feature:
HTTP requests (Twisted's Agent) and autobahn sessions over RawSocket and WebSocket. Every node
of the module is started once, when a test first needs it, and killed by pid at the end.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
import pytest_twisted
from autobahn.wamp.cryptosign import CryptosignKey
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import PublishOptions, SubscribeOptions
from twisted.internet import reactor
from twisted.internet.task import deferLater

from tests.support.features import (
    FEATURES,
    Auth,
    Client,
    Corpus,
    Events,
    call_once,
    http,
    join,
    joined,
    leave,
    node_public_key,
    post_json,
)
from tests.support.node import NodeProcess, Nodes, managing
from tests.support.ports import free_port, port_is_free
from tests.support.processes import kill

#: A node may take this long to come up (Crossbar.io imports, several nodes on two CPUs).
START = 60.0
DEADLINE = 30.0
#: The key of the cryptosign principal "frank" in auth.json (a test key, derived openly).
FRANK = CryptosignKey.from_bytes(hashlib.sha256(b"wamp-container feature corpus: frank").digest())
#: Configurations that Crossbar.io refuses, and the key each finding names.
REFUSED = {
    "refused/controller_id.json": ("controller.id", '"id": "bad-id!"'),
    "refused/transport_key.json": ("workers[0].transports[0].serializerz", '"serializerz"'),
    "refused/permission_action_beside_uri.json": (
        "workers[0].realms[0].roles[0].permissions[0].call", '"call"'),
}


@dataclass
class Fleet:
    """The corpus on free ports, and the nodes started on it so far (by file name)."""

    corpus: Corpus
    logs: Path
    nodes: dict[str, NodeProcess] = field(default_factory=dict)
    started: Nodes = field(init=False)

    def __post_init__(self) -> None:
        self.started = Nodes(self.logs)

    def start(self, name: str) -> NodeProcess:
        if name not in self.nodes:
            self.nodes[name] = self.started(self.corpus.path(name), name)
        return self.nodes[name]

    async def ready(self, name: str) -> NodeProcess:
        node = self.start(name)
        await node.wait_event("node ready", timeout=START)
        return node

    def url(self, scheme: str, placeholder: int, path: str = "") -> str:
        return f"{scheme}://127.0.0.1:{self.corpus.port(placeholder)}{path}"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("features")
    logs = root / "logs"
    logs.mkdir()
    fleet = Fleet(Corpus.copy_to(root / "corpus"), logs)
    try:
        yield fleet
    finally:
        fleet.started.kill_all()


async def refused(session: Client, procedure: str, *args: Any) -> str:
    """The error URI a call ends with (the test fails if it succeeds)."""
    with pytest.raises(ApplicationError) as failure:
        await session.call(procedure, *args)
    return str(failure.value.error)


# -------------------------------------------------------------------------------------------
# the corpus itself


def corpus_files() -> list[str]:
    found = (p.relative_to(FEATURES) for p in FEATURES.rglob("*.json"))
    return sorted(str(p) for p in found if not any(part.startswith(".") for part in p.parts))


@pytest.mark.parametrize("name", corpus_files())
def test_crossbar_checker_accepts_the_corpus_and_refuses_the_refused(name):
    from crossbar.common.checkconfig import InvalidConfigException
    from crossbar.personality import Personality

    config = json.loads((FEATURES / name).read_text())
    if name in REFUSED:
        with pytest.raises(InvalidConfigException):
            Personality.check_config(Personality, config)
    else:
        Personality.check_config(Personality, config)


# -------------------------------------------------------------------------------------------
# web.json: the web transport's services


@pytest_twisted.ensureDeferred
async def test_static_directory_serves_its_files(fleet):
    await fleet.ready("web.json")
    for path in ("/", "/index.html"):
        page = await http("GET", fleet.url("http", 18180, path))
        assert page.code == 200
        assert page.header("content-type").startswith("text/html")
        assert b"static file served by the web transport" in page.body


@pytest_twisted.ensureDeferred
async def test_http_post_to_publisher_path_reaches_a_subscriber(fleet):
    await fleet.ready("web.json")
    async with joined(fleet.url("ws", 18180, "/ws")) as subscriber:
        events = Events()
        await subscriber.subscribe(events, "com.example.rest",
                                   options=SubscribeOptions(details_arg="details"))
        answer = await post_json(fleet.url("http", 18180, "/publish"), {
            "topic": "com.example.rest", "args": ["hello"], "kwargs": {"n": 1}})
        assert answer.code == 200 and isinstance(answer.json()["id"], int)
        [(args, kwargs)] = await events.wait(1)
        assert args == ("hello",)
        assert kwargs["n"] == 1
        assert kwargs["details"].publisher_authrole == "restbridge"


@pytest_twisted.ensureDeferred
async def test_http_post_to_caller_path_returns_the_procedure_result(fleet):
    await fleet.ready("web.json")
    answer = await post_json(fleet.url("http", 18180, "/call"),
                             {"procedure": "com.example.add2", "args": [2, 3]})
    assert answer.code == 200
    assert answer.json() == {"args": [5]}


@pytest_twisted.ensureDeferred
async def test_webhook_path_publishes_the_posted_body(fleet):
    await fleet.ready("web.json")
    async with joined(fleet.url("ws", 18180, "/ws")) as subscriber:
        events = Events()
        await subscriber.subscribe(events, "com.example.webhook")
        body = b'{"zen": "keep it logically awesome"}'
        answer = await http("POST", fleet.url("http", 18180, "/hook"), body, "application/json")
        assert (answer.code, answer.body) == (202, b"thanks")
        [(args, _)] = await events.wait(1)
        assert args[0]["body"] == body.decode()
        assert args[0]["headers"]["Content-Type"] == ["application/json"]


@pytest_twisted.ensureDeferred
async def test_nodeinfo_redirect_and_json_paths_answer(fleet):
    await fleet.ready("web.json")
    info = await http("GET", fleet.url("http", 18180, "/info"))
    assert info.code == 200
    assert b"Crossbar.io" in info.body
    # the node key the router read from (or wrote to) the node directory, as crossbar start
    assert node_public_key(fleet.corpus.root).encode() in info.body

    moved = await http("GET", fleet.url("http", 18180, "/old"))
    assert moved.code in (301, 302, 307)
    assert moved.header("location") == fleet.url("http", 18180, "/index.html")
    target = await http("GET", moved.header("location"))
    assert b"static file served by the web transport" in target.body

    value = await http("GET", fleet.url("http", 18180, "/settings"))
    assert value.code == 200
    assert value.header("content-type").startswith("application/json")
    assert value.json() == {"feature": "json", "answer": 42, "list": [1, 2]}


# -------------------------------------------------------------------------------------------
# auth.json: authentication, authorization, permissions, the realm store


@pytest_twisted.ensureDeferred
async def test_cryptosign_principal_joins_with_its_key_and_another_key_is_refused(fleet):
    await fleet.ready("auth.json")
    async with joined(fleet.url("rs", 18280), auth=Auth.with_key("frank", FRANK)) as frank:
        assert (frank.details.authid, frank.details.authrole) == ("frank", "user")
        assert frank.details.authmethod == "cryptosign"
        assert await frank.call("com.example.add2", 1, 2) == 3
    stranger = CryptosignKey.from_bytes(hashlib.sha256(b"not frank").digest())
    with pytest.raises(ApplicationError):
        await join(fleet.url("rs", 18280), auth=Auth.with_key("frank", stranger))


@pytest_twisted.ensureDeferred
async def test_dynamic_authenticator_component_is_consulted(fleet):
    await fleet.ready("auth.json")
    carol_auth = Auth.with_ticket("carol", "carol-ticket")
    async with joined(fleet.url("rs", 18280), auth=carol_auth) as carol:
        assert (carol.details.authid, carol.details.authrole) == ("carol", "user")
        assert carol.details.authextra["checked_by"] == "com.example.authenticate"
    with pytest.raises(ApplicationError) as refusal:
        await join(fleet.url("rs", 18280), auth=Auth.with_ticket("zoe", "guessed"))
    assert refusal.value.error == "com.example.invalid_ticket"
    calls = await call_once(fleet.url("rs", 18280), "com.example.authenticate.calls")
    assert {"realm": "realm1", "authid": "carol", "authmethod": "ticket"} in calls
    assert {"realm": "realm1", "authid": "zoe", "authmethod": "ticket"} in calls


@pytest_twisted.ensureDeferred
async def test_dynamic_authorizer_component_is_consulted(fleet):
    await fleet.ready("auth.json")
    dave_auth = Auth.with_ticket("dave", "dave-ticket")
    async with joined(fleet.url("rs", 18280), auth=dave_auth) as dave:
        assert dave.details.authrole == "guest"
        assert await dave.call("com.example.open.echo", "hi") == "hi"
        assert await refused(dave, "com.example.closed.echo", "hi") == "wamp.error.not_authorized"
    calls = await call_once(fleet.url("rs", 18280), "com.example.authorize.calls")
    assert {"authid": "dave", "uri": "com.example.open.echo", "action": "call"} in calls
    assert {"authid": "dave", "uri": "com.example.closed.echo", "action": "call"} in calls


@pytest_twisted.ensureDeferred
async def test_permissions_grant_each_action_separately(fleet):
    await fleet.ready("auth.json")
    erin_auth = Auth.with_ticket("erin", "erin-ticket")
    async with joined(fleet.url("rs", 18281), auth=erin_auth) as erin:
        assert erin.details.authrole == "reader"
        assert await erin.call("com.example.data.get") == "data"
        await erin.subscribe(lambda *a: None, "com.example.feed")
        for attempt in (
            erin.publish("com.example.data.x", options=PublishOptions(acknowledge=True)),
            erin.register(lambda: None, "com.example.data.mine"),
            erin.subscribe(lambda *a: None, "com.example.data.x"),
        ):
            with pytest.raises(ApplicationError, match="not_authorized"):
                await attempt


@pytest_twisted.ensureDeferred
async def test_realm_store_gives_a_late_subscriber_the_event_history(fleet):
    await fleet.ready("auth.json")
    # Crossbar.io records an event in the history of a subscription only when the event is
    # dispatched to a subscriber: somebody listens while the events are published
    async with (
        joined(fleet.url("rs", 18280)) as early,
        joined(fleet.url("rs", 18280)) as publisher,
    ):
        events = Events()
        await early.subscribe(events, "com.example.history")
        for n in range(7):
            await publisher.publish("com.example.history", n, options=PublishOptions(
                acknowledge=True))
        await events.wait(7)
    async with joined(fleet.url("rs", 18280)) as late:
        subscription = await late.subscribe(lambda *a: None, "com.example.history")
        history = await late.call("wamp.subscription.get_events", subscription.id, 10)
    # newest first, at most the configured limit of 5 per subscription
    assert [event["args"] for event in history] == [[6], [5], [4], [3], [2]]
    assert all(event["topic"] == "com.example.history" for event in history)


# -------------------------------------------------------------------------------------------
# rlink/: two nodes, a call forwarded by a router-to-router link


@pytest_twisted.ensureDeferred
async def test_rlink_forwards_a_call_to_the_other_node(fleet):
    from crossbar.common.key import _maybe_generate_node_key

    node_a = fleet.corpus.path("rlink/node_a")
    # node A's key, written where its router reads it (as `crossbar start` would): node B's
    # cryptosign principal for the link authorizes exactly this key
    _, key = _maybe_generate_node_key(str(node_a))
    config_b = fleet.corpus.path("rlink/node_b/config.json")
    config_b.write_text(config_b.read_text().replace("NODE_A_PUBLIC_KEY", key.public_key()))
    fleet.start("rlink/node_b/config.json")
    fleet.start("rlink/node_a/config.json")
    await fleet.ready("rlink/node_b/config.json")
    await fleet.ready("rlink/node_a/config.json")
    async with joined(fleet.url("ws", 18680, "/ws")) as client:
        # com.example.add2 is registered on node A only; node B knows it through the link,
        # once the link is up (it connects on its own, with retries). Only the link's session
        # may register on node B, and it joins with node A's key only (WAMP-Cryptosign)
        deadline = reactor.seconds() + DEADLINE
        while (answer := await call_or_none(client, "com.example.add2", 20, 22)) is None:
            assert reactor.seconds() < deadline, "the call was never forwarded to node A"
            await deferLater(reactor, 0.1, lambda: None)
        assert answer == 42


async def call_or_none(session: Client, procedure: str, *args: Any) -> Any:
    """The result, or None while the procedure is not registered."""
    try:
        return await session.call(procedure, *args)
    except ApplicationError as error:
        assert error.error == "wamp.error.no_such_procedure", error
        return None


# -------------------------------------------------------------------------------------------
# proxy.json: a proxy worker in front of its backend router


@pytest_twisted.ensureDeferred
async def test_proxy_worker_forwards_sessions_to_its_backend_router(fleet):
    await fleet.ready("proxy.json")
    page = await http("GET", fleet.url("http", 18580, "/about"))
    assert page.json() == {"served_by": "proxy1"}
    assert b"static file served" in (await http("GET", fleet.url("http", 18580, "/"))).body
    # the backend router listens on a unix socket only: this session reaches it via the proxy
    async with joined(fleet.url("ws", 18580, "/ws")) as client:
        assert client.details.authrole == "anonymous"
        assert await client.call("com.example.add2", 40, 2) == 42
        events = Events()
        await client.subscribe(events, "com.example.proxied")
        async with joined(fleet.url("ws", 18580, "/ws")) as other:
            await other.publish("com.example.proxied", "through",
                                options=PublishOptions(acknowledge=True))
        [(args, _)] = await events.wait(1)
        assert args == ("through",)


# -------------------------------------------------------------------------------------------
# crossbar init's template, run unchanged but for its ports


@pytest_twisted.ensureDeferred
async def test_crossbar_init_template_runs_unchanged(nodes, tmp_path):
    import crossbar

    template = Path(crossbar.__file__).parent / "node" / "templates" / "default"
    app = tmp_path / "app"
    shutil.copytree(template, app)
    config = app / ".crossbar" / "config.json"
    # the ONLY change: the template's fixed ports 8080 (web) and 8081 (rawsocket) become free
    # ports, so that the test cannot collide with anything on the machine
    web, rawsocket = free_port(), free_port()
    text = config.read_text()
    assert text.count('"port": 8080') == 1 and text.count('"port": 8081') == 1
    config.write_text(text.replace('"port": 8080', f'"port": {web}')
                      .replace('"port": 8081', f'"port": {rawsocket}'))
    await nodes.ready(config, "template", timeout=START)

    listing = await http("GET", f"http://127.0.0.1:{web}/")
    assert listing.code == 200 and b"README.md" in listing.body
    readme = await http("GET", f"http://127.0.0.1:{web}/README.md")
    assert readme.body == (app / "web" / "README.md").read_bytes()
    info = await http("GET", f"http://127.0.0.1:{web}/info")
    assert info.code == 200 and node_public_key(config.parent).encode() in info.body
    for address in (f"ws://127.0.0.1:{web}/ws", f"rs://127.0.0.1:{rawsocket}"):
        async with joined(address) as session:
            assert session.details.realm == "realm1"


# -------------------------------------------------------------------------------------------
# trusted.json: Crossbar.io's built-in role "trusted" handed out on the app transports


@pytest_twisted.ensureDeferred
async def test_trusted_role_on_app_transports_does_not_reach_the_management_realm(fleet):
    node = await fleet.ready("trusted.json")
    attackers = [
        (fleet.url("rs", 18481), Auth()),
        (fleet.url("rs", 18482), Auth.with_ticket("mallory", "mallory-ticket")),
    ]
    for address, auth in attackers:
        assert await management_reachable(address, auth) == []
        # on the application realm the role is trusted, and still no management procedure
        async with joined(address, "realm1", auth) as session:
            assert session.details.authrole == "trusted"
            for procedure, args in MANAGEMENT_CALLS:
                assert await refused(session, procedure, *args) == "wamp.error.no_such_procedure"
    async with managing(node) as client:
        assert await client.worker_call("crossbar.worker.worker1", "get_components") == ["keeper"]
        record = await client.worker_call("crossbar.worker.worker1", "get_component", "keeper")
        assert record["state"] == "running"
    assert await call_once(fleet.url("rs", 18480), "com.example.keeper.ping") == "pong"


MANAGEMENT_CALLS = [
    ("crossbar.worker.worker1.get_components", ()),
    ("crossbar.worker.worker1.stop_component", ("keeper",)),
]


async def management_reachable(address: str, auth: Auth) -> list[str]:
    """The management procedures a client at ``address`` reaches after joining the realm
    named like the management realm (none when it cannot join it at all)."""
    try:
        session = await join(address, "crossbar", auth)
    except ApplicationError as refusal:
        assert refusal.error == "wamp.error.no_such_realm", refusal
        return []
    reached = []
    try:
        for procedure, args in MANAGEMENT_CALLS:
            try:
                await session.call(procedure, *args)
            except ApplicationError:
                continue
            reached.append(procedure)
    finally:
        await leave(session)
    return reached


# -------------------------------------------------------------------------------------------
# refused/: bad input stays refused before anything starts


@dataclass
class Refusal:
    config: Path
    code: int
    output: str
    spawned: list[psutil.Process]

    def survivors(self) -> list[psutil.Process]:
        alive = []
        for process in self.spawned:
            with contextlib.suppress(psutil.Error):  # is_running() knows a pid used again
                if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                    alive.append(process)
        return alive


@pytest.fixture(scope="module")
def refusals(fleet: Fleet) -> Iterator[dict[str, Refusal]]:
    """Every refused configuration given to ``container run`` at once (they run in parallel:
    each run imports Crossbar.io to ask its checker); their output, and every process each
    one spawned (sampled while it ran). Whatever is left at the end is killed by pid."""
    running = {name: _run_node(fleet, name) for name in REFUSED}
    spawned: dict[str, dict[int, psutil.Process]] = {name: {} for name in REFUSED}
    try:
        deadline = time.monotonic() + START
        while any(process.poll() is None for _, process in running.values()):
            assert time.monotonic() < deadline, "container run did not exit"
            for name, (_, process) in running.items():
                spawned[name].update((c.pid, c) for c in _children(process.pid))
            pending = [p for _, p in running.values() if p.poll() is None]
            with contextlib.suppress(subprocess.TimeoutExpired):
                if pending:
                    pending[0].wait(0.05)
        yield {name: Refusal(fleet.corpus.path(name), process.returncode,
                             output.read_text(), list(spawned[name].values()))
               for name, (output, process) in running.items()}
    finally:
        for name, (_, process) in running.items():
            kill(process)
            for child in spawned[name].values():  # psutil refuses a pid used again since
                with contextlib.suppress(psutil.Error):
                    child.kill()


def _run_node(fleet: Fleet, name: str) -> tuple[Path, subprocess.Popen[bytes]]:
    config = fleet.corpus.path(name)
    output = fleet.logs / (config.stem + ".output.log")
    with output.open("wb") as file:
        process = fleet.started.popen(config, stdin=subprocess.DEVNULL, stdout=file,
                                      stderr=subprocess.STDOUT)
    return output, process


def _children(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _position(path: Path, token: str) -> str:
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if token in line:
            return f"{path}:{number}:{line.index(token) + 1}"
    raise AssertionError(f"{token} not in {path}")


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_configuration_exits_with_positions_and_leaves_nothing(refusals, name):
    refusal = refusals[name]
    key_path, token = REFUSED[name]
    assert refusal.code != 0
    assert f"{_position(refusal.config, token)}: {key_path}: " in refusal.output
    assert "nothing was started" in refusal.output
    assert refusal.survivors() == []
    ports = [int(p) for p in _ports_of(refusal.config)]
    assert ports and all(port_is_free(port) for port in ports)
    assert not (refusal.config.parent / ".container-run").exists()


def _ports_of(path: Path) -> list[str]:
    return re.findall(r'"port": (\d+)', path.read_text())

"""Whatever configuration is sent to ``start_component``, the worker answers: a start, or one
of the documented errors; it stays up, and the component started before keeps answering.

Hypothesis starts from valid configurations (class and function components; RawSocket and
WebSocket; TCP, unix socket, URL only, TLS) and changes one or two things at a key path:
another value (wrong types, empty strings, huge, negative and non-finite numbers, control
characters, odd URLs and hosts), a key removed, an unknown key added. Every network target it
can produce is a loopback address (or ``localhost``), or a value refused before connecting;
failed connects go to a closed loopback port and fail at once. Each example is started on a
real worker against the real router; what starts is stopped again.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest_twisted
from autobahn.wamp.exception import ApplicationError
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from tests.support import wampclient
from tests.support.certs import write_certificate
from tests.support.ports import free_port

#: The errors docs/management-api.md lists for start_component that a configuration can cause.
DOCUMENTED = frozenset({
    "crossbar.error.invalid_configuration", "crossbar.error.class_import_failed",
    "crossbar.error.cannot_connect", "crossbar.error.cannot_start",
    "wamp.error.invalid_argument",
})


# Placeholders for what is known only once the router and the test folder exist; ``resolve``
# puts the values in (a port placeholder that is a whole value becomes an integer).
APP, CLOSED = "<app-port>", "<closed-port>"
UNIX, NOBODY, CERT, KEY, FOLDER = "<unix>", "<nobody>", "<cert>", "<key>", "<folder>"


@dataclass(frozen=True)
class Targets:
    """Where the generated configurations may point: the router, or nobody (all loopback)."""

    app_port: int
    closed_port: int
    unix_path: str
    folder: str

    def resolve(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {key: self.resolve(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if not isinstance(value, str):
            return value
        if value in (APP, CLOSED):
            return self.app_port if value == APP else self.closed_port
        for placeholder, text in ((APP, str(self.app_port)), (CLOSED, str(self.closed_port)),
                                  (UNIX, self.unix_path), (FOLDER, self.folder),
                                  (NOBODY, f"{self.folder}/nobody.sock"),
                                  (CERT, f"{self.folder}/client.pem"),
                                  (KEY, f"{self.folder}/client.key")):
            value = value.replace(placeholder, text)
        return value


TCP = {"type": "tcp", "host": "127.0.0.1", "port": APP, "timeout": 5}
URL = f"ws://127.0.0.1:{APP}/ws"
TRANSPORTS: list[dict[str, Any]] = [
    {"type": "rawsocket", "serializer": "cbor", "endpoint": TCP,
     "options": {"max_message_size": 1048576}},
    {"type": "rawsocket", "serializer": "json",
     "endpoint": {"type": "unix", "path": UNIX, "timeout": 5}},
    {"type": "rawsocket", "url": f"rs://127.0.0.1:{APP}"},
    {"type": "websocket", "url": URL, "endpoint": TCP, "serializers": ["cbor", "json"],
     "options": {"auto_ping_interval": 10000, "openHandshakeTimeout": 5,
                 "max_message_size": 1048576}},
    {"type": "websocket", "url": URL},
    {"type": "rawsocket", "endpoint": {"type": "tcp", "host": "127.0.0.1", "port": CLOSED,
                                       "tls": {"hostname": "localhost", "ca_certificates": [CERT],
                                               "certificate": CERT, "key": KEY}}},
]
#: Valid configurations, one per shape of transport and component.
BASES = [{"type": "class", "classname": "hello.Quiet", "realm": "realm1",
          "transport": transport, "ready_grace": 0.5} for transport in TRANSPORTS] + [
    {"type": "function", "realm": "realm1", "transport": transport,
     "callbacks": {"join": "functions.on_join", "leave": "functions.on_leave"},
     "extra": {"prefix": "com.property"}} for transport in TRANSPORTS[:3]]


def quiet(transport: dict[str, Any]) -> dict[str, Any]:
    return {"type": "class", "classname": "hello.Quiet", "realm": "realm1",
            "transport": transport}


def tls(**settings: Any) -> dict[str, Any]:
    return {"type": "rawsocket",
            "endpoint": {"type": "tcp", "host": "127.0.0.1", "port": CLOSED, "tls": settings}}


#: What issue 12 (item 13) found, always tried first: each was wamp.error.runtime_error.
FOUND = [
    quiet({"type": "websocket", "url": "ws://127.0.0.1:0/ws"}),
    quiet({"type": "websocket", "url": "ws:///ws"}),
    quiet(tls(ca_certificates=[NOBODY])),
    quiet(tls(ca_certificates=[f"{FOLDER}/junk.pem"])),
    quiet(tls(certificate=CERT, key=f"{FOLDER}/junk.pem")),
    quiet(tls(hostname="not_a host")),
    quiet({"type": "rawsocket", "endpoint": {
        "type": "twisted", "client_string": f"tls:127.0.0.1:{CLOSED}:trustRoots=/nonexistent"}}),
]


# --- odd values ------------------------------------------------------------------------------

ODD_STRINGS = ["", " ", "\x00", "\n", "\u2028", "a" * 300, "abc", "x.y", "-1", "true"]
SCALARS = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 1, 511, 512, 65535, 65536, 2**31, 2**63, 10**20]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(ODD_STRINGS),
    st.text(st.characters(exclude_categories=["Cs"]), max_size=12),
)
GENERIC = st.one_of(
    SCALARS,
    st.lists(SCALARS, max_size=3),
    st.dictionaries(st.sampled_from(["a", "type", ""]), SCALARS, max_size=2),
)
UNKNOWN_KEYS = ["bogus", "clasname", "", "\n", "Type", "tls", "options", "timeout", "version",
                "url", "host", "endpoint", "serializer", "maxMessagePayloadSize",
                "openHandshakeTimeout", "autoPingSize", "client_string"]


def hosts() -> list[str]:
    """Loopback, or refused before any lookup (a host name would be a DNS query)."""
    return ["127.0.0.1", "::1", "localhost", "", " ", "127.0.0.1\n", "\x00", "127.0.0.1 ",
            "local host"]


def urls() -> list[str]:
    """Loopback hosts or none at all."""
    app, closed = APP, CLOSED
    return [
        f"ws://127.0.0.1:{app}/ws", f"ws://127.0.0.1:{closed}/ws", "ws://127.0.0.1:0/ws",
        "ws:///ws", f"ws://:{app}/ws", f"ws://[::1]:{closed}/ws", f"wss://127.0.0.1:{closed}/ws",
        f"wss://localhost:{app}/ws", f"ws://127.0.0.1:{app}/nope", f"ws://127.0.0.1:{app}/ws#x",
        f"ws://127.0.0.1:{app}/ws?x=1", "ws://127.0.0.1:99999/ws", "ws://127.0.0.1:abc/ws",
        f"ws://127.0.0.1:{app}/w\x00s", f"ws://127.0.0.1\n:{app}/ws",
        f"ws://localhost:{closed}/ws", f"ws://u:p@127.0.0.1:{app}/ws", f"http://127.0.0.1:{app}/",
        "", "ws://", f"rs://127.0.0.1:{app}", "rs://127.0.0.1:0", f"rs://:{app}",
        f"rss://127.0.0.1:{closed}", f"rs://unix:{UNIX}", "rs://unix:/tmp/" + "u" * 120,
        f"rs://unix:{NOBODY}", "ws://[::1/ws",
    ]


def odd_value(key: Any) -> st.SearchStrategy[Any]:
    """What may replace the value of ``key``: where a value names a network target, only
    loopback ones (or values refused before connecting)."""
    if key == "host":
        return st.sampled_from(hosts())
    if key == "url":
        return st.sampled_from(urls())
    if key == "client_string":
        return st.sampled_from([f"tcp:127.0.0.1:{CLOSED}", "unix:/nonexistent.sock", "", "x",
                                "tcp:host=127.0.0.1:port=abc",
                                f"tls:127.0.0.1:{CLOSED}:trustRoots=/nonexistent"])
    if key == "port":
        return st.sampled_from([APP, CLOSED, 0, -1, 65536, 2**31, True, "8080", 1.5, None])
    if key == "path":
        return st.sampled_from([UNIX, NOBODY, "", "/tmp/" + "u" * 120,
                                "/tmp/a\x00b", "\x00abstract-nobody", "relative.sock", 5])
    if key in ("classname", "join", "leave", "ready", "connect", "disconnect"):
        return st.sampled_from(["hello.Quiet", "hello.Nope", "nosuchmodule.Thing", "hello",
                                "", ".x", "hello.", "hello.Quiet\n", "faulty.ConstructorRaises",
                                "faulty.NotASession", "functions.failing_join", "os.path", 3])
    if key in ("certificate", "key", "ca_certificates"):
        return st.sampled_from([CERT, KEY, NOBODY, FOLDER, f"{FOLDER}/junk.pem",
                                "relative-missing.pem", "", "\x00"])
    if key == "hostname":
        return st.sampled_from(["localhost", "127.0.0.1", "not_a host", "", "a..b", "é" * 70,
                                "\x00", 7])
    if key in ("serializer", "serializers"):
        return st.sampled_from(["cbor", "json", "msgpack", "ubjson", "", "CBOR", ["cbor"], [],
                                ["x"], ["json", "json"], None])
    if key == "type":
        return st.sampled_from(["class", "function", "websocket", "rawsocket", "tcp", "unix",
                                "twisted", "tor", "", "Class", None])
    return GENERIC


# --- mutations at a key path -------------------------------------------------------------------

At = tuple[Any, ...]


def paths_of(value: Any, path: At = ()) -> Iterator[At]:
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from paths_of(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from paths_of(item, (*path, index))


def value_at(config: Any, path: At) -> Any:
    for part in path:
        config = config[part]
    return config


def with_value(config: Any, path: At, value: Any) -> Any:
    if not path:
        return value
    changed = copy.deepcopy(config)
    value_at(changed, path[:-1])[path[-1]] = value
    return changed


def without(config: Any, path: At) -> Any:
    changed = copy.deepcopy(config)
    del value_at(changed, path[:-1])[path[-1]]
    return changed


#: Where a value passes the schema and could still trip the worker up: drawn more often.
ADDRESS_KEYS = frozenset({"url", "host", "port", "path", "hostname", "certificate", "key",
                          "timeout", "ready_grace"})


def key_of(path: At) -> Any:
    """The key whose odd values replace the value at ``path`` (a list item: its list's)."""
    if not path:
        return None
    return path[-2] if isinstance(path[-1], int) and len(path) > 1 else path[-1]


def is_address(path: At) -> bool:
    return key_of(path) in ADDRESS_KEYS or "options" in path[-2:-1] or (
        "ca_certificates" in path[-2:])


@st.composite
def mutated(draw: st.DrawFn, config: Any) -> Any:
    paths = list(paths_of(config))
    kind = draw(st.sampled_from(["address", "address", "replace", "replace", "remove", "add"]))
    addresses = [path for path in paths if is_address(path)]
    if kind == "address" and addresses:
        path = draw(st.sampled_from(addresses))
        return with_value(config, path, draw(odd_value(key_of(path))))
    inner = [path for path in paths if path]
    if kind == "remove" and inner:
        return without(config, draw(st.sampled_from(inner)))
    objects = [path for path in paths if isinstance(value_at(config, path), dict)]
    if kind == "add" and objects:
        key = draw(st.sampled_from(UNKNOWN_KEYS))
        return with_value(config, (*draw(st.sampled_from(objects)), key),
                          draw(odd_value(key)))
    path = draw(st.sampled_from(paths))
    return with_value(config, path, draw(odd_value(key_of(path))))


@st.composite
def configurations(draw: st.DrawFn) -> Any:
    config = copy.deepcopy(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(min_value=1, max_value=2))):
        config = draw(mutated(config))
    return config


# --- the test ----------------------------------------------------------------------------------


def examples_of(configs: list[Any]) -> Callable[[Any], Any]:
    """``@example(sent=...)`` for each of ``configs``: tried before the generated ones."""
    def decorate(test: Any) -> Any:
        for config in reversed(configs):
            test = example(sent=config)(test)
        return test
    return decorate


@dataclass
class Neighbourhood:
    env: Any
    app: Any
    prefix: str
    targets: Targets
    starts: int = 0


@pytest_twisted.async_yield_fixture
async def neighbourhood(workers: Any, tmp_path: Path) -> Any:
    """A worker (short start and stop timeouts), a neighbour component on it, and a client
    that calls the neighbour."""
    env = await workers({"start_timeout": 5, "stop_timeout": 2})
    prefix = env.unique()
    await env.call("start_component", "neighbour",
                   env.component("hello.Greeter", extra={"prefix": prefix}))
    app = await wampclient.connect(
        {"kind": "rawsocket", "host": "127.0.0.1", "port": env.router.app_port}, "realm1")
    write_certificate(tmp_path, "client")  # CERT and KEY
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    targets = Targets(env.router.app_port, free_port(), env.router.unix_path, str(tmp_path))
    try:
        yield Neighbourhood(env, app, prefix, targets)
    finally:
        await wampclient.close(app)


@settings(max_examples=40, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(sent=configurations())
@examples_of(FOUND)
@pytest_twisted.ensureDeferred
async def test_any_configuration_gets_an_answer_and_the_worker_and_its_neighbour_stay(
    neighbourhood: Neighbourhood, sent: Any
) -> None:
    n = neighbourhood
    config = n.targets.resolve(sent)
    n.starts += 1
    component_id = f"p{n.starts}"
    try:
        started = await n.env.call("start_component", component_id, config)
    except ApplicationError as error:
        event(error.error)  # shown by --hypothesis-show-statistics
        assert error.error in DOCUMENTED, error
        assert error.args and isinstance(error.args[0], str) and error.args[0]
    else:
        event("started")
        assert started["state"] == "running"
        await n.env.call("stop_component", component_id)
    status = await n.env.call("get_status")
    assert status["id"] == n.env.worker.settings.worker_id
    assert await n.env.call("get_components") == ["neighbour"]
    assert await n.app.call(f"{n.prefix}.greet", "x") == "hello x"

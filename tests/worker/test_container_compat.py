"""Every key Crossbar.io accepts for a container worker is accepted: honoured, or warned about.

The test data is Crossbar.io's own: each case is first passed through Crossbar.io's
``check_container``, so a value here is one that ``crossbar check`` accepts. Then our parse
must accept it and either honour it (the test asserts the effect) or say, in exactly one
warning naming the key, why it has no effect here.
"""

from __future__ import annotations

import copy
import json
import os
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import txtorcon
from crossbar.common.checkconfig import InvalidConfigException
from crossbar.personality import Personality
from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, UNIXClientEndpoint

from container import connector
from container.components import ComponentSpec, component_warnings, parse_component
from container.errors import ClassImportFailed, InvalidConfiguration
from container.options import (
    ContainerOptions,
    container_worker_warnings,
    parse_container_options,
    worker_disabled,
)
from container.validation import schema_problems
from container.worker.loader import load_session_class
from container.worker.os_options import check_on_this_machine, cpus_at
from tests.support import wampclient
from tests.support.certs import write_certificate
from tests.support.paths import APPS
from tests.support.router import WORKER_TICKET
from tests.support.workers import management_events, worker_argv


def crossbar_accepts(container: dict[str, Any]) -> None:
    """Crossbar.io's own checker (it changes what it checks, so it gets a copy)."""
    Personality.check_container(Personality, copy.deepcopy(container))


# --- container options -------------------------------------------------------------------


@dataclass(frozen=True)
class OptionCase:
    """A container option with a value Crossbar.io accepts, and what must come of it."""

    key: str
    value: Any
    honoured: Callable[[ContainerOptions], bool] | None = None  # None: exactly one warning

    @property
    def id(self) -> str:
        return f"{self.key}={json.dumps(self.value)}"


OPTION_CASES = [
    OptionCase("extra", {"anything": [1, 2]}),
    OptionCase("title", "my worker", lambda o: o.title == "my worker"),
    OptionCase("python", sys.executable, lambda o: o.python == sys.executable),
    OptionCase("pythonpath", ["lib", ""], lambda o: o.pythonpath == ("lib", "")),
    OptionCase("cpu_affinity", [0], lambda o: o.cpu_affinity == (0,)),
    OptionCase("cpu_affinity", [-1], lambda o: o.cpu_affinity == (-1,)),
    OptionCase("cpu_affinity", [], lambda o: o.cpu_affinity == ()),
    OptionCase("env", {"inherit": ["HOME"], "vars": {"A": "b"}},
               lambda o: o.env == {"inherit": ["HOME"], "vars": {"A": "b"}}),
    OptionCase("env", {"inherit": False}, lambda o: o.env == {"inherit": False}),
    OptionCase("expose_controller", True, lambda o: o.expose_controller),
    OptionCase("expose_shared", True, lambda o: o.expose_shared),
    OptionCase("disabled", True, lambda o: worker_disabled(o.raw, {})),
    OptionCase("disabled", "${WC_TEST_OFF}",
               lambda o: worker_disabled(o.raw, {"WC_TEST_OFF": "1"})
               and not worker_disabled(o.raw, {})),
    *(OptionCase("shutdown", mode, lambda o, mode=mode: o.shutdown.value == mode)
      for mode in ("shutdown-manual", "shutdown-on-last-component-stopped",
                   "shutdown-on-any-component-stopped", "shutdown-on-any-component-failed")),
    *(OptionCase("restart", mode, lambda o, mode=mode: o.restart.value == mode.replace("-on-", "-"))
      for mode in ("restart-never", "restart-always", "restart-on-failed")),
]


@pytest.mark.parametrize("case", OPTION_CASES, ids=lambda case: case.id)
def test_every_crossbar_container_option_is_honoured_or_warned_about(case: OptionCase) -> None:
    crossbar_accepts({"type": "container", "options": {case.key: case.value}})
    options = parse_container_options({case.key: case.value})
    if case.honoured is None:
        assert [warning.path for warning in options.warnings] == [(case.key,)]
    else:
        assert options.warnings == ()
        assert case.honoured(options)


def test_the_option_warnings_say_why() -> None:
    (warning,) = parse_container_options({"extra": {}}).warnings
    assert str(warning).startswith("extra: has no effect here: ")
    assert "controller" in str(warning)


def test_a_string_disabled_counts_as_crossbar_reads_it() -> None:
    assert worker_disabled({"disabled": "${WC_TEST_OFF}"}, {"WC_TEST_OFF": ""}) is False
    assert worker_disabled({"disabled": "yes"}, {}) is True
    assert worker_disabled({"disabled": False}, {}) is False
    assert worker_disabled({}, {}) is False


# --- cpu_affinity and reactor: what the worker process decides ---------------------------


def test_cpu_affinity_entries_are_positions_in_the_cpus_the_worker_may_use() -> None:
    assert cpus_at([0, -1], [2, 3, 5]) == {2, 5}
    assert cpus_at([], [2, 3, 5]) == {2, 3, 5}


def test_a_cpu_position_out_of_range_is_an_error_naming_the_key() -> None:
    available = len(os.sched_getaffinity(0))
    options = parse_container_options({"cpu_affinity": [0, available]})
    with pytest.raises(InvalidConfiguration) as refused:
        check_on_this_machine(options)
    assert refused.value.details["key"] == "cpu_affinity"
    assert f"position {available} is out of range" in str(refused.value)


def installed_reactor_name() -> str:
    """The short name of the reactor this test process runs (pytest-twisted installed it)."""
    from twisted.plugins import twisted_reactors

    module = type(reactor).__module__
    return next(entry.shortName for entry in vars(twisted_reactors).values()
                if getattr(entry, "moduleName", None) == module)


def test_reactor_is_refused_by_crossbars_checker_yet_read_by_its_node() -> None:
    """Crossbar.io's node controller reads ``options.reactor`` (``--reactor`` for the worker
    process) though its checker refuses the key; we accept it, as that node does."""
    with pytest.raises(InvalidConfigException, match="reactor"):
        crossbar_accepts({"type": "container", "options": {"reactor": {"linux": "epoll"}}})
    assert parse_container_options({"reactor": {"linux": "epoll"}}).reactor == {"linux": "epoll"}


def test_the_reactor_already_running_is_honoured_without_a_warning() -> None:
    options = parse_container_options({"reactor": {sys.platform: installed_reactor_name()}})
    assert check_on_this_machine(options).warnings == ()


def test_a_reactor_that_can_no_longer_be_installed_is_one_warning_naming_the_key() -> None:
    other = "poll" if installed_reactor_name() != "poll" else "select"
    options = check_on_this_machine(parse_container_options({"reactor": {sys.platform: other}}))
    assert [warning.path for warning in options.warnings] == [("reactor", sys.platform)]
    assert "already runs" in options.warnings[0].message


def test_a_reactor_for_another_platform_changes_nothing_here() -> None:
    options = parse_container_options({"reactor": {"no-such-platform": "iocp"}})
    assert check_on_this_machine(options).warnings == ()


def test_an_unknown_reactor_is_an_error_naming_the_key() -> None:
    options = parse_container_options({"reactor": {sys.platform: "turbo"}})
    with pytest.raises(InvalidConfiguration) as refused:
        check_on_this_machine(options)
    assert refused.value.details["key"] == f"reactor.{sys.platform}"


# --- components ------------------------------------------------------------------------------

TCP = {"type": "tcp", "host": "127.0.0.1", "port": 8080}
RAWSOCKET = {"type": "rawsocket", "serializer": "cbor", "endpoint": TCP}
WEBSOCKET = {"type": "websocket", "url": "ws://127.0.0.1:8080/ws", "endpoint": TCP}
CLASS = {"type": "class", "classname": "hello.Quiet", "realm": "realm1", "transport": RAWSOCKET}
FUNCTION = {"type": "function", "realm": "realm1", "auth": {}, "transport": RAWSOCKET,
            "callbacks": {"join": "functions.on_join"}}


@dataclass(frozen=True)
class ComponentCase:
    """A component Crossbar.io accepts; either ``honoured`` holds or one warning at ``warns``."""

    id: str
    config: dict[str, Any]
    honoured: Callable[[ComponentSpec], bool] | None = None
    warns: tuple[str | int, ...] = ()


def with_transport(base: dict[str, Any], **transport: Any) -> dict[str, Any]:
    """``base`` with keys of its transport replaced (``None`` removes one)."""
    config = copy.deepcopy(base)
    config["transport"].update(transport)
    config["transport"] = {k: v for k, v in config["transport"].items() if v is not None}
    return config


def with_endpoint(endpoint: dict[str, Any]) -> dict[str, Any]:
    return with_transport(CLASS, endpoint=endpoint)


def websocket_option(key: str, value: Any) -> dict[str, Any]:
    return {**CLASS, "transport": {**WEBSOCKET, "options": {key: value}}}


def factory(spec: ComponentSpec) -> Any:
    return connector._build_factory(spec.transport, lambda: None)


def endpoint(spec: ComponentSpec) -> Any:
    return connector.build_endpoint(reactor, spec.transport.endpoint)


# Crossbar.io option name, a value its checker accepts, autobahn's attribute, its value then
WEBSOCKET_CLIENT_OPTIONS = [
    ("validate_utf8", False, "utf8validateIncoming", False),
    ("apply_mask", False, "applyMask", False),
    ("max_frame_size", 65536, "maxFramePayloadSize", 65536),
    ("max_message_size", 1048576, "maxMessagePayloadSize", 1048576),
    ("auto_fragment_size", 4096, "autoFragmentSize", 4096),
    ("fail_by_drop", True, "failByDrop", True),
    ("echo_close_codereason", True, "echoCloseCodeReason", True),
    ("open_handshake_timeout", 2500, "openHandshakeTimeout", 2.5),
    ("close_handshake_timeout", 1000, "closeHandshakeTimeout", 1.0),
    ("tcp_nodelay", False, "tcpNoDelay", False),
    ("auto_ping_interval", 10000, "autoPingInterval", 10.0),
    ("auto_ping_timeout", 5000, "autoPingTimeout", 5.0),
    ("auto_ping_size", 16, "autoPingSize", 16),
    ("auto_ping_restart_on_any_traffic", False, "autoPingRestartOnAnyTraffic", False),
]
WEBSOCKET_SERVER_OPTIONS = [
    ("allowed_origins", ["*"]), ("allow_null_origin", False), ("external_port", 443),
    ("enable_hybi10", False), ("enable_rfc6455", True), ("enable_webstatus", False),
    ("mask_server_frames", False), ("require_masked_client_frames", True),
    ("enable_flash_policy", False), ("flash_policy", "<cross-domain-policy/>"),
    ("compression", {"deflate": {"request_no_context_takeover": False}}),
    ("require_websocket_subprotocol", True), ("show_server_version", False),
]

COMPONENT_CASES = [
    ComponentCase("class", CLASS, lambda s: s.classname == "hello.Quiet"),
    ComponentCase("class without id", CLASS, lambda s: "id" not in s.raw),
    ComponentCase("id", {**CLASS, "id": "component001"}, lambda s: s.raw["id"] == "component001"),
    ComponentCase("extra", {**CLASS, "extra": {"a": [1]}}, lambda s: s.extra == {"a": [1]}),
    ComponentCase("hyphenated module", {**CLASS, "classname": "publisher-subscriber.MyPubSub"},
                  lambda s: s.modules == ("publisher-subscriber",)),
    ComponentCase("function", FUNCTION, lambda s: s.callbacks == {"join": "functions.on_join"}),
    ComponentCase("function callbacks", {**FUNCTION, "callbacks": {
        "join": "functions.on_join", "leave": "functions.on_leave",
        "connect": "functions.on_join", "disconnect": "functions.on_leave"}},
        lambda s: set(s.callbacks) == {"join", "leave", "connect", "disconnect"}),
    ComponentCase("function without callbacks",
                  {k: v for k, v in FUNCTION.items() if k != "callbacks"},
                  lambda s: s.callbacks == {} and s.modules == ()),
    ComponentCase("function auth empty", FUNCTION, lambda s: s.auth is None),
    ComponentCase("function auth anonymous", {**FUNCTION, "auth": {"anonymous": {
        "authrole": "public"}}}, lambda s: s.auth == {"anonymous": {"authrole": "public"}}),
    ComponentCase("function auth ticket", {**FUNCTION, "auth": {"ticket": {
        "authid": "alice", "ticket": "secret"}}}, lambda s: list(s.auth or {}) == ["ticket"]),
    ComponentCase("function auth cryptosign", {**FUNCTION, "auth": {"cryptosign": {
        "privkey": "00" * 32}}}, warns=("auth", "cryptosign")),
    ComponentCase("function auth router-style ticket", {**FUNCTION, "auth": {"ticket": {
        "type": "static", "principals": {}}}}, warns=("auth", "ticket")),
    # transports
    ComponentCase("transport id", with_transport(CLASS, id="rawsocket_one"),
                  lambda s: s.transport.kind == "rawsocket"),
    *(ComponentCase(f"rawsocket serializer {name}", with_transport(CLASS, serializer=name),
                    lambda s, name=name: name == factory(s)._serializer.SERIALIZER_ID)
      for name in ("json", "msgpack", "cbor", "ubjson")),
    ComponentCase("rawsocket options", with_transport(CLASS, options={"max_message_size": 4096}),
                  lambda s: factory(s).protocol()._max_message_size == 4096),
    ComponentCase("rawsocket url of its endpoint", with_transport(CLASS, url="rs://127.0.0.1:8080"),
                  lambda s: s.transport.endpoint.port == 8080),
    ComponentCase("rawsocket url elsewhere", with_transport(CLASS, url="rs://example.com:9000"),
                  warns=("transport", "url")),
    ComponentCase("rawsocket debug", with_transport(CLASS, debug=True),
                  warns=("transport", "debug")),
    ComponentCase("websocket", {**CLASS, "transport": WEBSOCKET},
                  lambda s: factory(s).url == "ws://127.0.0.1:8080/ws"),
    ComponentCase("websocket id", {**CLASS, "transport": {**WEBSOCKET, "id": "websocket_one"}},
                  lambda s: s.transport.kind == "websocket"),
    ComponentCase("websocket serializers", {**CLASS, "transport": {
        **WEBSOCKET, "serializers": ["ubjson", "json"]}},
        lambda s: factory(s).protocols == ["wamp.2.ubjson", "wamp.2.json"]),
    ComponentCase("websocket unknown serializer", {**CLASS, "transport": {
        **WEBSOCKET, "serializers": ["flatbuffers", "json"]}},
        warns=("transport", "serializers", 0)),
    ComponentCase("websocket no serializer", {**CLASS, "transport": {
        **WEBSOCKET, "serializers": []}}, warns=("transport", "serializers")),
    *(ComponentCase(f"websocket option {key}", websocket_option(key, value),
                    lambda s, attribute=attribute, expected=expected:
                    getattr(factory(s), attribute) == expected)
      for key, value, attribute, expected in WEBSOCKET_CLIENT_OPTIONS),
    *(ComponentCase(f"websocket option {key}", websocket_option(key, value),
                    warns=("transport", "options", key))
      for key, value in WEBSOCKET_SERVER_OPTIONS),
    # endpoints
    ComponentCase("tcp version 6", with_endpoint({**TCP, "host": "::1", "version": 6}),
                  lambda s: isinstance(endpoint(s), TCP6ClientEndpoint)),
    ComponentCase("tcp timeout", with_endpoint({**TCP, "timeout": 3}),
                  lambda s: endpoint(s)._timeout == 3),
    ComponentCase("tcp timeout 0", with_endpoint({**TCP, "timeout": 0}),
                  lambda s: endpoint(s)._timeout == 0),
    ComponentCase("tcp tls", with_endpoint({**TCP, "tls": {"hostname": "example.com"}}),
                  lambda s: type(endpoint(s)).__name__ == "_WrapperEndpoint"),
    ComponentCase("tcp tls files", with_endpoint({**TCP, "tls": {
        "hostname": "example.com", "ca_certificates": ["c.pem"], "certificate": "c.pem",
        "key": "c.key"}}), lambda s: s.transport.endpoint.tls["key"] == "c.key"),
    ComponentCase("tcp tls certificate without key", with_endpoint({**TCP, "tls": {
        "hostname": "example.com", "certificate": "c.pem"}}),
        warns=("transport", "endpoint", "tls", "certificate")),
    ComponentCase("unix", with_endpoint({"type": "unix", "path": "app.sock", "timeout": 2}),
                  lambda s: isinstance(endpoint(s), UNIXClientEndpoint)
                  and endpoint(s)._path == "app.sock"),
    ComponentCase("twisted", with_endpoint({"type": "twisted",
                                            "client_string": "tcp:host=127.0.0.1:port=8080"}),
                  lambda s: isinstance(endpoint(s), TCP4ClientEndpoint)
                  and endpoint(s)._port == 8080),
    ComponentCase("twisted timeout", with_endpoint({
        "type": "twisted", "client_string": "tcp:host=127.0.0.1:port=8080", "timeout": 5}),
        warns=("transport", "endpoint", "timeout")),
    ComponentCase("tor", with_endpoint({"type": "tor", "host": "example.onion", "port": 80,
                                        "tor_socks_port": 9050}),
                  lambda s: isinstance(endpoint(s), txtorcon.TorClientEndpoint)),
]


@pytest.mark.parametrize("case", COMPONENT_CASES, ids=lambda case: case.id)
def test_every_crossbar_component_key_is_honoured_or_warned_about(
    case: ComponentCase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the TLS files a case names are read: c.pem and c.key here
    write_certificate(tmp_path, "c")
    crossbar_accepts({"type": "container", "components": [case.config]})
    spec = parse_component(copy.deepcopy(case.config))
    assert [warning.path for warning in spec.warnings] == ([case.warns] if case.warns else [])
    assert component_warnings(case.config) == list(spec.warnings)
    if case.honoured is not None:
        assert case.honoured(spec)


def test_a_function_components_unusable_auth_is_left_out_and_it_joins_anonymously() -> None:
    config = {**FUNCTION, "auth": {"cryptosign": {}, "anonymous": {"authrole": "public"}}}
    spec = parse_component(config)
    assert spec.auth == {"anonymous": {"authrole": "public"}}
    assert "not supported" in spec.warnings[0].message


def test_a_class_components_auth_stays_ours_and_strict() -> None:
    """Crossbar.io refuses ``auth`` on class components; ours is checked strictly."""
    with pytest.raises(InvalidConfigException):
        crossbar_accepts({"type": "container", "components": [{**CLASS, "auth": {"x": {}}}]})
    with pytest.raises(InvalidConfiguration) as refused:
        parse_component({**CLASS, "auth": {"cryptosign": {}}})
    assert "auth" in str(refused.value)


def test_a_rawsocket_url_alone_says_where_to_connect() -> None:
    """Our addition: Crossbar.io requires an endpoint beside the URL."""
    spec = parse_component(with_transport(CLASS, endpoint=None, url="rss://example.com:9443"))
    assert spec.transport.endpoint.describe() == "tls example.com:9443"
    spec = parse_component(with_transport(CLASS, endpoint=None, url="rs://unix:/tmp/a.sock"))
    assert spec.transport.endpoint.describe() == "unix socket /tmp/a.sock"


def test_autobahn_option_names_still_pass_through() -> None:
    spec = parse_component({**CLASS, "transport": {**WEBSOCKET, "options": {
        "autoPingInterval": 7, "auto_ping_timeout": 3000}}})
    assert spec.transport.options == {"autoPingInterval": 7, "autoPingTimeout": 3.0}


def test_a_rawsocket_with_neither_endpoint_nor_url_is_told_it_needs_one() -> None:
    with pytest.raises(InvalidConfiguration, match="needs one of the keys 'endpoint', 'url'"):
        parse_component(with_transport(CLASS, endpoint=None))


def test_an_unknown_websocket_option_is_refused_with_a_close_match() -> None:
    with pytest.raises(InvalidConfiguration, match="did you mean 'auto_ping_interval'"):
        parse_component(websocket_option("auto_ping_intervall", 1000))


# --- the container worker item -----------------------------------------------------------

MANHOLE = {"endpoint": {"type": "tcp", "port": 6022},
           "users": [{"user": "oberstet", "password": "secret"}]}


@pytest.mark.parametrize(("key", "value"), [
    ("manhole", MANHOLE),
    ("connections", [{"id": "backend", "transport": WEBSOCKET}]),
    ("connections", {}),
])
def test_manhole_and_connections_are_accepted_with_one_warning(key: str, value: Any) -> None:
    worker = {"type": "container", "id": "container1", key: value}
    crossbar_accepts(worker)
    assert not schema_problems(value, key)
    assert [warning.path for warning in container_worker_warnings(worker)] == [(key,)]


def test_the_worker_item_warnings_gather_options_and_components() -> None:
    worker = {"type": "container", "manhole": MANHOLE, "options": {"extra": {}},
              "components": [CLASS, with_transport(CLASS, debug=True)]}
    crossbar_accepts(worker)
    assert [warning.path for warning in container_worker_warnings(worker)] == [
        ("manhole",), ("options", "extra"), ("components", 1, "transport", "debug")]


# --- module names --------------------------------------------------------------------------

PUBSUB_MODULE = textwrap.dedent('''
    from autobahn.twisted.wamp import ApplicationSession


    class MyPublisherSubscriber(ApplicationSession):
        """Registers <prefix>.reactor: the class name of the reactor it runs on."""

        async def onJoin(self, details):
            from twisted.internet import reactor

            prefix = self.config.extra["prefix"]
            await self.register(lambda: type(reactor).__name__, f"{prefix}.reactor")
''')


def test_a_hyphenated_module_name_loads_as_in_crossbar(tmp_path: Any, monkeypatch: Any) -> None:
    (tmp_path / "publisher-subscriber.py").write_text(PUBSUB_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    config = {**CLASS, "classname": "publisher-subscriber.MyPublisherSubscriber"}
    crossbar_accepts({"type": "container", "components": [config]})
    spec = parse_component(config)
    try:
        assert load_session_class(spec.classname).__name__ == "MyPublisherSubscriber"
    finally:
        sys.modules.pop("publisher-subscriber", None)


def test_a_missing_hyphenated_module_is_a_clear_import_failure() -> None:
    with pytest.raises(ClassImportFailed) as failed:
        load_session_class("no-such-module.Thing")
    assert "module 'no-such-module' not found" in str(failed.value)
    assert "module search path" in str(failed.value)


def test_a_name_without_a_module_is_a_clear_import_failure() -> None:
    with pytest.raises(ClassImportFailed, match="names no module"):
        load_session_class("Thing")


# --- a real worker process -----------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_worker_process_honours_title_cpus_and_reactor_and_warns_once_per_key(
    router: Any, tmp_path: Any, children: Any
) -> None:
    (tmp_path / "publisher-subscriber.py").write_text(PUBSUB_MODULE)
    cpus = sorted(os.sched_getaffinity(0))
    options = {"pythonpath": [str(tmp_path), APPS], "title": "wc-compat-worker",
               "cpu_affinity": [-1], "reactor": {sys.platform: "asyncio"},
               "extra": {"ignored": True}}
    prefix = "crossbar.worker.compat1"
    client, events = await management_events(router, prefix)
    worker = children.spawn(
        worker_argv(router.management_port, "compat1", options, secret_env="WC_TEST_TICKET"),
        env={"WC_TEST_TICKET": WORKER_TICKET})
    try:
        ready = await events.wait_for("on_worker_ready", timeout=60)
        assert ready["pid"] == worker.pid
        assert os.sched_getaffinity(worker.pid) == {cpus[-1]}
        with open(f"/proc/{worker.pid}/cmdline", "rb") as cmdline:
            assert cmdline.read().startswith(b"wc-compat-worker")
        config = {**CLASS, "classname": "publisher-subscriber.MyPublisherSubscriber",
                  "transport": {**router.rawsocket_transport(), "debug": True},
                  "extra": {"prefix": "com.compat"}}
        await client.call(f"{prefix}.start_component", "pubsub", config)
        await client.call(f"{prefix}.restart_component", "pubsub")
        app = await wampclient.connect(
            {"kind": "rawsocket", "host": "127.0.0.1", "port": router.app_port}, "realm1")
        assert await app.call("com.compat.reactor") == "AsyncioSelectorReactor"
        await wampclient.close(app)
        assert await worker.stop() == 0
        lines = worker.text.splitlines()
        for key in ("options.extra:", "transport.debug:"):
            warned = [line for line in lines if key in line]
            assert len(warned) == 1 and "has no effect" in warned[0]
    finally:
        await wampclient.close(client)


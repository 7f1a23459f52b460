"""Values the schema lets through but the worker cannot use are refused before connecting.

Each is ``crossbar.error.invalid_configuration`` naming the key (``key`` and the start of the
message): a TLS file that cannot be read or holds no certificate or key, a URL without a host
or with port 0, a WebSocket option autobahn would trip over, a unix socket path the kernel
cannot take. And ``cannot_connect`` names the address with the same keys for every transport.
A worker in this process, a real Crossbar.io router, a management client on a real socket.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from autobahn.wamp.exception import ApplicationError

from container.components import parse_component
from container.errors import InvalidConfiguration
from container.transports import UNIX_PATH_MAX
from tests.support.certs import write_certificate
from tests.support.ports import free_port

QUIET = {"type": "class", "classname": "hello.Quiet", "realm": "realm1"}


def tls_transport(port: int, **tls: Any) -> dict[str, Any]:
    return {"type": "rawsocket", "endpoint": {
        "type": "tcp", "host": "127.0.0.1", "port": port, "tls": tls}}


def websocket(url: str, **options: Any) -> dict[str, Any]:
    transport: dict[str, Any] = {"type": "websocket", "url": url}
    if options:
        transport["options"] = options
    return transport


def with_options(port: int, options: dict[str, Any]) -> dict[str, Any]:
    return websocket(f"ws://127.0.0.1:{port}/ws", **options)


def unix(path: str) -> dict[str, Any]:
    return {"type": "rawsocket", "endpoint": {"type": "unix", "path": path}}


TLS_CASES = [
    "missing CA file", "CA file that is a folder", "CA file that is no certificate",
    "missing certificate file", "certificate file that is a key", "key file that is no key",
    "key of another certificate", "TLS host name that is no host name"]


def tls_cases(folder: Path, port: int) -> dict[str, tuple[dict[str, Any], str, list[str]]]:
    """name -> (transport, the key refused, words its message holds)."""
    certificate, key = write_certificate(folder, "client")
    _, other_key = write_certificate(folder, "other")
    missing = str(folder / "missing-ca.pem")
    not_pem = folder / "not-a-certificate.pem"
    not_pem.write_text("hello\n")
    at = "transport.endpoint.tls"
    return {
        "missing CA file": (
            tls_transport(port, ca_certificates=[certificate, missing]),
            f"{at}.ca_certificates[1]",
            [f"cannot read '{missing}'", "No such file or directory"]),
        "CA file that is a folder": (
            tls_transport(port, ca_certificates=[str(folder)]),
            f"{at}.ca_certificates[0]", [f"cannot read '{folder}'"]),
        "CA file that is no certificate": (
            tls_transport(port, ca_certificates=[str(not_pem)]),
            f"{at}.ca_certificates[0]", [f"'{not_pem}'", "no PEM certificate"]),
        "missing certificate file": (
            tls_transport(port, certificate=missing, key=key),
            f"{at}.certificate", [f"cannot read '{missing}'"]),
        "certificate file that is a key": (
            tls_transport(port, certificate=key, key=key),
            f"{at}.certificate", [f"'{key}'", "no PEM certificate"]),
        "key file that is no key": (
            tls_transport(port, certificate=certificate, key=str(not_pem)),
            f"{at}.key", [f"'{not_pem}'", "no PEM private key"]),
        "key of another certificate": (
            tls_transport(port, certificate=certificate, key=other_key),
            f"{at}.key", [f"'{other_key}'", "does not match", f"'{certificate}'"]),
        "TLS host name that is no host name": (
            tls_transport(port, hostname="not_a host"),
            f"{at}.hostname", ["'not_a host'", "not a valid host name"]),
    }


def value_cases(port: int) -> dict[str, tuple[dict[str, Any], str, list[str]]]:
    long_path = "/tmp/" + "s" * UNIX_PATH_MAX
    return {
        "ws URL with port 0": (
            websocket("ws://127.0.0.1:0/ws"), "transport.url", ["port 0", "1 to 65535"]),
        "ws URL without a host": (websocket("ws:///ws"), "transport.url", ["no host"]),
        "ws URL with a fragment": (
            websocket(f"ws://127.0.0.1:{port}/ws#here"), "transport.url", ["fragment"]),
        "wss URL with a host name TLS cannot check": (
            websocket(f"wss://bad_host:{port}/ws"), "transport.url", ["'bad_host'"]),
        "rs URL with port 0": (
            {"type": "rawsocket", "url": "rs://127.0.0.1:0"}, "transport.url", ["port 0"]),
        "rs URL without a host": (
            {"type": "rawsocket", "url": f"rs://:{port}"}, "transport.url", ["no host"]),
        "autobahn's max message size as a string": (
            with_options(port, {"maxMessagePayloadSize": "abc"}),
            "transport.options.maxMessagePayloadSize", ["expected integer", "'abc'"]),
        "autobahn's max message size negative": (
            with_options(port, {"maxMessagePayloadSize": -1}),
            "transport.options.maxMessagePayloadSize", ["-1", ">= 0"]),
        "open handshake timeout as a string": (
            with_options(port, {"openHandshakeTimeout": "x"}),
            "transport.options.openHandshakeTimeout", ["expected number", "'x'"]),
        "open handshake timeout negative": (
            with_options(port, {"openHandshakeTimeout": -1}),
            "transport.options.openHandshakeTimeout", ["-1", ">= 0"]),
        "Crossbar.io's open handshake timeout negative": (
            with_options(port, {"open_handshake_timeout": -1}),
            "transport.options.open_handshake_timeout", ["-1", ">= 0"]),
        "max message size as a string": (
            with_options(port, {"max_message_size": "abc"}),
            "transport.options.max_message_size", ["expected integer", "'abc'"]),
        "max message size negative": (
            with_options(port, {"max_message_size": -1}),
            "transport.options.max_message_size", ["-1"]),
        "RawSocket max message size 0": (
            {"type": "rawsocket", "options": {"max_message_size": 0},
             "endpoint": {"type": "tcp", "host": "127.0.0.1", "port": port}},
            "transport.options.max_message_size", [">= 512"]),
        "an autobahn option that needs Python objects": (
            with_options(port, {"perMessageCompressionOffers": [{}]}),
            "transport.options.perMessageCompressionOffers", ["unknown key"]),
        "auto ping size out of range": (
            with_options(port, {"autoPingSize": 500}),
            "transport.options.autoPingSize", ["<= 125"]),
        "an option autobahn's client does not have": (
            with_options(port, {"openHandshakeTimout": 5}),
            "transport.options.openHandshakeTimout", ["did you mean 'openHandshakeTimeout'"]),
        "a server option under autobahn's name": (
            with_options(port, {"allowedOrigins": ["*"]}),
            "transport.options.allowedOrigins",
            ["unknown key 'allowedOrigins'", "did you mean 'allowed_origins'"]),
        "unix socket path too long": (
            unix(long_path), "transport.endpoint.path",
            ["too long for a unix socket", f"> {UNIX_PATH_MAX} bytes"]),
        "unix socket path with a NUL": (
            unix("/tmp/a\x00b.sock"), "transport.endpoint.path", ["NUL"]),
        "rs unix URL path too long": (
            {"type": "rawsocket", "url": f"rs://unix:{long_path}"}, "transport.url",
            ["too long for a unix socket"]),
        "host with a control character": (
            {"type": "rawsocket",
             "endpoint": {"type": "tcp", "host": "127.0.0.1\n", "port": port}},
            "transport.endpoint.host", ["not a host name", "\\n"]),
        "IPv4 address for an IPv6 endpoint": (
            {"type": "rawsocket",
             "endpoint": {"type": "tcp", "host": "127.0.0.1", "port": port, "version": 6}},
            "transport.endpoint.host", ["IPv4 address", "version 6"]),
        "Twisted endpoint string Twisted cannot build": (
            {"type": "rawsocket", "endpoint": {
                "type": "twisted",
                "client_string": f"tls:127.0.0.1:{port}:trustRoots=/nonexistent"}},
            "transport.endpoint.client_string", ["not a Twisted client endpoint description"]),
    }


async def start_error(env: Any, transport: dict[str, Any]) -> ApplicationError:
    with pytest.raises(ApplicationError) as caught:
        await env.call("start_component", "c1", {**QUIET, "transport": transport})
    return caught.value


def assert_refused(error: ApplicationError, key: str, words: list[str]) -> None:
    assert error.error == "crossbar.error.invalid_configuration", error
    assert error.kwargs["key"] == key
    text = error.args[0]
    assert text.startswith(f"{key}: "), text
    for word in words:
        assert word in text, text


@pytest.mark.parametrize("name", TLS_CASES)
@pytest_twisted.ensureDeferred
async def test_a_tls_file_the_worker_cannot_use_is_named_with_its_key(
    workers: Any, tmp_path: Path, name: str
) -> None:
    env = await workers({"start_timeout": 5})
    transport, key, words = tls_cases(tmp_path, env.router.app_port)[name]
    assert_refused(await start_error(env, transport), key, words)
    assert await env.call("get_components") == []


@pytest.mark.parametrize("name", list(value_cases(1)))
@pytest_twisted.ensureDeferred
async def test_a_value_the_worker_would_trip_over_is_refused_before_connecting(
    workers: Any, name: str
) -> None:
    env = await workers({"start_timeout": 5})
    transport, key, words = value_cases(env.router.app_port)[name]
    assert_refused(await start_error(env, transport), key, words)
    assert await env.call("get_components") == []
    assert env.events.topics("on_component_start") == []


@pytest_twisted.ensureDeferred
async def test_good_tls_files_pass_the_check_and_reach_the_connect(
    env: Any, tmp_path: Path
) -> None:
    """A readable CA and a matching certificate and key are accepted: the start gets as far
    as the TLS handshake with the plain RawSocket listener, which fails it."""
    certificate, key = write_certificate(tmp_path, "client")
    transport = tls_transport(env.router.app_port, ca_certificates=[certificate],
                              certificate=certificate, key=key, hostname="localhost")
    error = await start_error(env, transport)
    assert error.error == "crossbar.error.cannot_connect", error


@pytest_twisted.ensureDeferred
async def test_websocket_max_message_size_0_means_no_limit_as_in_crossbar(env: Any) -> None:
    """Crossbar.io's checker and autobahn take 0 as "no limit" for WebSocket (RawSocket's
    range starts at 512): accepted, and the component runs."""
    transport = {**env.router.websocket_transport(), "options": {"max_message_size": 0}}
    started = await env.call("start_component", "c1", {**QUIET, "transport": transport})
    assert started["state"] == "running"


@pytest.mark.parametrize("where", ["timeout", "ready_grace", "openHandshakeTimeout"])
@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_a_number_that_is_not_finite_is_refused(where: str, value: float) -> None:
    """NaN passes every schema bound (no comparison with it is true), infinity passes a
    minimum; JSON (``NaN``, ``Infinity``) and CBOR carry both. A timer set to NaN breaks the
    reactor's timer order, an infinite one autobahn's batched timers."""
    config: dict[str, Any] = {**QUIET, "transport": websocket("ws://127.0.0.1:8080/ws")}
    if where == "timeout":
        config["transport"]["endpoint"] = {"type": "tcp", "host": "127.0.0.1", "port": 8080,
                                           "timeout": value}
        key = "transport.endpoint.timeout"
    elif where == "ready_grace":
        config["ready_grace"] = value
        key = "ready_grace"
    else:
        config["transport"]["options"] = {"openHandshakeTimeout": value}
        key = "transport.options.openHandshakeTimeout"
    with pytest.raises(InvalidConfiguration) as caught:
        parse_component(config)
    assert caught.value.details["key"] == key
    assert str(caught.value).startswith(f"{key}: ")
    assert "finite" in str(caught.value)


ADDRESS_KEYS = {"transport", "host", "port", "path", "url"}


def closed_transports(port: int, unix_path: str) -> dict[str, tuple[dict[str, Any], Any]]:
    """name -> (a transport nothing listens at, the cannot_connect kwargs expected)."""
    url = f"ws://127.0.0.1:{port}/ws"
    return {
        "rawsocket over tcp": (
            {"type": "rawsocket", "endpoint": {"type": "tcp", "host": "127.0.0.1", "port": port}},
            {"transport": "rawsocket", "host": "127.0.0.1", "port": port, "path": None,
             "url": None}),
        "rawsocket over unix": (
            unix(unix_path),
            {"transport": "rawsocket", "host": None, "port": None, "path": unix_path,
             "url": None}),
        "websocket": (
            websocket(url),
            {"transport": "websocket", "host": "127.0.0.1", "port": port, "path": None,
             "url": url}),
        "rawsocket by URL": (
            {"type": "rawsocket", "url": f"rs://127.0.0.1:{port}"},
            {"transport": "rawsocket", "host": "127.0.0.1", "port": port, "path": None,
             "url": f"rs://127.0.0.1:{port}"}),
    }


@pytest.mark.parametrize("name", ["rawsocket over tcp", "rawsocket over unix", "websocket",
                                  "rawsocket by URL"])
@pytest_twisted.ensureDeferred
async def test_cannot_connect_names_the_address_with_the_same_keys_for_every_transport(
    env: Any, tmp_path: Path, name: str
) -> None:
    transport, expected = closed_transports(free_port(), str(tmp_path / "nobody.sock"))[name]
    error = await start_error(env, transport)
    assert error.error == "crossbar.error.cannot_connect", error
    assert error.kwargs == expected


@pytest_twisted.ensureDeferred
async def test_a_handshake_refused_names_the_address_with_the_same_keys(env: Any) -> None:
    transport = env.router.websocket_transport(path="nope")
    error = await start_error(env, transport)
    assert error.error == "crossbar.error.cannot_connect", error
    assert set(error.kwargs) == ADDRESS_KEYS
    assert error.kwargs == {"transport": "websocket", "host": "127.0.0.1",
                            "port": env.router.app_port, "path": None, "url": transport["url"]}


@pytest_twisted.ensureDeferred
async def test_a_key_that_is_not_a_string_is_refused_with_its_place(env: Any) -> None:
    """CBOR carries maps with integer keys; only ``extra``, the component's own, may hold
    them (the checkpoint keeps them)."""
    transport = {**env.router.rawsocket_transport(), 2: 3}
    with pytest.raises(ApplicationError) as caught:
        await env.call("start_component", "odd", {**QUIET, "transport": transport})
    assert caught.value.error == "crossbar.error.invalid_configuration"
    assert caught.value.args[0] == "transport: keys must be strings, got the key 2"
    assert caught.value.kwargs["key"] == "transport"
    started = await env.call("start_component", "fine",
                             {**QUIET, "transport": env.router.rawsocket_transport(),
                              "extra": {1: "one"}})
    assert started["state"] == "running"
    await env.call("stop_component", "fine")

"""A component's client transport: Crossbar.io's JSON for it, as typed values.

A WebSocket or RawSocket transport over a TCP (maybe TLS), unix, Twisted-string or Tor
endpoint. Crossbar.io's option names are translated to autobahn's here, and every key that
Crossbar.io accepts but that has no effect on a connecting transport becomes a
:class:`~container.validation.ConfigWarning` rather than an error. What the schema cannot say
(a URL without a host, port 0, a unix socket path the kernel cannot take) is found by
:func:`transport_problems`, before anything connects.
"""

from __future__ import annotations

import ipaddress
import json
import os
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from container.errors import InvalidConfiguration
from container.validation import ConfigWarning, Finding, JsonPath

__all__ = [
    "COMPONENT_SERIALIZERS",
    "DEFAULT_SERIALIZERS",
    "UNIX_PATH_MAX",
    "EndpointSpec",
    "TransportSpec",
    "parse_transport",
    "shown_text",
    "transport_problems",
]

#: The longest unix socket path, in bytes: sun_path holds 108 on Linux, the terminating NUL
#: included. The one value for a component's transport and the node's listeners alike.
UNIX_PATH_MAX = 107

#: Every WAMP serializer a component may ask for, by the name Crossbar.io's configuration
#: uses; the one list of them (the connector keys its serializer classes by these names).
COMPONENT_SERIALIZERS = ("cbor", "msgpack", "json", "ubjson")
#: What a WebSocket transport offers when its configuration names none: ubjson only when
#: asked for, as it needs an optional package (py-ubjson).
DEFAULT_SERIALIZERS = tuple(name for name in COMPONENT_SERIALIZERS if name != "ubjson")


@dataclass(frozen=True)
class EndpointSpec:
    """Where a component's transport connects: a TCP host/port (maybe TLS), a unix socket, a
    Twisted client endpoint string, or a host reached through Tor's SOCKS port."""

    kind: str
    host: str = ""
    port: int = 0
    path: str = ""
    timeout: float = 10.0
    tls: dict[str, Any] | None = None
    version: int = 4
    client_string: str = ""
    socks_port: int = 0

    def describe(self) -> str:
        if self.kind == "unix":
            return f"unix socket {self.path}"
        if self.kind == "twisted":
            return f"twisted endpoint {self.client_string}"
        if self.kind == "tor":
            return f"tor {self.host}:{self.port} (SOCKS port {self.socks_port})"
        scheme = "tls" if self.tls is not None else "tcp"
        return f"{scheme} {self.host}:{self.port}"


@dataclass(frozen=True)
class TransportSpec:
    """A component's client transport: WebSocket (with URL) or RawSocket, over an endpoint.

    ``options`` are autobahn's protocol option names (Crossbar.io's names translated) for
    WebSocket, ``{"max_message_size": n}`` at most for RawSocket.
    """

    kind: str
    endpoint: EndpointSpec
    url: str = ""
    serializers: tuple[str, ...] = DEFAULT_SERIALIZERS
    options: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        if self.kind == "websocket":
            return f"websocket {self.url} ({self.endpoint.describe()})"
        return f"rawsocket {self.serializers[0]} over {self.endpoint.describe()}"

    def address(self) -> dict[str, Any]:
        """Where it connects, as ``cannot_connect`` names it: the same keys for every
        transport, None where one does not apply."""
        endpoint = self.endpoint
        return {"transport": self.kind, "host": endpoint.host or None,
                "port": endpoint.port or None, "path": endpoint.path or None,
                "url": self.url or None}


# Crossbar.io's WebSocket option names that act on a connecting transport, and autobahn's
# names for them (crossbar.router.protocol.set_websocket_options, client branch)
_WEBSOCKET_OPTION_NAMES = {
    "validate_utf8": "utf8validateIncoming",
    "apply_mask": "applyMask",
    "max_frame_size": "maxFramePayloadSize",
    "max_message_size": "maxMessagePayloadSize",
    "auto_fragment_size": "autoFragmentSize",
    "fail_by_drop": "failByDrop",
    "echo_close_codereason": "echoCloseCodeReason",
    "tcp_nodelay": "tcpNoDelay",
    "auto_ping_size": "autoPingSize",
    "auto_ping_restart_on_any_traffic": "autoPingRestartOnAnyTraffic",
}
# the same, for options Crossbar.io writes in milliseconds and autobahn takes in seconds
_WEBSOCKET_MILLISECOND_OPTIONS = {
    "open_handshake_timeout": "openHandshakeTimeout",
    "close_handshake_timeout": "closeHandshakeTimeout",
    "auto_ping_interval": "autoPingInterval",
    "auto_ping_timeout": "autoPingTimeout",
}
# accepted by Crossbar.io's checker, used by it on listening transports only
_WEBSOCKET_SERVER_OPTIONS = frozenset({
    "allowed_origins", "allow_null_origin", "external_port", "enable_hybi10", "enable_rfc6455",
    "enable_webstatus", "mask_server_frames", "require_masked_client_frames",
    "enable_flash_policy", "flash_policy", "compression", "require_websocket_subprotocol",
    "show_server_version",
})


def parse_transport(transport: dict[str, Any], warnings: list[ConfigWarning]) -> TransportSpec:
    """A schema-valid transport item as a typed value; what has no effect goes to ``warnings``
    (paths relative to the component, which is where a person reads them)."""
    if transport["type"] == "websocket":
        endpoint = transport.get("endpoint") or _endpoint_from_url(transport["url"])
        serializers = _websocket_serializers(transport.get("serializers"), warnings)
        options = _websocket_options(transport.get("options", {}), warnings)
    else:
        endpoint = _rawsocket_endpoint(transport, warnings)
        serializers = (transport.get("serializer", "cbor"),)
        options = dict(transport.get("options", {}))
        if "debug" in transport:
            warnings.append(ConfigWarning(("transport", "debug"), (
                "has no effect: Crossbar.io's container ignores it too; run the worker with "
                "--loglevel trace to see the RawSocket traffic")))
    return TransportSpec(
        kind=transport["type"],
        endpoint=_parse_endpoint(endpoint, warnings),
        url=transport.get("url", ""),
        serializers=serializers,
        options=options,
    )


def _websocket_serializers(
    names: list[str] | None, warnings: list[ConfigWarning]
) -> tuple[str, ...]:
    """The serializers offered, in the order given; names not known here are left out.

    Crossbar.io's checker takes any list here (and its container then offers every
    serializer it has), so an unknown name is a warning, not an error.
    """
    if names is None:
        return DEFAULT_SERIALIZERS
    known = tuple(dict.fromkeys(name for name in names if name in COMPONENT_SERIALIZERS))
    offered = ", ".join(COMPONENT_SERIALIZERS)
    if not known:
        warnings.append(ConfigWarning(("transport", "serializers"), (
            f"none of {names!r} is a WAMP serializer offered here ({offered}): the default "
            f"{', '.join(DEFAULT_SERIALIZERS)} are offered")))
        return DEFAULT_SERIALIZERS
    for index, name in enumerate(names):
        if name not in COMPONENT_SERIALIZERS:
            warnings.append(ConfigWarning(("transport", "serializers", index), (
                f"{name!r} is not a WAMP serializer offered here ({offered}): left out")))
    return known


def _websocket_options(
    options: dict[str, Any], warnings: list[ConfigWarning]
) -> dict[str, Any]:
    """autobahn's protocol options from Crossbar.io's names (or autobahn's, passed through)."""
    translated: dict[str, Any] = {}
    for key, value in options.items():
        if key in _WEBSOCKET_OPTION_NAMES:
            translated[_WEBSOCKET_OPTION_NAMES[key]] = value
        elif key in _WEBSOCKET_MILLISECOND_OPTIONS:
            translated[_WEBSOCKET_MILLISECOND_OPTIONS[key]] = value / 1000.0
        elif key in _WEBSOCKET_SERVER_OPTIONS:
            warnings.append(ConfigWarning(("transport", "options", key), (
                "is a WebSocket server option (Crossbar.io applies it to listening transports "
                "only): it has no effect on a component's connecting transport")))
        else:
            translated[key] = value
    return translated


def _endpoint_from_url(url: str) -> dict[str, Any]:
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "wss" else 80)
    except ValueError as error:
        raise InvalidConfiguration(
            f"transport.url: {error}", key="transport.url"
        ) from None
    endpoint: dict[str, Any] = {"type": "tcp", "host": parts.hostname or "", "port": port}
    if parts.scheme == "wss":
        endpoint["tls"] = {"hostname": parts.hostname or ""}
    return endpoint


def _rawsocket_endpoint(transport: dict[str, Any], warnings: list[ConfigWarning]) -> dict[str, Any]:
    """The endpoint, else the one the ``url`` names (``rs://``, ``rss://``, ``rs://unix:/path``).

    With both, the endpoint decides, as in Crossbar.io (whose container only checks the
    URL's form); a URL naming another address is then said to have no effect.
    """
    url = transport.get("url") or ""
    endpoint: dict[str, Any] | None = transport.get("endpoint")
    if endpoint is None:
        return _endpoint_from_rawsocket_url(url)
    if url and _address(_endpoint_from_rawsocket_url(url)) != _address(endpoint):
        warnings.append(ConfigWarning(("transport", "url"), (
            f"has no effect: {url!r} names another address than transport.endpoint, which is "
            "where the component connects (as in Crossbar.io)")))
    return endpoint


def _endpoint_from_rawsocket_url(url: str) -> dict[str, Any]:
    parts = urlsplit(url)
    secure = parts.scheme == "rss"
    if parts.hostname == "unix":
        return {"type": "unix", "path": (parts.netloc + parts.path).split(":", 1)[1]}
    try:
        port = parts.port or (443 if secure else 80)
    except ValueError as error:
        raise InvalidConfiguration(
            f"transport.url: {error}", key="transport.url"
        ) from None
    endpoint: dict[str, Any] = {"type": "tcp", "host": parts.hostname or "", "port": port}
    if secure:
        endpoint["tls"] = {"hostname": parts.hostname or ""}
    return endpoint


def _address(endpoint: Mapping[str, Any]) -> tuple[Any, ...]:
    """What decides where an endpoint leads: type, host and port or path, TLS or not."""
    return (endpoint["type"], endpoint.get("host"), endpoint.get("port"), endpoint.get("path"),
            "tls" in endpoint)


def _parse_endpoint(endpoint: dict[str, Any], warnings: list[ConfigWarning]) -> EndpointSpec:
    timeout = float(endpoint.get("timeout", 10.0))
    kind = endpoint["type"]
    if kind == "unix":
        return EndpointSpec(kind="unix", path=endpoint["path"], timeout=timeout)
    if kind == "twisted":
        if "timeout" in endpoint:
            warnings.append(ConfigWarning(("transport", "endpoint", "timeout"), (
                "has no effect on a 'twisted' endpoint (in Crossbar.io neither): write "
                "timeout=N into client_string")))
        return EndpointSpec(kind="twisted", client_string=endpoint["client_string"])
    if kind == "tor":
        return EndpointSpec(kind="tor", host=endpoint["host"], port=endpoint["port"],
                            socks_port=endpoint["tor_socks_port"])
    if "tls" in endpoint:
        _tls_warnings(endpoint["tls"], warnings)
    return EndpointSpec(
        kind="tcp",
        host=endpoint["host"],
        port=endpoint["port"],
        timeout=timeout,
        tls=endpoint.get("tls"),
        version=endpoint.get("version", 4),
    )


def _tls_warnings(tls: dict[str, Any], warnings: list[ConfigWarning]) -> None:
    """A client certificate needs both files; one of them alone presents none."""
    for given, missing in (("certificate", "key"), ("key", "certificate")):
        if given in tls and missing not in tls:
            warnings.append(ConfigWarning(("transport", "endpoint", "tls", given), (
                f"has no effect without tls.{missing}: no client certificate is presented")))


# --- values the schema lets through that no connection could use ----------------------------


def transport_problems(transport: Mapping[str, Any]) -> list[Finding]:
    """What is wrong with a schema-valid transport that the schema cannot say: a URL without
    a host or with port 0, a host that holds a control character, a unix socket path the
    kernel cannot take; paths relative to the component. TLS files: :mod:`container.tls`."""
    at: JsonPath = ("transport",)
    endpoint = transport.get("endpoint")
    url = transport.get("url") or ""
    problems: list[Finding] = []
    if transport["type"] == "websocket":  # autobahn reads the URL even beside an endpoint
        problems += _url_problems(url, (*at, "url"), fragment=False)
    elif endpoint is None:
        problems += _url_problems(url, (*at, "url"), fragment=True)
    if endpoint is not None:
        problems += _endpoint_problems(endpoint, (*at, "endpoint"))
    return problems


def _url_problems(url: str, at: JsonPath, fragment: bool) -> list[Finding]:
    control = _control_character(url)
    if control:
        return [Finding(at, f"{shown_text(url)} holds {control}")]
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        return [Finding(at, f"{shown_text(url)}: {error}")]
    if parts.hostname == "unix" and parts.scheme in ("rs", "rss"):
        return _unix_path_problems(_endpoint_from_rawsocket_url(url)["path"], at)
    if not parts.hostname:
        return [Finding(at, f"{shown_text(url)} names no host")]
    if port == 0:
        return [Finding(at, f"{shown_text(url)}: port 0 is not a port to connect to (1 to 65535)")]
    if parts.fragment and not fragment:
        return [Finding(at, f"{shown_text(url)}: a WebSocket URL has no fragment ('#...')")]
    return _host_problems(parts.hostname, at)


def _endpoint_problems(endpoint: Mapping[str, Any], at: JsonPath) -> list[Finding]:
    if endpoint["type"] == "unix":
        return _unix_path_problems(endpoint["path"], (*at, "path"))
    if endpoint["type"] != "tcp":
        return []
    host = endpoint["host"]
    problems = _host_problems(host, (*at, "host"))
    if not problems and endpoint.get("version") == 6 and _ip_version(host) == 4:
        problems.append(Finding((*at, "host"), (
            f"{shown_text(host)} is an IPv4 address, and the endpoint has version 6 (IPv6): "
            "leave version out, or give an IPv6 address or a host name")))
    return problems


def _host_problems(host: str, at: JsonPath) -> list[Finding]:
    bad = next((char for char in host if char.isspace() or _is_control(char)), None)
    if bad is None:
        return []
    what = "a control character" if _is_control(bad) else "whitespace"
    return [Finding(at, f"{shown_text(host)} is not a host name: it holds {what} "
                        f"(U+{ord(bad):04X})")]


def _unix_path_problems(path: str, at: JsonPath) -> list[Finding]:
    if "\x00" in path[1:]:
        return [Finding(at, f"{shown_text(path)} holds a NUL character (only an abstract socket "
                            "name may start with one)")]
    try:
        size = len(os.fsencode(path))
    except UnicodeEncodeError as error:
        return [Finding(at, f"{shown_text(path)} is not a file name this system can encode: "
                            f"{error.reason}")]
    if size > UNIX_PATH_MAX:
        return [Finding(at, f"{shown_text(path)} is too long for a unix socket "
                            f"({size} > {UNIX_PATH_MAX} bytes)")]
    return []


def _ip_version(host: str) -> int | None:
    try:
        return ipaddress.ip_address(host).version
    except ValueError:
        return None


def _control_character(text: str) -> str:
    bad = next((char for char in text if _is_control(char)), None)
    return "" if bad is None else f"a control character (U+{ord(bad):04X})"


def _is_control(char: str) -> bool:
    return unicodedata.category(char) == "Cc"


def shown_text(text: str, limit: int = 120) -> str:
    """A value quoted, what is not printable escaped (a message is one line), cut if long."""
    body = "".join(json.dumps(char, ensure_ascii=not char.isprintable())[1:-1]
                   for char in text[:limit])
    return f"'{body}...'" if len(text) > limit else f"'{body}'"

"""A component's client transport: Crossbar.io's JSON for it, as typed values.

A WebSocket or RawSocket transport over a TCP (maybe TLS), unix, Twisted-string or Tor
endpoint. Crossbar.io's option names are translated to autobahn's here, and every key that
Crossbar.io accepts but that has no effect on a connecting transport becomes a
:class:`~container.validation.ConfigWarning` rather than an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from container.errors import InvalidConfiguration
from container.validation import ConfigWarning

__all__ = [
    "COMPONENT_SERIALIZERS",
    "DEFAULT_SERIALIZERS",
    "EndpointSpec",
    "TransportSpec",
    "parse_transport",
]

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
            f"invalid component configuration: transport.url: {error}", key="transport.url"
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
            f"invalid component configuration: transport.url: {error}", key="transport.url"
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


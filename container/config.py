"""Component configurations and container options: JSON (Crossbar.io's format) to typed values.

Structure is checked by the JSON Schema shipped in ``container/schema/``; the few rules a
schema cannot say (policy combinations that can never trigger) are checked here. Every
problem names the key path it is about, e.g. ``transport.endpoint.port``.

Every key Crossbar.io's checker accepts for a container worker is accepted. What has no
effect here is not an error but a :class:`ConfigWarning` that names the key and says why
(often: it has none in Crossbar.io's container either); parsing collects them
(``ContainerOptions.warnings``, ``ComponentSpec.warnings``) so the worker can log them and a
check can show them. docs/configuration.md has the table, key by key.
"""

from __future__ import annotations

import copy
import difflib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

import txaio
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource

from container.errors import InvalidConfiguration
from container.policy import (
    Backoff,
    RestartLimit,
    RestartPolicy,
    ShutdownPolicy,
)
from container.validation import format_key_path

COMPONENT_SCHEMA_ID = "https://wamp-container.invalid/schema/component.schema.json"

KeyPath = tuple[str | int, ...]


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong in a configuration, at a key path relative to the checked object."""

    path: KeyPath
    message: str

    def __str__(self) -> str:
        return f"{format_key_path(self.path)}: {self.message}"


@dataclass(frozen=True)
class ConfigWarning(ConfigProblem):
    """A key that is accepted (Crossbar.io accepts it) but has no effect here, and why."""

    def under(self, *prefix: str | int) -> ConfigWarning:
        """The same warning at a path relative to an enclosing object."""
        return ConfigWarning((*prefix, *self.path), self.message)


@cache
def schema_registry() -> Registry:
    """The registry holding every schema shipped in the package, by ``$id``."""
    registry: Registry = Registry()
    for entry in resources.files("container.schema").iterdir():
        if entry.name.endswith(".schema.json"):
            contents = json.loads(entry.read_text(encoding="utf-8"))
            registry = registry.with_resource(contents["$id"], Resource.from_contents(contents))
    return registry


@cache
def _validator(definition: str) -> Draft202012Validator:
    schema = {"$ref": f"{COMPONENT_SCHEMA_ID}#/$defs/{definition}"}
    return Draft202012Validator(schema, registry=schema_registry())


def schema_problems(instance: Any, definition: str) -> list[ConfigProblem]:
    """Every schema violation of ``instance`` against ``component.schema.json#/$defs/NAME``."""
    errors = sorted(_validator(definition).iter_errors(instance), key=_error_sort_key)
    return [ConfigProblem(tuple(_leaf(e).absolute_path), _describe(_leaf(e))) for e in errors]


def _error_sort_key(error: ValidationError) -> tuple[int, str]:
    return (len(error.absolute_path), error.message)


def _leaf(error: ValidationError) -> ValidationError:
    """The most specific sub-error of an ``if/then`` or ``oneOf`` failure."""
    while error.context and not _needs_one_of(error):
        error = max(error.context, key=lambda e: len(e.absolute_path))
    return error


def _needs_one_of(error: ValidationError) -> bool:
    """``anyOf`` alternatives that each require a key: the object needs one of them."""
    context = error.context or []
    return error.validator == "anyOf" and all(sub.validator == "required" for sub in context)


def _describe(error: ValidationError) -> str:
    if error.validator == "propertyNames":
        return f"unknown key {error.instance!r}"
    if error.validator == "additionalProperties":
        return _unknown_keys(error)
    if _needs_one_of(error):
        keys = [key for sub in error.context or [] for key in sub.validator_value]
        return f"needs one of the keys {', '.join(repr(key) for key in dict.fromkeys(keys))}"
    if error.validator == "enum":
        allowed = ", ".join(repr(v) for v in error.validator_value)
        return f"{error.instance!r} is not one of {allowed}"
    return error.message


def _unknown_keys(error: ValidationError) -> str:
    """``unknown key 'x' (did you mean 'y'?)`` for the keys neither named nor matched."""
    named = list(error.schema.get("properties", {}))
    patterns = list(error.schema.get("patternProperties", {}))
    unknown = [key for key in error.instance
               if key not in named and not any(re.search(p, key) for p in patterns)]
    parts = []
    for key in unknown:
        close = difflib.get_close_matches(key, named, n=1)
        parts.append(f"{key!r} (did you mean {close[0]!r}?)" if close else repr(key))
    return f"unknown key {', '.join(parts)}"


def _raise_first(problems: list[ConfigProblem], what: str) -> None:
    if problems:
        first = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise InvalidConfiguration(
            f"invalid {what}: {first}{more}",
            key=format_key_path(first.path),
            problems=[str(p) for p in problems],
        )


# --- component configuration -------------------------------------------------------------


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


DEFAULT_SERIALIZERS = ("cbor", "msgpack", "json")
COMPONENT_SERIALIZERS = ("cbor", "msgpack", "json", "ubjson")


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


@dataclass(frozen=True)
class ComponentSpec:
    """A validated component configuration; ``raw`` is the JSON it came from, unchanged."""

    kind: str
    realm: str
    transport: TransportSpec
    raw: dict[str, Any]
    classname: str = ""
    callbacks: dict[str, str] = field(default_factory=dict)
    extra: Any = None
    restart: RestartPolicy | None = None
    auth: dict[str, Any] | None = None
    role: str | None = None
    ready_grace: float | None = None  # None: the container's ready_grace
    warnings: tuple[ConfigWarning, ...] = ()

    @property
    def modules(self) -> tuple[str, ...]:
        """The user modules this component's code comes from."""
        names = [self.classname] if self.kind == "class" else list(self.callbacks.values())
        return tuple(dict.fromkeys(name.rsplit(".", 1)[0] for name in names))


_SPECS: dict[str, ComponentSpec] = {}
_SPECS_MAX = 512


def parse_component(config: Any) -> ComponentSpec:
    """Validate a component configuration, raising ``InvalidConfiguration`` naming the key.

    Components started from one configuration share one parsed spec and one copy of the
    configuration (``raw``, read-only); each gets its own deep copy of ``extra``, which its
    session may change. The first parse of a configuration logs its warnings.
    """
    key = _spec_key(config)
    spec = _SPECS.get(key) if key is not None else None
    if spec is None:
        _raise_first(component_problems(config), "component configuration")
        spec = _build_spec(config if key is None else copy.deepcopy(config))
        _log_warnings_once(spec.warnings, f"component {config.get('id') or '(no id)'}")
        if key is None:
            return spec
        if len(_SPECS) >= _SPECS_MAX:
            _SPECS.clear()
        _SPECS[key] = spec
    return spec if spec.extra is None else replace(spec, extra=copy.deepcopy(spec.extra))


def component_warnings(config: Any) -> list[ConfigWarning]:
    """What a valid component configuration asks for that has no effect here (none if invalid:
    its problems are what to show)."""
    if component_problems(config):
        return []
    return list(_build_spec(config).warnings)


_WARNED: set[str] = set()
_WARNED_MAX = 1024


def _log_warnings_once(warnings: tuple[ConfigWarning, ...], what: str) -> None:
    """Log each warning once per process: a fleet started from one configuration says it once."""
    for warning in warnings:
        line = f"{what}: {warning}"
        if line in _WARNED:
            continue
        if len(_WARNED) >= _WARNED_MAX:
            _WARNED.clear()
        _WARNED.add(line)
        _logger().warn("{line}", line=line)


@cache
def _logger() -> Any:
    """Made when first needed: the node imports this module without choosing a txaio framework
    (only the worker logs component warnings, and it has chosen Twisted by then)."""
    return txaio.make_logger()


def _spec_key(config: Any) -> str | None:
    try:
        return json.dumps(config, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError):
        return None


def _build_spec(config: dict[str, Any]) -> ComponentSpec:
    warnings: list[ConfigWarning] = []
    transport = _parse_transport(config["transport"], warnings)
    auth = _parse_auth(config, warnings)
    return ComponentSpec(
        kind=config["type"],
        realm=config["realm"],
        transport=transport,
        raw=config,
        classname=config.get("classname", ""),
        callbacks=dict(config.get("callbacks", {})),
        extra=config.get("extra"),
        restart=RestartPolicy.parse(config["restart"]) if "restart" in config else None,
        auth=auth,
        role=config.get("role"),
        ready_grace=float(config["ready_grace"]) if "ready_grace" in config else None,
        warnings=tuple(warnings),
    )


_COMPONENT_VERDICTS: dict[str, list[ConfigProblem]] = {}
_COMPONENT_VERDICTS_MAX = 512


def component_problems(config: Any) -> list[ConfigProblem]:
    """``schema_problems(config, "component")``, remembered per distinct configuration.

    Fleets start many components from one configuration, and schema validation was a fifth
    of the CPU a start costs; ``extra`` (any JSON at all, per the schema) is left out of the
    key, so components that differ only in their ``extra`` share one verdict too.
    """
    key = _verdict_key(config)
    if key is None:
        return schema_problems(config, "component")
    verdict = _COMPONENT_VERDICTS.get(key)
    if verdict is None:
        verdict = schema_problems(config, "component")
        if len(_COMPONENT_VERDICTS) >= _COMPONENT_VERDICTS_MAX:
            _COMPONENT_VERDICTS.clear()
        _COMPONENT_VERDICTS[key] = verdict
    return verdict


def _verdict_key(config: Any) -> str | None:
    if not isinstance(config, dict):
        return None
    shape = {k: v for k, v in config.items() if k != "extra"}
    try:
        return json.dumps(shape, sort_keys=True, allow_nan=False) + ("+extra" if "extra" in
                                                                     config else "")
    except (TypeError, ValueError):
        return None  # not plain JSON (bytes from CBOR, NaN): validate it every time


# --- transports and endpoints --------------------------------------------------------------

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


def _parse_transport(transport: dict[str, Any], warnings: list[ConfigWarning]) -> TransportSpec:
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
    endpoint = transport.get("endpoint")
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


# --- authentication ------------------------------------------------------------------------

SUPPORTED_AUTHMETHODS = ("anonymous", "ticket", "wampcra")


def _parse_auth(config: dict[str, Any], warnings: list[ConfigWarning]) -> dict[str, Any] | None:
    """The authentication methods a component joins with.

    A class component's ``auth`` is ours and was checked strictly. A function component's is
    Crossbar.io's: required there, any object, and never used; here the methods we support
    are used and everything else is left out with a warning.
    """
    auth = config.get("auth")
    if auth is None or config["type"] == "class":
        return auth
    usable = {}
    for method, settings in auth.items():
        problem = _auth_method_problem(method, settings)
        if problem is None:
            usable[method] = settings
        else:
            warnings.append(ConfigWarning(("auth", method), problem))
    return usable or None


def _auth_method_problem(method: str, settings: Any) -> str | None:
    ignored = "Crossbar.io ignores a function component's auth altogether"
    if method not in SUPPORTED_AUTHMETHODS:
        return (f"authentication method {method!r} is not supported for components here "
                f"({', '.join(SUPPORTED_AUTHMETHODS)} are): left out; {ignored}")
    problems = schema_problems({method: settings}, "auth")
    if problems:
        return f"left out, as {problems[0]}; {ignored}"
    return None


# --- container options ---------------------------------------------------------------------


@dataclass(frozen=True)
class WatchOptions:
    """Development mode: restart components whose source files change."""

    enabled: bool = False
    interval: float = 1.0
    debounce: float = 0.5


@dataclass(frozen=True)
class ContainerOptions:
    """A container worker's ``options`` (Crossbar.io's names plus ours), typed."""

    restart: RestartPolicy = RestartPolicy.NEVER
    shutdown: ShutdownPolicy = ShutdownPolicy.MANUAL
    backoff: Backoff = field(default_factory=Backoff)
    restart_limit: RestartLimit | None = None
    stop_timeout: float = 5.0
    start_timeout: float = 30.0
    ready_grace: float = 1.0
    expose_shared: bool = False
    expose_controller: bool = False
    pythonpath: tuple[str, ...] = ()
    env: dict[str, Any] = field(default_factory=dict)
    title: str = ""
    python: str = ""
    cpu_affinity: tuple[int, ...] | None = None
    reactor: dict[str, str] = field(default_factory=dict)
    watch: WatchOptions = field(default_factory=WatchOptions)
    raw: dict[str, Any] = field(default_factory=dict)
    warnings: tuple[ConfigWarning, ...] = ()

    def as_json(self) -> dict[str, Any]:
        """The effective policies, for ``get_status``."""
        return {
            "restart": self.restart.value,
            "shutdown": self.shutdown.value,
            "restart_backoff": self.backoff.as_json(),
            "restart_limit": self.restart_limit.as_json() if self.restart_limit else None,
            "stop_timeout": self.stop_timeout,
            "start_timeout": self.start_timeout,
            "ready_grace": self.ready_grace,
            "watch": self.watch.enabled,
        }


def container_options_problems(options: Any) -> list[ConfigProblem]:
    """Every problem with a container ``options`` object: schema, then policy combinations."""
    problems = schema_problems(options, "container_options")
    if problems:
        return problems
    return _policy_combination_problems(options)


def _policy_combination_problems(options: dict[str, Any]) -> list[ConfigProblem]:
    """Refuse shutdown modes that the restart policy makes impossible to trigger.

    Without a restart limit, ``restart-always`` restarts every component that ends, so no
    component ever stops for good; ``restart-failed`` restarts every failed one.
    """
    if "restart_limit" in options:
        return []
    restart = RestartPolicy.parse(options.get("restart", RestartPolicy.NEVER.value))
    shutdown = ShutdownPolicy(options.get("shutdown", ShutdownPolicy.MANUAL.value))
    if shutdown is ShutdownPolicy.MANUAL or restart is RestartPolicy.NEVER:
        return []
    if restart is RestartPolicy.ALWAYS or shutdown is ShutdownPolicy.ON_ANY_FAILED:
        return [
            ConfigProblem(
                ("shutdown",),
                f"'{shutdown.value}' can never trigger with restart '{restart.value}' and no "
                "restart_limit (every such component is restarted); set restart_limit or "
                "another restart or shutdown mode",
            )
        ]
    return []


def parse_container_options(options: Any) -> ContainerOptions:
    """Validate container worker options, raising ``InvalidConfiguration`` naming the key."""
    if options is None:
        options = {}
    _raise_first(container_options_problems(options), "container options")
    limit = options.get("restart_limit")
    watch = options.get("watch", {})
    return ContainerOptions(
        restart=RestartPolicy.parse(options.get("restart", RestartPolicy.NEVER.value)),
        shutdown=ShutdownPolicy(options.get("shutdown", ShutdownPolicy.MANUAL.value)),
        backoff=Backoff(**options.get("restart_backoff", {})),
        restart_limit=RestartLimit(limit["max_restarts"], limit["period"]) if limit else None,
        stop_timeout=float(options.get("stop_timeout", 5.0)),
        start_timeout=float(options.get("start_timeout", 30.0)),
        ready_grace=float(options.get("ready_grace", 1.0)),
        expose_shared=options.get("expose_shared", False),
        expose_controller=options.get("expose_controller", False),
        pythonpath=tuple(options.get("pythonpath", ())),
        env=dict(options.get("env", {})),
        title=options.get("title", ""),
        python=options.get("python", ""),
        cpu_affinity=tuple(options["cpu_affinity"]) if "cpu_affinity" in options else None,
        reactor=dict(options.get("reactor", {})),
        watch=WatchOptions(
            enabled=watch.get("enabled", bool(watch)),
            interval=float(watch.get("interval", 1.0)),
            debounce=float(watch.get("debounce", 0.5)),
        ),
        raw=options,
        warnings=tuple(container_options_warnings(options)),
    )


def container_options_warnings(options: dict[str, Any]) -> list[ConfigWarning]:
    """What valid container options ask for that has no effect here, key by key.

    ``disabled`` and ``python`` act in the node (it does not start the worker / starts it
    with that interpreter), the others in the worker; what depends on the machine the
    worker runs on (CPUs, reactor) is checked by the worker itself when it starts.
    """
    if "extra" not in options:
        return []
    return [ConfigWarning(("extra",), (
        "has no effect here: Crossbar.io hands options.extra to its own worker controller "
        "(never to components), and a wamp-container worker has no such controller"))]


def container_worker_warnings(worker: dict[str, Any]) -> list[ConfigWarning]:
    """Every warning for a valid container worker item of a node configuration: its own keys
    (``manhole``, ``connections``), its options, its components; paths relative to the item."""
    warnings = [ConfigWarning((key,), message) for key, message in _WORKER_KEY_WARNINGS.items()
                if key in worker]
    options = worker.get("options", {})
    if not container_options_problems(options):
        warnings += [warning.under("options") for warning in container_options_warnings(options)]
    for index, component in enumerate(worker.get("components", [])):
        # the item is valid already: build the spec without validating each component again
        warnings += [w.under("components", index) for w in _build_spec(component).warnings]
    return warnings


_WORKER_KEY_WARNINGS = {
    "manhole": (
        "not provided: wamp-container has no manhole (Crossbar.io's SSH debugging shell into "
        "the worker process); `container ctl status` and py-spy show a worker's state"),
    "connections": (
        "has no effect: Crossbar.io uses 'connections' only on proxy workers (their backend "
        "connections) and ignores it on a container worker too"),
}

_ENV_REFERENCE = re.compile(r"^\$\{(.+)\}$")


def worker_disabled(options: Mapping[str, Any], environ: Mapping[str, str] = os.environ) -> bool:
    """Whether Crossbar.io would skip a worker whose options say ``disabled``.

    A string ``${VAR}`` is read from the environment (unset or empty: not disabled); any
    other non-empty string counts as true, as in Crossbar.io's ``maybe_from_env``.
    """
    disabled = options.get("disabled", False)
    if not isinstance(disabled, str):
        return bool(disabled)
    reference = _ENV_REFERENCE.match(disabled)
    if reference is not None:
        return bool(environ.get(reference.group(1)))
    return bool(disabled)

"""Component configurations and container options: JSON (Crossbar.io's format) to typed values.

Structure is checked by the JSON Schema shipped in ``container/schema/``; the few rules a
schema cannot say (policy combinations that can never trigger) are checked here. Every
problem names the key path it is about, e.g. ``transport.endpoint.port``.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

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
    while error.context:
        error = max(error.context, key=lambda e: len(e.absolute_path))
    return error


def _describe(error: ValidationError) -> str:
    if error.validator == "propertyNames":
        return f"unknown key {error.instance!r}"
    if error.validator == "additionalProperties":
        return error.message.replace("Additional properties are not allowed", "unknown key")
    if error.validator == "enum":
        allowed = ", ".join(repr(v) for v in error.validator_value)
        return f"{error.instance!r} is not one of {allowed}"
    return error.message


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
    """Where a component's transport connects: a TCP host/port (maybe TLS) or a unix socket."""

    kind: str
    host: str = ""
    port: int = 0
    path: str = ""
    timeout: float = 10.0
    tls: dict[str, Any] | None = None
    version: int = 4

    def describe(self) -> str:
        if self.kind == "unix":
            return f"unix socket {self.path}"
        scheme = "tls" if self.tls is not None else "tcp"
        return f"{scheme} {self.host}:{self.port}"


@dataclass(frozen=True)
class TransportSpec:
    """A component's client transport: WebSocket (with URL) or RawSocket, over an endpoint."""

    kind: str
    endpoint: EndpointSpec
    url: str = ""
    serializers: tuple[str, ...] = ("cbor", "msgpack", "json")
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
    session may change.
    """
    key = _spec_key(config)
    spec = _SPECS.get(key) if key is not None else None
    if spec is None:
        _raise_first(component_problems(config), "component configuration")
        if key is None:
            return _build_spec(config)
        spec = _build_spec(copy.deepcopy(config))
        if len(_SPECS) >= _SPECS_MAX:
            _SPECS.clear()
        _SPECS[key] = spec
    return spec if spec.extra is None else replace(spec, extra=copy.deepcopy(spec.extra))


def _spec_key(config: Any) -> str | None:
    try:
        return json.dumps(config, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError):
        return None


def _build_spec(config: dict[str, Any]) -> ComponentSpec:
    return ComponentSpec(
        kind=config["type"],
        realm=config["realm"],
        transport=_parse_transport(config["transport"]),
        raw=config,
        classname=config.get("classname", ""),
        callbacks=dict(config.get("callbacks", {})),
        extra=config.get("extra"),
        restart=RestartPolicy.parse(config["restart"]) if "restart" in config else None,
        auth=config.get("auth"),
        role=config.get("role"),
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


def _parse_transport(transport: dict[str, Any]) -> TransportSpec:
    if transport["type"] == "websocket":
        endpoint = transport.get("endpoint") or _endpoint_from_url(transport["url"])
        serializers = tuple(transport.get("serializers", ("cbor", "msgpack", "json")))
    else:
        endpoint = transport["endpoint"]
        serializers = (transport.get("serializer", "cbor"),)
    return TransportSpec(
        kind=transport["type"],
        endpoint=_parse_endpoint(endpoint),
        url=transport.get("url", ""),
        serializers=serializers,
        options=dict(transport.get("options", {})),
    )


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


def _parse_endpoint(endpoint: dict[str, Any]) -> EndpointSpec:
    timeout = float(endpoint.get("timeout", 10.0))
    if endpoint["type"] == "unix":
        return EndpointSpec(kind="unix", path=endpoint["path"], timeout=timeout)
    return EndpointSpec(
        kind="tcp",
        host=endpoint["host"],
        port=endpoint["port"],
        timeout=timeout,
        tls=endpoint.get("tls"),
        version=endpoint.get("version", 4),
    )


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
    expose_shared: bool = False
    expose_controller: bool = False
    pythonpath: tuple[str, ...] = ()
    env: dict[str, Any] = field(default_factory=dict)
    title: str = ""
    python: str = ""
    cpu_affinity: tuple[int, ...] = ()
    watch: WatchOptions = field(default_factory=WatchOptions)
    raw: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The effective policies, for ``get_status``."""
        return {
            "restart": self.restart.value,
            "shutdown": self.shutdown.value,
            "restart_backoff": self.backoff.as_json(),
            "restart_limit": self.restart_limit.as_json() if self.restart_limit else None,
            "stop_timeout": self.stop_timeout,
            "start_timeout": self.start_timeout,
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
        expose_shared=options.get("expose_shared", False),
        expose_controller=options.get("expose_controller", False),
        pythonpath=tuple(options.get("pythonpath", ())),
        env=dict(options.get("env", {})),
        title=options.get("title", ""),
        python=options.get("python", ""),
        cpu_affinity=tuple(options.get("cpu_affinity", ())),
        watch=WatchOptions(
            enabled=watch.get("enabled", bool(watch)),
            interval=float(watch.get("interval", 1.0)),
            debounce=float(watch.get("debounce", 0.5)),
        ),
        raw=options,
    )

"""A component configuration (Crossbar.io's format): checked, then as a typed value.

Structure is checked by ``container/schema/component.schema.json``. Every key Crossbar.io's
checker accepts for a container component is accepted; what has no effect here is not an
error but a :class:`~container.validation.ConfigWarning` that names the key and says why
(often: it has none in Crossbar.io's container either). docs/configuration.md has the
table, key by key.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Any

import txaio

from container.policy import RestartPolicy
from container.transports import TransportSpec, parse_transport
from container.validation import ConfigWarning, Finding, raise_first, schema_problems

__all__ = [
    "SUPPORTED_AUTHMETHODS",
    "ComponentSpec",
    "build_spec",
    "component_problems",
    "component_warnings",
    "parse_component",
]


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
        raise_first(component_problems(config), "component configuration")
        spec = build_spec(config if key is None else copy.deepcopy(config))
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
    return list(build_spec(config).warnings)


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


def build_spec(config: dict[str, Any]) -> ComponentSpec:
    """The spec of a configuration :func:`component_problems` found nothing wrong with."""
    warnings: list[ConfigWarning] = []
    transport = parse_transport(config["transport"], warnings)
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


_COMPONENT_VERDICTS: dict[str, list[Finding]] = {}
_COMPONENT_VERDICTS_MAX = 512


def component_problems(config: Any) -> list[Finding]:
    """``schema_problems(config, "component")``, remembered per distinct configuration.

    Fleets start many components from one configuration, and schema validation is a large
    share of what a start costs (docs/benchmarks.md has the figure); ``extra`` (any JSON at
    all, per the schema) is left out of the key, so components that differ only in their
    ``extra`` share one verdict too.
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


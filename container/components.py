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
import math
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Any

import txaio

from container.policy import RestartPolicy
from container.tls import transport_tls_problems
from container.transports import TransportSpec, parse_transport, transport_problems
from container.validation import (
    ConfigWarning,
    Finding,
    JsonPath,
    raise_first,
    schema_problems,
    show_value,
    wrong_type,
)

__all__ = [
    "COMPONENT_ID_RULE",
    "SUPPORTED_AUTHMETHODS",
    "ComponentSpec",
    "build_spec",
    "component_id_problem",
    "component_problems",
    "component_value_problems",
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
        raise_first(component_problems(config))
    # files are read at every start: one created or mended since the last start counts
    raise_first(transport_tls_problems(config["transport"]))
    if spec is None:
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
    odd_keys = list(_keys_that_are_not_strings(config))
    if odd_keys:
        return odd_keys
    key = _verdict_key(config)
    if key is None:
        return schema_problems(config, "component") or _value_problems(config)
    verdict = _COMPONENT_VERDICTS.get(key)
    if verdict is None:
        verdict = schema_problems(config, "component") or _value_problems(config)
        if len(_COMPONENT_VERDICTS) >= _COMPONENT_VERDICTS_MAX:
            _COMPONENT_VERDICTS.clear()
        _COMPONENT_VERDICTS[key] = verdict
    return verdict


def component_value_problems(config: Any, base_dir: str | None = None) -> list[Finding]:
    """What a configuration the schema accepts holds that no start could use (none for one it
    refuses: its schema problems say what to fix first), TLS files included, relative file
    names read from ``base_dir``: ``container check`` reports these for a node file."""
    if schema_problems(config, "component"):
        return []
    return [*_value_problems(config), *transport_tls_problems(config["transport"], base_dir)]


def _value_problems(config: dict[str, Any]) -> list[Finding]:
    """What the schema lets through and the worker would trip over (the transport's
    addresses: :func:`~container.transports.transport_problems`)."""
    return [*_not_finite(config), *transport_problems(config["transport"])]


def _keys_that_are_not_strings(value: Any, path: JsonPath = ()) -> Iterator[Finding]:
    """CBOR and msgpack carry maps with integer (or other) keys, which no schema rule and no
    key path expects; ``extra`` is the component's own and may hold them."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                yield Finding(path, f"keys must be strings, got the key {show_value(key)}")
            elif path or key != "extra":
                yield from _keys_that_are_not_strings(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _keys_that_are_not_strings(item, (*path, index))


def _not_finite(value: Any, path: JsonPath = ()) -> Iterator[Finding]:
    """NaN and infinity (JSON's ``NaN``, ``Infinity``; CBOR's) pass every bound of a schema,
    and no timer can be set to them; ``extra`` and ``auth`` are the component's own."""
    if isinstance(value, float) and not math.isfinite(value):
        yield Finding(path, f"{show_value(value)} is not a finite number")
    elif isinstance(value, dict):
        for key, item in value.items():
            if path or key not in ("extra", "auth"):
                yield from _not_finite(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _not_finite(item, (*path, index))


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


# --- component ids -------------------------------------------------------------------------

COMPONENT_ID_MAX = 255
COMPONENT_ID_RULE = (
    "a component id is 1 to 255 characters, with no whitespace, no control characters and "
    "no '.' or '#' (it must be valid as one component of a WAMP URI)"
)


def component_id_problem(component_id: Any) -> str | None:
    """What is wrong with a component id, said with :data:`COMPONENT_ID_RULE`; None if nothing.

    The id names the component in URIs, events, log lines and ``container run``'s output: a
    newline in it would forge a line there, a '.' would make it two URI components. WAMP's
    loose URI rule for one component (no whitespace, '.' or '#'), with control characters
    and an upper length added. The API (every procedure that takes an id) and the node's
    configuration check use this one rule.
    """
    if not isinstance(component_id, str):
        why = wrong_type(["string"], component_id)
    elif not component_id:
        why = "must not be empty"
    elif len(component_id) > COMPONENT_ID_MAX:
        why = f"too long: {len(component_id)} characters"
    else:
        bad = next((char for char in component_id if _not_in_id(char)), None)
        if bad is None:
            return None
        why = f"invalid value {_shown_id(component_id)}: holds {_describe_char(bad)}"
    return f"{why}; {COMPONENT_ID_RULE}"


def _not_in_id(char: str) -> bool:
    return char in ".#" or char.isspace() or unicodedata.category(char) == "Cc"


def _describe_char(char: str) -> str:
    if char in ".#":
        return f"'{char}'"
    kind = "a control character" if unicodedata.category(char) == "Cc" else "whitespace"
    return f"{kind} (U+{ord(char):04X})"


def _shown_id(component_id: str, limit: int = 40) -> str:
    """The id quoted, what is not printable escaped (a newline shows as \\n, U+2028 as
    \\u2028: the message itself must not break a line), cut short if long."""
    body = "".join(json.dumps(char, ensure_ascii=not char.isprintable())[1:-1]
                   for char in component_id[:limit])
    return f'"{body}..."' if len(component_id) > limit else f'"{body}"'

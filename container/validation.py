"""What every configuration check shares: one way to write where in a document a problem is,
one registry of the schemas shipped in the package, and one wording of what a schema refuses
(where in the file a problem is, line and column, is :mod:`container.positions`).

A key path reads like the document: ``workers[1].options.restart``; a key that is not a plain
name is quoted (``paths["/"]``); the document itself is ``(root)``.

Three checks use this: the worker's (a component configuration, container options), the
node's (a whole node configuration file) and ``ctl``'s (a component file). They report the
same mistake in the same words, so a message learnt in one place is understood in the others.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from jsonschema.exceptions import (  # type: ignore[import-untyped]
    ValidationError,
    best_match,
)
from referencing import Registry, Resource

from container.errors import InvalidConfiguration

__all__ = [
    "COMPONENT_SCHEMA_ID",
    "NODE_SCHEMA_ID",
    "ConfigWarning",
    "Finding",
    "JsonPath",
    "KeyPath",
    "format_key_path",
    "load_schema",
    "raise_first",
    "schema_problems",
    "schema_registry",
    "schema_validator",
    "show_value",
    "translate_errors",
    "wrong_type",
]

KeyPath = Sequence[str | int]
JsonPath = tuple[str | int, ...]

SCHEMA_BASE = "https://wamp-container.invalid/schema/"
COMPONENT_SCHEMA_ID = SCHEMA_BASE + "component.schema.json"
NODE_SCHEMA_ID = SCHEMA_BASE + "node.schema.json"

_PLAIN_KEY = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$-]*$")


def format_key_path(path: KeyPath, root: str = "") -> str:
    """``("workers", 1, "options", "restart")`` -> ``workers[1].options.restart``."""
    text = root
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _PLAIN_KEY.match(part):
            text += f".{part}" if text else part
        else:
            text += f"[{json.dumps(part, ensure_ascii=False)}]"
    return text or "(root)"


# --- findings: what is wrong, and where in the document -----------------------------------


@dataclass(frozen=True)
class Finding:
    """One thing wrong at a key path, not yet located in a file: at the value, or
    (``at_key``) at its key, which is where a person looks for a misspelt key."""

    path: JsonPath
    message: str
    at_key: bool = False
    missing: str | None = None  # a required key that is not there (``path`` is its object)

    def __str__(self) -> str:
        return f"{format_key_path(self.path)}: {self.message}"

    @property
    def key_path(self) -> JsonPath:
        """The key the finding is about: its path, or for a missing key, that key's own path
        (what a form highlights)."""
        return self.path if self.missing is None else (*self.path, self.missing)


@dataclass(frozen=True)
class ConfigWarning(Finding):
    """A key that is accepted (Crossbar.io accepts it) but has no effect here, and why."""

    def under(self, *prefix: str | int) -> ConfigWarning:
        """The same warning at a path relative to an enclosing object."""
        return ConfigWarning((*prefix, *self.path), self.message)


def raise_first(findings: Sequence[Finding], what: str | None = None) -> None:
    """Raise :class:`InvalidConfiguration` if there are findings: the message says the first
    (a caller of the management API reads one line), ``problems`` lists them all.

    The message, and each of ``problems``, starts with the key path (for a missing key the
    key itself: ``key``), so a client can show it beside the field:
    ``transport.endpoint.port: wrong type: ...``. On a command line, ``what`` (``container
    options``) says first which document is meant.
    """
    if findings:
        first = findings[0]
        key = format_key_path(first.key_path)
        more = f" (and {len(findings) - 1} more)" if len(findings) > 1 else ""
        raise InvalidConfiguration(
            f"{f'invalid {what}: ' if what else ''}{key}: {first.message}{more}",
            key=key,
            problems=[f"{format_key_path(finding.key_path)}: {finding.message}"
                      for finding in findings],
        )


# --- the schemas shipped in the package ---------------------------------------------------


def load_schema(name: str) -> dict[str, Any]:
    """A schema shipped in the package, e.g. ``load_schema("node.schema.json")``."""
    text = (resources.files("container") / "schema" / name).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def schema_registry() -> Registry[Any]:
    """Every schema in ``container/schema/``, by ``$id``: one place resolves every ``$ref``."""
    registry: Registry[Any] = Registry()
    for entry in resources.files("container.schema").iterdir():
        if entry.name.endswith(".schema.json"):
            schema = load_schema(entry.name)
            registry = registry.with_resource(schema["$id"], Resource.from_contents(schema))
    return registry


@cache
def schema_validator(ref: str) -> Draft202012Validator:
    """A validator for ``ref`` (a schema's ``$id``, maybe with a ``#/$defs/...`` fragment),
    built once: building one is far dearer than using it."""
    return Draft202012Validator({"$ref": ref}, registry=schema_registry())


def schema_problems(instance: Any, definition: str) -> list[Finding]:
    """Every violation of ``component.schema.json#/$defs/NAME``, shortest key paths first.

    The worker and ``ctl`` have no file positions to sort by; the outermost mistake first is
    what a one-line message should say.
    """
    validator = schema_validator(f"{COMPONENT_SCHEMA_ID}#/$defs/{definition}")
    findings = translate_errors(validator.iter_errors(instance))
    return sorted(findings, key=_outermost_first)


def _outermost_first(finding: Finding) -> tuple[int, bool, str]:
    """Shortest key path first; at one depth an unknown key before a missing one, as a
    misspelt key (``clasname``) is both, and its close-match suggestion is what helps."""
    return len(finding.key_path), not finding.at_key, finding.message


# --- one wording of what a schema refuses -------------------------------------------------

#: Words what a caller knows better than the schema does (the node: an unsupported worker
#: type); None leaves the error to the common wording.
Wording = Callable[[ValidationError], "Finding | None"]


def translate_errors(
    errors: Iterable[ValidationError], special: Wording | None = None
) -> list[Finding]:
    """Every error of one validation as findings a person can act on, each said once."""
    kept = _without_branches_of_bad_types(list(errors))
    findings: list[Finding] = []
    for error in kept:
        finding = special(error) if special is not None else None
        findings += [finding] if finding is not None else _translate(error)
    return list(dict.fromkeys(findings))


def _discriminator(error: ValidationError) -> tuple[JsonPath, tuple[Any, ...]] | None:
    """(object path, object schema path) when ``error`` says an object's ``type`` is bad."""
    path, schema_path = tuple(error.absolute_path), tuple(error.absolute_schema_path)
    if (
        error.validator in ("enum", "const")
        and path[-1:] == ("type",)
        and schema_path[-3:-1] == ("properties", "type")
    ):
        return path[:-1], schema_path[:-3]
    missing_type = isinstance(error.instance, dict) and "type" not in error.instance
    if error.validator == "required" and missing_type and "type" in error.validator_value:
        return path, schema_path[:-1]
    return None


def _without_branches_of_bad_types(errors: list[ValidationError]) -> list[ValidationError]:
    """Drop what the ``if/then/else`` branch picked by a wrong ``type`` demands: it is noise.

    With ``"type": "clas"`` the component schema's ``else`` (function components) would add
    "callbacks is required" and "classname is unknown"; only the wrong type is worth saying.
    """
    roots = [root for root in map(_discriminator, errors) if root is not None]

    def in_branch(error: ValidationError) -> bool:
        path, schema_path = tuple(error.absolute_path), tuple(error.absolute_schema_path)
        return any(
            path[: len(root)] == root
            and schema_path[: len(schema)] == schema
            and schema_path[len(schema) : len(schema) + 1] in (("then",), ("else",))
            for root, schema in roots
        )

    return [error for error in errors if not in_branch(error)]


def _translate(error: ValidationError) -> list[Finding]:
    """One jsonschema error -> findings; the keywords users meet most get their own wording."""
    path = tuple(error.absolute_path)
    schema_path = tuple(error.absolute_schema_path)
    validator = error.validator
    if validator == "additionalProperties" and error.validator_value is False:
        return list(_unknown_keys(error.instance, error.schema, path))
    if validator == "enum" and schema_path[-2:-1] == ("propertyNames",):
        key = str(error.instance)
        return [Finding((*path, key), _unknown_key(key, error.validator_value), at_key=True)]
    if _needs_one_of(error):
        keys = [key for sub in error.context or [] for key in sub.validator_value]
        named = ", ".join(repr(key) for key in dict.fromkeys(keys))
        return [Finding(path, f"needs one of the keys {named}")]
    if validator in ("oneOf", "anyOf") and error.context:
        return _translate_alternatives(error)
    if validator == "required":
        missing = [key for key in error.validator_value if key not in error.instance]
        return [Finding(path, f"missing required key '{key}'", missing=key) for key in missing]
    return [Finding(path, _message(error))]


def _unknown_keys(instance: Any, schema: Any, path: JsonPath) -> Iterator[Finding]:
    allowed = list(schema.get("properties", {}))
    patterns = list(schema.get("patternProperties", {}))
    for key in instance:
        if key not in allowed and not any(re.search(pattern, key) for pattern in patterns):
            yield Finding((*path, key), _unknown_key(key, allowed), at_key=True)


def _unknown_key(key: str, allowed: Iterable[str]) -> str:
    allowed = list(allowed)
    close = difflib.get_close_matches(key, allowed, n=1)
    if close:
        return f"unknown key '{key}' (did you mean '{close[0]}'?)"
    return f"unknown key '{key}' (allowed: {', '.join(allowed)})"


def _needs_one_of(error: ValidationError) -> bool:
    """``anyOf`` alternatives that each require a key: the object needs one of them (rather
    than the one key the best-matching alternative happens to name)."""
    context = error.context or []
    return error.validator == "anyOf" and all(sub.validator == "required" for sub in context)


def _translate_alternatives(error: ValidationError) -> list[Finding]:
    """For ``oneOf``/``anyOf``: one "expected X or Y" when only the type is wrong, else the best."""
    context = error.context or []
    if all(sub.validator == "type" and not sub.relative_path for sub in context):
        types = [name for sub in context for name in _as_list(sub.validator_value)]
        return [Finding(tuple(error.absolute_path), wrong_type(types, error.instance))]
    fitting = _alternatives_of_right_type(context)
    if fitting:
        return [finding for sub in fitting for finding in _translate(sub)]
    best = best_match(context)
    return _translate(best) if best is not None else []


def _alternatives_of_right_type(context: list[ValidationError]) -> list[ValidationError]:
    """The errors of the one alternative whose type the value has, if exactly one has it.

    ``"inherit": ["a", 5]`` is meant as the array alternative: say that ``inherit[1]`` is not a
    string, rather than that the whole value is not a boolean.
    """
    branches: dict[Any, list[ValidationError]] = {}
    for sub in context:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    fitting = [
        errors
        for errors in branches.values()
        if not any(sub.validator == "type" and not sub.relative_path for sub in errors)
    ]
    return fitting[0] if len(fitting) == 1 else []


def _message(error: ValidationError) -> str:
    value, limit = error.instance, error.validator_value
    match error.validator:
        case "type":
            return wrong_type(_as_list(limit), value)
        case "enum":
            return _invalid_choice(value, limit)
        case "const":
            return f"invalid value {show_value(value)} (must be {show_value(limit)})"
        case "pattern":
            why = error.schema.get("description") or f"must match the pattern {limit}"
            return f"invalid value {show_value(value)}: {why}"
        case "minimum" | "maximum" | "exclusiveMinimum" | "exclusiveMaximum":
            return f"invalid value {show_value(value)}: must be {_BOUNDS[error.validator]} {limit}"
        case "minLength" | "minItems" | "minProperties" if limit == 1:
            return "must not be empty"
        case "uniqueItems":
            return "has duplicate items"
        case _:
            return str(error.message)


_BOUNDS = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}
_JSON_TYPES: list[tuple[type, str]] = [
    (bool, "boolean"),
    (int, "integer"),
    (float, "number"),
    (str, "string"),
    (list, "array"),
    (dict, "object"),
    (type(None), "null"),
]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _json_type(value: Any) -> str:
    # bytes (CBOR, msgpack) and the like have no JSON type: named as Python has them
    return next((name for kind, name in _JSON_TYPES if isinstance(value, kind)),
                type(value).__name__)


def show_value(value: Any) -> str:
    """A value as the user wrote it, short; strings in single quotes like keys."""
    if isinstance(value, str):
        return f"'{value}'"
    if isinstance(value, dict | list):
        return _json_type(value)
    return json.dumps(value)


def wrong_type(expected: list[str], value: Any) -> str:
    got = _json_type(value)
    plain = isinstance(value, str | int | float)  # bool too; null and containers say no more
    shown = f" {show_value(value)}" if plain else ""
    return f"wrong type: expected {' or '.join(expected)}, got {got}{shown}"


def _invalid_choice(value: Any, choices: list[Any]) -> str:
    """An invalid enum value: the valid ones are listed, and a close one suggested."""
    valid = ", ".join(str(choice) for choice in choices)
    close = _close_choice(value, [choice for choice in choices if isinstance(choice, str)])
    hint = f"did you mean '{close}'? " if close else ""
    return f"invalid value {show_value(value)} ({hint}valid: {valid})"


def _close_choice(value: Any, choices: list[str]) -> str | None:
    """A close choice, compared without the prefix all choices share.

    Otherwise ``restart-sometimes`` would look like ``restart-never`` for the shared prefix alone.
    """
    if not isinstance(value, str) or not choices:
        return None
    prefix = os.path.commonprefix(choices) if len(choices) > 1 else ""  # noqa: RUF071
    stripped = {choice[len(prefix) :]: choice for choice in choices}
    key = value.removeprefix(prefix)
    close = difflib.get_close_matches(key, list(stripped), n=1)
    return stripped[close[0]] if close else None

"""The node configuration file: validation with source positions, typed values, ``container check``.

A person fixing a configuration needs ``FILE:LINE:COLUMN: path: what is wrong``, not a JSON
pointer, so every problem is located in the source text. stdlib :mod:`json` stays the parser of
record; a small scanner walks the text json already accepted and notes where each key and value
starts (no dependency of ours supplies source maps, and the scanner is a few dozen lines).

Our schema (``schema/node.schema.json``, which reaches ``schema/component.schema.json`` through
a :class:`referencing.Registry`) checks container workers in full and everything else at its
top level; Crossbar.io's own checker (:mod:`container.router.check`) checks everything but our
container workers, so what ``crossbar check`` accepts is accepted here. What a schema cannot say
(unique ids, option combinations that can never trigger) is checked in code. Every problem is
reported at once, each at the position of the key it is about.
"""

from __future__ import annotations

import argparse
import copy
import difflib
import functools
import importlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from container.config import container_worker_warnings, worker_disabled
from container.errors import InvalidConfiguration
from container.router.check import crossbar_findings
from container.validation import JsonPath, SourceMap, line_starts
from container.validation import format_key_path as format_path

__all__ = [
    "ConfigFileUnreadable",
    "ContainerWorker",
    "Management",
    "NodeConfig",
    "NodeConfigError",
    "Problem",
    "RouterWorker",
    "check_main",
    "format_path",
    "load_node_config",
    "load_schema",
]


DEFAULT_CONTROLLER_ID = "node"
DEFAULT_MANAGEMENT_REALM = "crossbar"
# Crossbar.io worker types we do not run (router, proxy, container and guest we do); a copied
# configuration may hold them, so the message says why it is refused.
CROSSBAR_ONLY_WORKER_TYPES = frozenset({"websocket-testee", "hostmonitor", "xbrmm", "marketmaker"})
COMPONENT_SCHEMA_URI = "https://wamp-container.invalid/schema/component.schema.json"


# ---------------------------------------------------------------------------------------------
# Errors and problems


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a configuration file, located for the person who has to fix it."""

    file: str
    line: int
    column: int
    path: JsonPath
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {format_path(self.path)}: {self.message}"


class NodeConfigError(InvalidConfiguration):
    """The node configuration is not valid; ``problems`` lists everything wrong, in file order."""

    def __init__(self, file: str, problems: Sequence[Problem]) -> None:
        lines = "\n".join(str(problem) for problem in problems)
        count = _count(len(problems), "problem")
        super().__init__(
            f"invalid node configuration {file} ({count}):\n{lines}",
            file=file,
            problems=[str(problem) for problem in problems],
        )
        self.file = file
        self.problems: list[Problem] = list(problems)


class ConfigFileUnreadable(InvalidConfiguration):
    """The file could not be read at all (missing, a directory, no permission).

    Separate from :class:`NodeConfigError` because nothing inside the file can be blamed:
    ``container check`` exits 2 for it, 1 for an invalid configuration.
    """


# ---------------------------------------------------------------------------------------------
# Source positions


def parse_with_positions(text: str, file: str) -> tuple[Any, SourceMap]:
    """Parse with stdlib json; a syntax error becomes a located :class:`NodeConfigError`."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        problem = Problem(file, error.lineno, error.colno, (), f"invalid JSON: {error.msg}")
        raise NodeConfigError(file, [problem]) from None
    return document, SourceMap.of(text)


def _read_text(path: Path, file: str) -> str:
    """The file's text; an unreadable file and text that is not UTF-8 are told apart."""
    try:
        data = path.read_bytes()
    except OSError as error:
        reason = error.strerror or str(error)
        raise ConfigFileUnreadable(f"{file}: cannot read: {reason}", file=file) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        before = data[: error.start].decode("utf-8-sig", errors="replace")
        starts = line_starts(before)
        line, column = len(starts), len(before) - starts[-1] + 1
        problem = Problem(file, line, column, (), f"not UTF-8 text: {error.reason}")
        raise NodeConfigError(file, [problem]) from None


# ---------------------------------------------------------------------------------------------
# Schema validation


def load_schema(name: str) -> dict[str, Any]:
    """A schema shipped in the package, e.g. ``load_schema("node.schema.json")``."""
    text = (resources.files("container") / "schema" / name).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@functools.cache
def node_validator() -> Draft202012Validator:
    """Built once: the node schema, with component.schema.json reachable by ``$ref``."""
    schemas = [load_schema("component.schema.json"), load_schema("node.schema.json")]
    registry: Registry[Any] = Registry().with_resources(
        (schema["$id"], DRAFT202012.create_resource(schema)) for schema in schemas
    )
    return Draft202012Validator(schemas[1], registry=registry)


@functools.cache
def _options_validator() -> Draft202012Validator:
    """Tells whether a container's options are well-typed enough for the semantic checks."""
    ref = {"$ref": f"{COMPONENT_SCHEMA_URI}#/$defs/container_options"}
    return node_validator().evolve(schema=ref)


@dataclass(frozen=True)
class Finding:
    """A problem not yet located in the source: at a value, or (``at_key``) at its key."""

    path: JsonPath
    message: str
    at_key: bool = False


def schema_findings(document: Any) -> list[Finding]:
    """Every schema violation, each translated into a message a person can act on."""
    errors = _without_branches_of_bad_types(list(node_validator().iter_errors(document)))
    return [finding for error in errors for finding in _translate(error)]


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
        return _unknown_keys(error.instance, error.schema, path)
    if validator == "enum" and schema_path[-2:-1] == ("propertyNames",):
        key = str(error.instance)
        return [Finding((*path, key), _unknown_key(key, error.validator_value), at_key=True)]
    if validator in ("oneOf", "anyOf") and error.context:
        return _translate_alternatives(error)
    return [Finding(path, _message(error, path))]


def _unknown_keys(instance: Any, schema: Any, path: JsonPath) -> list[Finding]:
    allowed = list(schema.get("properties", {}))
    patterns = list(schema.get("patternProperties", {}))
    return [
        Finding((*path, key), _unknown_key(key, allowed), at_key=True)
        for key in instance
        if key not in allowed and not any(re.search(pattern, key) for pattern in patterns)
    ]


def _unknown_key(key: str, allowed: Iterable[str]) -> str:
    allowed = list(allowed)
    close = difflib.get_close_matches(key, allowed, n=1)
    if close:
        return f"unknown key '{key}' (did you mean '{close[0]}'?)"
    return f"unknown key '{key}' (allowed: {', '.join(allowed)})"


def _translate_alternatives(error: ValidationError) -> list[Finding]:
    """For ``oneOf``/``anyOf``: one "expected X or Y" when only the type is wrong, else the best."""
    context = error.context or []
    if all(sub.validator == "type" and not sub.relative_path for sub in context):
        expected = [_as_list(sub.validator_value) for sub in context]
        types = [name for names in expected for name in names]
        path = tuple(error.absolute_path)
        return [Finding(path, _wrong_type(types, error.instance))]
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


def _message(error: ValidationError, path: JsonPath) -> str:
    value, limit = error.instance, error.validator_value
    match error.validator:
        case "required":
            missing = [key for key in limit if key not in value]
            return "; ".join(f"missing required key '{key}'" for key in missing)
        case "type":
            return _wrong_type(_as_list(limit), value)
        case "enum":
            return _invalid_choice(value, limit, path)
        case "const":
            return f"invalid value {_show(value)} (must be {_show(limit)})"
        case "pattern":
            why = error.schema.get("description") or f"must match the pattern {limit}"
            return f"invalid value {_show(value)}: {why}"
        case "minimum" | "maximum" | "exclusiveMinimum" | "exclusiveMaximum":
            return f"invalid value {_show(value)}: must be {_BOUNDS[error.validator]} {limit}"
        case "minLength" | "minItems" | "minProperties" if limit == 1:
            return "must not be empty"
        case "uniqueItems":
            return "has duplicate items"
        case _:
            return error.message


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
    return next(name for kind, name in _JSON_TYPES if isinstance(value, kind))


def _show(value: Any) -> str:
    """A value as the user wrote it, short; strings in single quotes like keys."""
    if isinstance(value, str):
        return f"'{value}'"
    if isinstance(value, dict | list):
        return _json_type(value)
    return json.dumps(value)


def _wrong_type(expected: list[str], value: Any) -> str:
    got = _json_type(value)
    shown = "" if isinstance(value, dict | list) else f" {_show(value)}"
    return f"wrong type: expected {' or '.join(expected)}, got {got}{shown}"


def _invalid_choice(value: Any, choices: list[Any], path: JsonPath) -> str:
    """An invalid enum value: the valid ones are listed, and a close one suggested."""
    valid = ", ".join(str(choice) for choice in choices)
    if _is_worker_type(path):
        if value in CROSSBAR_ONLY_WORKER_TYPES:
            return f"worker type '{value}' is not supported by wamp-container (supported: {valid})"
        return f"unknown worker type {_show(value)} (supported: {valid})"
    close = _close_choice(value, [choice for choice in choices if isinstance(choice, str)])
    hint = f"did you mean '{close}'? " if close else ""
    return f"invalid value {_show(value)} ({hint}valid: {valid})"


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


def _is_worker_type(path: JsonPath) -> bool:
    return len(path) == 3 and path[0] == "workers" and path[2] == "type"


# ---------------------------------------------------------------------------------------------
# Checks the schema cannot express


def code_findings(document: Any) -> list[Finding]:
    """Unique worker ids (node-wide) and component ids (per container), container options."""
    if not isinstance(document, dict):
        return []
    indexed = list(_dict_items(document.get("workers")))
    numbered = _numbered_ids(indexed)
    findings = list(_duplicates(indexed, numbered, ("workers",), "worker"))
    for index, worker in indexed:
        if worker.get("type") == "container":
            findings += _duplicate_component_ids(index, worker, numbered)
            findings += _options_findings(index, worker.get("options"))
    return findings


def _dict_items(items: Any) -> Iterator[tuple[int, dict[str, Any]]]:
    """(index, item) for the objects of a list; anything else was reported by the schema."""
    if isinstance(items, list):
        yield from ((index, item) for index, item in enumerate(items) if isinstance(item, dict))


IdMap = dict[JsonPath, Any]


def _numbered_ids(workers: list[tuple[int, dict[str, Any]]]) -> IdMap:
    """The id of every worker and component as Crossbar.io's node has it: given or generated.

    Ids are generated by :func:`number_like_crossbar` (node-wide counters that count only the
    items without an id), on a skeleton of the document that holds just what those two
    counters depend on, so a document the schema refused cannot break the numbering.
    """
    components = {index: list(_dict_items(_components(worker))) for index, worker in workers}
    skeleton = [_skeleton(worker, components[index]) for index, worker in workers]
    numbered = number_like_crossbar({"workers": skeleton})["workers"]
    ids: IdMap = {}
    for (index, _), worker in zip(workers, numbered, strict=True):
        ids[("workers", index)] = worker["id"]
        for (number, _), component in zip(components[index], worker["components"], strict=True):
            ids[("workers", index, "components", number)] = component["id"]
    return ids


def _components(worker: dict[str, Any]) -> Any:
    """The components Crossbar.io's node numbers: those of routers and containers."""
    return worker.get("components") if worker.get("type") in ("router", "container") else None


def _skeleton(worker: dict[str, Any], components: list[tuple[int, dict[str, Any]]]) -> Any:
    """A worker reduced to its type, its id and its (object) components' ids."""
    skeleton: dict[str, Any] = {key: worker[key] for key in ("type", "id") if key in worker}
    skeleton.setdefault("type", None)
    skeleton["components"] = [{"id": item["id"]} if "id" in item else {} for _, item in components]
    return skeleton


def _duplicates(
    items: Iterable[tuple[int, dict[str, Any]]], ids: IdMap, base: JsonPath, what: str
) -> Iterator[Finding]:
    first: dict[str, int] = {}
    for index, item in items:
        ident = ids[(*base, index)]
        if not isinstance(ident, str):
            continue
        if ident not in first:
            first[ident] = index
            continue
        other = format_path((*base, first[ident]))
        if "id" in item:
            message = f"duplicate {what} id '{ident}' (also used by {other})"
            yield Finding((*base, index, "id"), message)
        else:
            message = f"the id '{ident}' generated for this {what} is already used by {other}"
            yield Finding((*base, index), message)


def _duplicate_component_ids(index: int, worker: dict[str, Any], ids: IdMap) -> Iterator[Finding]:
    components = _dict_items(worker.get("components"))
    return _duplicates(components, ids, ("workers", index, "components"), "component")


def _options_findings(index: int, options: Any) -> list[Finding]:
    """Semantic option problems from ``container.config``, once the options are well-typed."""
    check = _options_problems_function()
    if check is None or not isinstance(options, dict):
        return []
    if not _options_validator().is_valid(options):
        return []
    base: JsonPath = ("workers", index, "options")
    return [Finding((*base, *problem.path), problem.message) for problem in check(options)]


def _options_problems_function() -> Callable[[dict[str, Any]], list[Any]] | None:
    """``container.config.container_options_problems``, imported when first needed.

    Imported late so this module loads on its own; while ``container.config`` (or the function)
    does not exist, the semantic option checks are skipped rather than failing every check.
    """
    try:
        module = importlib.import_module("container.config")
    except ModuleNotFoundError as error:
        if error.name != "container.config":
            raise
        return None
    return getattr(module, "container_options_problems", None)


def _duplicate_key_findings(source: SourceMap) -> list[Finding]:
    findings = []
    for path, first_offset in source.duplicates:
        line = source.line_column(first_offset)[0]
        message = f"duplicate key '{path[-1]}' (also on line {line}; only the last one counts)"
        findings.append(Finding(path, message, at_key=True))
    return findings


def check_document(
    document: Any, source: SourceMap, file: str, *, crossbar: bool = True
) -> list[Problem]:
    """Every problem of a parsed document, located, deduplicated, in file order.

    With ``crossbar`` (the default), Crossbar.io's own checker judges everything but our
    container workers, once our schema found nothing wrong outside them (a document of the
    wrong shape could crash it). The node passes False: its router processes run that check.
    """
    schema = schema_findings(document)
    findings = [*_duplicate_key_findings(source), *schema, *code_findings(document)]
    if crossbar and not _outside_containers(schema, document):
        findings += _crossbar_findings(document)
    unique = dict.fromkeys(findings)
    problems = [_locate(finding, source, file) for finding in unique]
    return sorted(problems, key=lambda p: (p.line, p.column, format_path(p.path), p.message))


def _outside_containers(findings: list[Finding], document: Any) -> list[Finding]:
    """The findings that are not inside a container worker (those Crossbar.io is shown)."""
    workers = document.get("workers") if isinstance(document, dict) else None
    containers = {("workers", i) for i, w in _dict_items(workers) if w.get("type") == "container"}
    return [finding for finding in findings if finding.path[:2] not in containers]


def _crossbar_findings(document: Any) -> list[Finding]:
    """Crossbar.io's findings, each at its key; its checker failing is one finding at the root.

    Whatever goes wrong there (Crossbar.io not installed, a crash of its checker that its own
    locating did not catch) must reach the user as a problem, never as a traceback.
    """
    try:
        found = crossbar_findings(document)
    except ImportError as error:
        why = f"Crossbar.io's checker is not available ({error}): install wamp-container[router]"
        return [Finding((), why)]
    except Exception as error:  # whatever Crossbar.io's checker does is reported, not raised
        return [Finding((), f"Crossbar.io's checker failed: {type(error).__name__}: {error}")]
    return [Finding(path, message, at_key=True) for path, message in found]


def _locate(finding: Finding, source: SourceMap, file: str) -> Problem:
    line, column = source.position(finding.path, at_key=finding.at_key)
    return Problem(file, line, column, finding.path, finding.message)


# ---------------------------------------------------------------------------------------------
# Typed values


@dataclass(frozen=True)
class Management:
    """External router mode: the existing Crossbar.io router that carries the management realm."""

    transport: dict[str, Any]
    realm: str
    auth: dict[str, Any] | None


@dataclass(frozen=True)
class RouterWorker:
    """A router or proxy worker, served by Crossbar.io's own worker class: its worker item
    with every id Crossbar.io's node would generate already set (paths stay relative to the
    node directory, where Crossbar.io resolves them)."""

    id: str
    type: str
    config: dict[str, Any]


@dataclass(frozen=True)
class ContainerWorker:
    """A container worker: its options and its components, each component with its ``id`` set."""

    id: str
    options: dict[str, Any]
    components: list[dict[str, Any]]


@dataclass(frozen=True)
class GuestWorker:
    """A guest worker: any program the node runs and supervises (its worker item, id set)."""

    id: str
    config: dict[str, Any]


@dataclass(frozen=True)
class NodeConfig:
    """A valid node configuration; relative paths already resolved against ``config_dir``."""

    path: Path
    config_dir: Path
    controller_id: str
    title: str | None
    management: Management | None
    routers: list[RouterWorker]
    containers: list[ContainerWorker]
    raw: dict[str, Any]
    guests: list[GuestWorker] = field(default_factory=list)

    @property
    def component_count(self) -> int:
        return sum(len(worker.components) for worker in self.containers)


def load_node_config(path: str | os.PathLike[str], *, crossbar: bool = True) -> NodeConfig:
    """Read, parse and validate a node configuration file.

    Raises :class:`NodeConfigError` with every problem found, or :class:`ConfigFileUnreadable`.
    Problems name the file as given, so they read like a compiler's. ``crossbar`` is passed to
    :func:`check_document` (False: Crossbar.io's checker runs elsewhere, e.g. in the routers).
    """
    file = os.fspath(path)
    document, source = parse_with_positions(_read_text(Path(file), file), file)
    problems = check_document(document, source, file, crossbar=crossbar)
    if problems:
        raise NodeConfigError(file, problems)
    return build_node_config(document, Path(file))


def build_node_config(document: dict[str, Any], path: Path) -> NodeConfig:
    """Typed values from a document that passed :func:`check_document`."""
    path = path.absolute()
    base = path.parent
    controller = document.get("controller", {})
    workers = [worker for worker in number_like_crossbar(document).get("workers", [])
               if not worker_disabled(worker.get("options", {}))]
    return NodeConfig(
        path=path,
        config_dir=base,
        controller_id=controller.get("id", DEFAULT_CONTROLLER_ID),
        title=controller.get("options", {}).get("title"),
        management=_management(controller.get("management"), base),
        routers=[RouterWorker(w["id"], w["type"], w) for w in workers
                 if w["type"] in ("router", "proxy")],
        containers=[_container(w, base) for w in workers if w["type"] == "container"],
        guests=[GuestWorker(w["id"], w) for w in workers if w["type"] == "guest"],
        raw=document,
    )


def number_like_crossbar(document: dict[str, Any]) -> dict[str, Any]:
    """A copy of the document with every id that Crossbar.io's node generates filled in.

    Crossbar.io numbers what has no ``id`` with node-wide counters, in the order its node
    configures the workers: ``worker001``, ``realm001``, ``role001``, ``component001`` (shared
    by router and container components), ``transport001``, ``webservice001`` (web paths but
    ``/``, sorted); ``rlink000`` per realm and a proxy's ``transport000`` per worker count from
    0 by position. Filling them in here makes them the same in every process of the node.
    """
    numbered = copy.deepcopy(document)
    counters: dict[str, int] = {}

    def next_id(kind: str, item: dict[str, Any]) -> None:
        if "id" not in item:
            counters[kind] = counters.get(kind, 0) + 1
            item["id"] = f"{kind}{counters[kind]:03d}"

    for worker in numbered.get("workers", []):
        next_id("worker", worker)
        if worker["type"] == "router":
            for realm in worker.get("realms", []):
                next_id("realm", realm)
                for role in realm.get("roles", []):
                    next_id("role", role)
        for component in worker.get("components", []):
            next_id("component", component)
        for index, transport in enumerate(worker.get("transports", [])):
            if worker["type"] == "proxy":
                transport.setdefault("id", f"transport{index:03d}")
            else:
                next_id("transport", transport)
            paths = transport.get("paths") or transport.get("web", {}).get("paths") or {}
            for name in sorted(paths):
                if name != "/" and isinstance(paths[name], dict):
                    next_id("webservice", paths[name])
        for realm in worker.get("realms", []):
            for index, rlink in enumerate(realm.get("rlinks", [])):
                rlink.setdefault("id", f"rlink{index:03d}")
    return numbered


def _management(config: dict[str, Any] | None, base: Path) -> Management | None:
    if config is None:
        return None
    transport = _resolve_transport(copy.deepcopy(config["transport"]), base)
    realm = config.get("realm", DEFAULT_MANAGEMENT_REALM)
    return Management(transport, realm, copy.deepcopy(config.get("auth")))


def _container(worker: dict[str, Any], base: Path) -> ContainerWorker:
    options = copy.deepcopy(worker.get("options", {}))
    if "pythonpath" in options:
        options["pythonpath"] = [_absolute(base, entry) for entry in options["pythonpath"]]
    components = []
    for component in worker.get("components", []):
        resolved = copy.deepcopy(component)
        _resolve_transport(resolved["transport"], base)
        components.append(resolved)
    return ContainerWorker(worker["id"], options, components)


def _absolute(base: Path, entry: str) -> str:
    return os.path.normpath(os.path.join(base, entry))


def _resolve_transport(transport: dict[str, Any], base: Path) -> dict[str, Any]:
    """Make a client transport's file paths (unix socket, TLS files) absolute, in place."""
    if "endpoint" in transport:
        _resolve_endpoint(transport["endpoint"], base)
    return transport


def _resolve_endpoint(endpoint: dict[str, Any], base: Path) -> None:
    if endpoint.get("type") == "unix":
        endpoint["path"] = _absolute(base, endpoint["path"])
    tls = endpoint.get("tls", {})
    for key in ("certificate", "key"):
        if key in tls:
            tls[key] = _absolute(base, tls[key])
    if "ca_certificates" in tls:
        tls["ca_certificates"] = [_absolute(base, entry) for entry in tls["ca_certificates"]]


# ---------------------------------------------------------------------------------------------
# container check


def check_main(argv: Sequence[str]) -> int:
    """``container check CONFIG [CONFIG...]``: 0 all valid, 1 some invalid, 2 some unreadable."""
    parser = argparse.ArgumentParser(
        prog="container check",
        description="Validate node configuration files without starting anything.",
    )
    parser.add_argument("configs", nargs="+", metavar="CONFIG")
    args = parser.parse_args(list(argv))
    return max(_check_one(file) for file in args.configs)


def _check_one(file: str) -> int:
    try:
        config = load_node_config(file)
    except ConfigFileUnreadable as error:
        print(error)
        return 2
    except NodeConfigError as error:
        for problem in error.problems:
            print(problem)
        print(f"{file}: invalid ({_count(len(error.problems), 'problem')})")
        return 1
    problem = _plan_problem(config)
    if problem is not None:
        print(f"{file}: {problem}")
        print(f"{file}: invalid (1 problem)")
        return 1
    for warning in config_warnings(config):
        print(f"{file}: warning: {warning}")
    print(f"{file}: OK ({_summary(config)})")
    return 0


def config_warnings(config: NodeConfig) -> list[str]:
    """Keys Crossbar.io accepts on container workers that have no effect here, and why, as
    ``workers[1].manhole: ...`` lines."""
    workers = config.raw.get("workers", [])
    return [
        f"{format_path(('workers', index, *warning.path))}: {warning.message}"
        for index, worker in enumerate(workers)
        if isinstance(worker, dict) and worker.get("type") == "container"
        for warning in container_worker_warnings(worker)
    ]


def _plan_problem(config: NodeConfig) -> str | None:
    """What ``container run`` would refuse after validation (the node's plan: a realm named
    like the management realm, no router to carry it, ...), or None. Nothing is written."""
    from container.node.plan import NodePlanError, build_plan

    with tempfile.TemporaryDirectory(prefix="container-check-") as scratch:
        try:
            build_plan(config, Path(scratch) / "run", token=lambda: "check")
        except NodePlanError as error:
            return str(error)
    return None


def _summary(config: NodeConfig) -> str:
    """What the node would run; proxies and guests are named only when there are some, so
    the line of a plain router-and-containers node reads as it always did."""
    proxies = sum(worker.type == "proxy" for worker in config.routers)
    parts = [
        _count(len(config.routers) - proxies, "router"),
        _count(proxies, "proxy", "proxies") if proxies else "",
        _count(len(config.containers), "container"),
        _count(len(config.guests), "guest") if config.guests else "",
        _count(config.component_count, "component"),
    ]
    return ", ".join(part for part in parts if part)


def _count(number: int, noun: str, plural: str = "") -> str:
    return f"{number} {noun if number == 1 else plural or noun + 's'}"

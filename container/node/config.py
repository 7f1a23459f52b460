"""The node configuration file: checked with source positions, then as typed values.

A person fixing a configuration needs ``FILE:LINE:COLUMN: path: what is wrong``, so every
problem is located in the source text (:mod:`container.positions`).

Our schema (``schema/node.schema.json``, which reaches ``schema/component.schema.json``
through the one registry of :mod:`container.validation`) checks container workers in full and
everything else at its top level; Crossbar.io's own checker (:mod:`container.router.check`)
checks everything but our container workers, so what ``crossbar check`` accepts is accepted
here. What a schema cannot say (unique ids, option combinations that can never trigger) is
checked in code. Every problem is reported at once, each at the position of the key it is
about. The ``container check`` command is :mod:`container.node.check`.
"""

from __future__ import annotations

import copy
import functools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from jsonschema.exceptions import ValidationError  # type: ignore[import-untyped]

from container.components import component_value_problems
from container.errors import ConfigFileUnreadable, NodeConfigError
from container.node.ids import (
    component_id_findings,
    dict_items,
    duplicate_id_findings,
    number_like_crossbar,
)
from container.options import container_options_problems, container_worker_warnings, worker_disabled
from container.positions import Problem, SourceMap, line_starts, locate
from container.router.check import crossbar_findings
from container.validation import (
    COMPONENT_SCHEMA_ID,
    NODE_SCHEMA_ID,
    Finding,
    JsonPath,
    format_key_path,
    schema_registry,
    schema_validator,
    show_value,
    translate_errors,
)

__all__ = [
    "DEFAULT_MANAGEMENT_REALM",
    "ContainerWorker",
    "GuestWorker",
    "Management",
    "NodeConfig",
    "RouterWorker",
    "build_node_config",
    "check_document",
    "config_warnings",
    "load_node_config",
    "node_validator",
]


DEFAULT_CONTROLLER_ID = "node"
DEFAULT_MANAGEMENT_REALM = "crossbar"
# Crossbar.io worker types we do not run (router, proxy, container and guest we do); a copied
# configuration may hold them, so the message says why it is refused.
CROSSBAR_ONLY_WORKER_TYPES = frozenset({"websocket-testee", "hostmonitor", "xbrmm", "marketmaker"})


# ---------------------------------------------------------------------------------------------
# Reading


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
# Checking


@functools.cache
def node_validator() -> Draft202012Validator:
    """Built once: the node schema, with component.schema.json reachable by ``$ref``."""
    registry = schema_registry()
    return Draft202012Validator(registry.contents(NODE_SCHEMA_ID), registry=registry)


def schema_findings(document: Any) -> list[Finding]:
    """Every schema violation, worded like every other check's (:mod:`container.validation`)."""
    return translate_errors(node_validator().iter_errors(document), _worker_type_finding)


def _worker_type_finding(error: ValidationError) -> Finding | None:
    """A worker type we do not run: Crossbar.io's own are named as such, so a configuration
    copied from Crossbar.io says why it is refused."""
    path = tuple(error.absolute_path)
    is_worker_type = len(path) == 3 and path[0] == "workers" and path[2] == "type"
    if error.validator != "enum" or not is_worker_type:
        return None
    value, valid = error.instance, ", ".join(str(choice) for choice in error.validator_value)
    if value in CROSSBAR_ONLY_WORKER_TYPES:
        return Finding(path, f"worker type '{value}' is not supported by wamp-container "
                             f"(supported: {valid})")
    return Finding(path, f"unknown worker type {show_value(value)} (supported: {valid})")


def code_findings(document: Any, base_dir: str | None = None) -> list[Finding]:
    """Unique worker ids (node-wide) and component ids (per container), component ids the
    API accepts, container options, component values no start could use (TLS files read
    from ``base_dir``, the node directory)."""
    if not isinstance(document, dict):
        return []
    workers = list(dict_items(document.get("workers")))
    findings = duplicate_id_findings(workers) + component_id_findings(workers)
    for index, worker in workers:
        if worker.get("type") == "container":
            findings += _options_findings(index, worker.get("options"))
            findings += _component_value_findings(index, worker, base_dir)
    return findings


def _component_value_findings(
    index: int, worker: dict[str, Any], base_dir: str | None
) -> list[Finding]:
    """What the worker would refuse at start in a component the schema accepts (a missing
    TLS file, a URL without a host, ...): :func:`container.components.component_value_problems`."""
    return [
        Finding(("workers", index, "components", position, *problem.path), problem.message)
        for position, component in dict_items(worker.get("components"))
        for problem in component_value_problems(component, base_dir)
    ]


def _options_findings(index: int, options: Any) -> list[Finding]:
    """What :mod:`container.options` finds beyond the schema, once the options are well-typed
    (until then the schema's findings are the ones to read)."""
    well_typed = schema_validator(f"{COMPONENT_SCHEMA_ID}#/$defs/container_options")
    if not isinstance(options, dict) or not well_typed.is_valid(options):
        return []
    base: JsonPath = ("workers", index, "options")
    return [Finding((*base, *problem.path), problem.message)
            for problem in container_options_problems(options)]


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
    base_dir = os.path.dirname(os.path.abspath(file))
    findings = [*_duplicate_key_findings(source), *schema, *code_findings(document, base_dir)]
    if crossbar and not _outside_containers(schema, document):
        findings += _crossbar_findings(document)
    unique = dict.fromkeys(findings)
    problems = [locate(finding, source, file) for finding in unique]
    return sorted(problems, key=lambda p: (p.line, p.column, format_key_path(p.path), p.message))


def _outside_containers(findings: list[Finding], document: Any) -> list[Finding]:
    """The findings that are not inside a container worker (those Crossbar.io is shown)."""
    workers = document.get("workers") if isinstance(document, dict) else None
    containers = {("workers", i) for i, w in dict_items(workers) if w.get("type") == "container"}
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



def config_warnings(config: NodeConfig) -> list[str]:
    """Keys Crossbar.io accepts on container workers that have no effect here, and why, as
    ``workers[1].manhole: ...`` lines."""
    workers = config.raw.get("workers", [])
    return [
        f"{format_key_path(('workers', index, *warning.path))}: {warning.message}"
        for index, worker in enumerate(workers)
        if isinstance(worker, dict) and worker.get("type") == "container"
        for warning in container_worker_warnings(worker)
    ]

"""Crossbar.io's own configuration checker, run on a node configuration, its findings located.

This is the only module that calls Crossbar.io's checker. The compatibility promise is that
what ``crossbar check`` accepts passes ``container check``; the only way to keep that true as
Crossbar.io changes is to ask Crossbar.io itself, never to re-state its rules in a schema of
ours. Our own container workers and our ``controller.management`` key are ours to check, so
they are taken out of the view Crossbar.io is shown (:func:`crossbar_view`).

Crossbar.io stops at the first problem and names no position. :func:`crossbar_findings` runs
the whole check (the verdict), then Crossbar.io's per-item checkers on the controller and on
every worker, so that each faulty item gets its own finding; within a faulty router it narrows
to the realm, role, permission, transport or component at fault, and within that points at
the deepest key or value the message quotes. Crossbar.io's wording is kept, on one line.

Crossbar.io is imported inside the functions only: the node imports this module, and the
import costs seconds. Nothing is cached between calls, so no call can hide a problem.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["KeyPath", "crossbar_findings", "crossbar_view"]

KeyPath = tuple[str | int, ...]
Finding = tuple[KeyPath, str]
Check = Callable[[Any, Any], None]

#: Worker types whose items our own schema checks; Crossbar.io is not shown them.
OUR_WORKER_TYPES = frozenset({"container"})

#: Where a failing item of each kind may be narrowed to: (key, Crossbar.io checker, kind of
#: the part, whether the checker expects the part wrapped in a list under ``key``).
_PARTS: dict[str, tuple[tuple[str, str, str, bool], ...]] = {
    "controller": (("options", "check_controller_options", "", False),),
    "router": (
        ("options", "check_router_options", "", False),
        ("realms", "check_router_realm", "realm", False),
        ("transports", "check_router_transport", "", False),
        ("components", "check_router_component", "", False),
    ),
    "realm": (("roles", "check_router_realm_role", "role", False),),
    "role": (("permissions", "check_router_realm_role", "", True),),
}

_QUOTED = re.compile(r"'([^']*)'|\"([^\"]*)\"")
_ABSENT = re.compile(
    r"(?:missing(?: mandatory)?(?: attribute| key)?:?(?: neither)?|\bnor|must have) "
    r"(?:'[^']*'|\"[^\"]*\")"
)
_PYTHON_TYPE = re.compile(r"<class '([^']*)'>")


def crossbar_view(document: Any) -> Any:
    """The document as Crossbar.io should check it: a copy without our container workers and
    without ``controller.management`` (external router mode, ours); anything else unchanged."""
    view = copy.deepcopy(document)
    if not isinstance(view, dict):
        return view
    controller = view.get("controller")
    if isinstance(controller, dict):
        controller.pop("management", None)
    workers = view.get("workers")
    if isinstance(workers, list):
        view["workers"] = [workers[index] for index in _checked_indices(document)]
    return view


def _checked_indices(document: dict[str, Any]) -> list[int]:
    """Indices (in the original document) of the workers Crossbar.io is shown."""
    workers = document.get("workers")
    if not isinstance(workers, list):
        return []
    return [
        index
        for index, worker in enumerate(workers)
        if not (isinstance(worker, dict) and worker.get("type") in OUR_WORKER_TYPES)
    ]


def crossbar_findings(document: dict[str, Any]) -> list[tuple[KeyPath, str]]:
    """What Crossbar.io refuses in ``document``: (key path into ``document``, message) pairs.

    Empty when Crossbar.io's ``check_config`` accepts the view and every realm name is one
    Crossbar.io's router would start. Raises ImportError when Crossbar.io is not installed.
    """
    crossbar = _Crossbar.load()
    view = crossbar_view(document)
    verdict = crossbar.failure(crossbar.personality.check_config, view)
    findings: list[Finding] = []
    if verdict is not None:
        findings = list(_item_findings(crossbar, document, view)) or [_top_level(verdict, view)]
    return findings + list(_realm_name_findings(document))


def _top_level(message: str, view: Any) -> Finding:
    """A refusal of no controller or worker item: at the top-level key it quotes, if any
    (only top-level keys are looked at: a quoted version number is no value deep inside)."""
    keys: dict[str, Any] = {key: {} for key in view} if isinstance(view, dict) else {}
    return _quoted_key_path(message, keys), message


@dataclass(frozen=True)
class _Crossbar:
    """Crossbar.io's personality and its checker's exception, imported when first needed."""

    personality: Any
    refusal: type[Exception]

    @classmethod
    def load(cls) -> _Crossbar:
        from crossbar.common.checkconfig import InvalidConfigException
        from crossbar.personality import Personality

        return cls(Personality, InvalidConfigException)

    def checker(self, name: str) -> Check:
        check: Check = getattr(self.personality, name)
        return check

    def failure(self, check: Check, item: Any) -> str | None:
        """Crossbar.io's message if ``check`` refuses ``item`` (a copy: checkers mutate), else
        None. A checker that crashes refuses too (``crossbar check`` would fail), said so."""
        try:
            check(self.personality, copy.deepcopy(item))
        except self.refusal as error:
            return clean_message(str(error))
        except Exception as error:  # any crash of Crossbar.io's checker is its verdict too
            reason = clean_message(str(error))
            return f"Crossbar.io's checker failed: {type(error).__name__}: {reason}"
        return None


def _item_findings(crossbar: _Crossbar, document: dict[str, Any], view: Any) -> Iterator[Finding]:
    """One finding per controller or worker item that Crossbar.io's checker refuses."""
    if not isinstance(view, dict):
        return
    controller = view.get("controller")
    if controller is not None:
        yield from _item_finding(crossbar, ("controller",), controller, "controller",
                                 crossbar.checker("check_controller"))
    workers = view.get("workers")
    if isinstance(workers, list):
        check_worker = crossbar.checker("check_worker")
        for index, worker in zip(_checked_indices(document), workers, strict=True):
            kind = worker.get("type", "") if isinstance(worker, dict) else ""
            yield from _item_finding(crossbar, ("workers", index), worker, kind, check_worker)


def _item_finding(
    crossbar: _Crossbar, path: KeyPath, item: Any, kind: str, check: Check
) -> Iterator[Finding]:
    message = crossbar.failure(check, item)
    if message is None:
        return
    part_path, part = _narrow(crossbar, kind, item, message)
    yield (*path, *part_path, *_quoted_key_path(message, part)), message


def _narrow(crossbar: _Crossbar, kind: str, item: Any, message: str) -> tuple[KeyPath, Any]:
    """The smallest part of ``item`` that Crossbar.io's per-part checkers refuse with the same
    message (another part may be refused too, for another reason), or ``item`` itself."""
    for key, name, part_kind, wrapped in _PARTS.get(kind, ()):
        for part_path, part in _parts(item, key):
            tried = {key: [part]} if wrapped else part
            if crossbar.failure(crossbar.checker(name), tried) == message:
                deeper, found = _narrow(crossbar, part_kind, part, message)
                return (*part_path, *deeper), found
    return (), item


def _parts(item: Any, key: str) -> Iterator[tuple[KeyPath, Any]]:
    """``item[key]`` when it is an object, each element with its index when it is a list."""
    value = item.get(key) if isinstance(item, dict) else None
    if isinstance(value, dict):
        yield (key,), value
    elif isinstance(value, list):
        yield from (((key, index), element) for index, element in enumerate(value))


def _quoted_key_path(message: str, item: Any) -> KeyPath:
    """The deepest key path in ``item`` that is a key, or holds a value, that the message
    quotes (first quoted first on a tie); ``()`` when it quotes nothing found there.

    A key the message says is missing is not looked for: another one of that name elsewhere
    in the item would be the wrong place.
    """
    named = [token for token in _quoted(_ABSENT.sub("", message)) if token]
    candidates = [path for token in named for path in _paths_naming(item, token)]
    return max(candidates, key=len, default=())


def _quoted(message: str) -> list[str]:
    return [single or double for single, double in _QUOTED.findall(message)]


def _paths_naming(item: Any, token: str, path: KeyPath = ()) -> Iterator[KeyPath]:
    """Paths (in document order) of keys equal to ``token`` and of scalars that read ``token``."""
    if isinstance(item, dict):
        for key, value in item.items():
            if key == token:
                yield (*path, key)
            yield from _paths_naming(value, token, (*path, key))
    elif isinstance(item, list):
        for index, value in enumerate(item):
            yield from _paths_naming(value, token, (*path, index))
    elif path and _reads(item) == token:
        yield path


def _reads(value: Any) -> str:
    """A scalar as Crossbar.io's messages print it (``str.format`` of the Python value)."""
    return value if isinstance(value, str) else str(value)


def clean_message(text: str) -> str:
    """Crossbar.io's message on one line: without the dump of the item it appends after a
    blank line, with Python type reprs (``<class 'int'>``) as plain names."""
    first = text.split("\n\n", 1)[0]
    return " ".join(_PYTHON_TYPE.sub(r"\1", first).split()).rstrip(":")


def _realm_name_findings(document: dict[str, Any]) -> Iterator[Finding]:
    """Realm names Crossbar.io's router refuses when it starts the realm.

    ``crossbar check`` does not look at realm names; Crossbar.io's ``start_router_realm``
    refuses a name that autobahn's ``identify_realm_name_category`` does not recognise, so
    ``crossbar start`` never serves such a node. The same function decides here.
    """
    from autobahn.wamp.message import identify_realm_name_category

    for index, worker in _routers(document):
        for number, realm in enumerate(_list(worker.get("realms"))):
            name = realm.get("name") if isinstance(realm, dict) else None
            if isinstance(name, str) and identify_realm_name_category(name) is None:
                path: KeyPath = ("workers", index, "realms", number, "name")
                yield path, (
                    "Invalid router realm configuration: "
                    f'the name "{name}" is not a valid WAMP realm name'
                )


def _routers(document: Any) -> Iterator[tuple[int, dict[str, Any]]]:
    workers = document.get("workers") if isinstance(document, dict) else None
    for index, worker in enumerate(_list(workers)):
        if isinstance(worker, dict) and worker.get("type") == "router":
            yield index, worker


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []

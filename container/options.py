"""A container worker's ``options`` (Crossbar.io's names plus ours), and its worker item's
keys that have no effect here: checked, then as typed values.

Structure is checked by ``container/schema/component.schema.json``; the few rules a schema
cannot say (policy combinations that can never trigger) are checked here. Every key
Crossbar.io's checker accepts is accepted; what has no effect here is a
:class:`~container.validation.ConfigWarning` that names the key and says why.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from container.components import build_spec
from container.policy import Backoff, RestartLimit, RestartPolicy, ShutdownPolicy
from container.validation import ConfigWarning, Finding, raise_first, schema_problems

__all__ = [
    "ContainerOptions",
    "WatchOptions",
    "container_options_problems",
    "container_options_warnings",
    "container_worker_warnings",
    "parse_container_options",
    "worker_disabled",
]


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


def container_options_problems(options: Any) -> list[Finding]:
    """Every problem with a container ``options`` object: schema, then policy combinations."""
    problems = schema_problems(options, "container_options")
    if problems:
        return problems
    return _policy_combination_problems(options)


def _policy_combination_problems(options: dict[str, Any]) -> list[Finding]:
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
            Finding(
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
    raise_first(container_options_problems(options), "container options")
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
        warnings += [w.under("components", index) for w in build_spec(component).warnings]
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

"""The worker options that act on the process itself, and their check against this machine.

Module search path, environment variables, process title, CPU affinity and the Twisted
reactor: applied once, by the CLI, before anything imports ``twisted.internet.reactor``.
Checked first (:func:`check_on_this_machine`), so a bad value is a usage error with the key
that caused it, not a crash of a running worker.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from container.errors import InvalidConfiguration
from container.options import ContainerOptions
from container.validation import ConfigWarning


def apply_process_options(options: ContainerOptions) -> None:
    """Options that act on this process: module search path, environment, title, CPUs, reactor.

    Call it before anything imports ``twisted.internet.reactor`` (the CLI does), after
    :func:`~container.worker.process.settings_from_arguments` has checked the options
    against this machine (:func:`check_on_this_machine`).
    """
    for entry in reversed(options.pythonpath):
        if entry not in sys.path:
            sys.path.insert(0, os.path.abspath(entry))
    for name, value in options.env.get("vars", {}).items():
        os.environ[name] = value
    if options.title:
        _set_title(options.title)
    if options.cpu_affinity is not None and hasattr(os, "sched_setaffinity"):
        _set_cpu_affinity(options.cpu_affinity)
    reactor_name = options.reactor.get(sys.platform)
    if reactor_name and "twisted.internet.reactor" not in sys.modules:
        _install_reactor(reactor_name)


def _set_title(title: str) -> None:
    import setproctitle

    setproctitle.setproctitle(title)


def _set_cpu_affinity(positions: Sequence[int]) -> None:
    cpus = cpus_at(positions, sorted(os.sched_getaffinity(0)))
    try:
        os.sched_setaffinity(0, cpus)
    except OSError as error:
        raise InvalidConfiguration(
            f"invalid container options: cpu_affinity: cannot run on CPUs {sorted(cpus)}: "
            f"{error.strerror}",
            key="cpu_affinity",
        ) from None


def cpus_at(positions: Sequence[int], available: Sequence[int]) -> set[int]:
    """The CPUs at ``positions`` in the sorted list of CPUs this process may use.

    That is what ``cpu_affinity`` means in Crossbar.io (``set_cpu_affinity(relative=True)``):
    ``[0, 1]`` are the first two CPUs the worker was allowed when it started, a negative
    position counts from the end; an empty list means all of them.
    """
    if not positions:
        return set(available)
    try:
        return {available[position] for position in positions}
    except IndexError:
        bad = [p for p in positions if not -len(available) <= p < len(available)]
        raise InvalidConfiguration(
            f"invalid container options: cpu_affinity: position {bad[0]} is out of range: "
            f"this worker may run on {len(available)} CPU(s) {list(available)}, and each "
            f"entry is a position in that list (0 to {len(available) - 1}, or negative from "
            "the end), as in Crossbar.io",
            key="cpu_affinity",
        ) from None


def _twisted_reactors() -> dict[str, Any]:
    """Twisted's own reactors by short name, without a plugin scan.

    ``twisted.application.reactors.getReactorTypes`` imports every plugin module when the
    plugin cache is stale, and txtorcon's plugin imports (so installs) the default reactor.
    """
    from twisted.application.reactors import Reactor
    from twisted.plugins import twisted_reactors

    found = vars(twisted_reactors).values()
    return {reactor.shortName: reactor for reactor in found if isinstance(reactor, Reactor)}


def _install_reactor(name: str) -> None:
    try:
        _twisted_reactors()[name].install()
    except Exception as error:
        raise InvalidConfiguration(
            f"invalid container options: reactor.{sys.platform}: cannot install the Twisted "
            f"reactor {name!r}: {error}",
            key=f"reactor.{sys.platform}",
        ) from None


def check_on_this_machine(options: ContainerOptions) -> ContainerOptions:
    """The options, checked against this process: CPU positions that exist, a reactor that
    Twisted knows; with a warning for what cannot take effect here."""
    warnings: list[ConfigWarning] = []
    if options.cpu_affinity is not None:
        if hasattr(os, "sched_getaffinity"):
            cpus_at(options.cpu_affinity, sorted(os.sched_getaffinity(0)))
        else:
            warnings.append(ConfigWarning(("cpu_affinity",), (
                f"has no effect: {sys.platform} has no process CPU affinity (Crossbar.io "
                "refuses it there)")))
    warnings += _reactor_warnings(options.reactor.get(sys.platform))
    if not warnings:
        return options
    return replace(options, warnings=(*options.warnings, *warnings))


def _reactor_warnings(name: str | None) -> list[ConfigWarning]:
    """Nothing when the reactor named for this platform can be (or already is) installed."""
    if not name:
        return []
    modules = {short: reactor.moduleName for short, reactor in _twisted_reactors().items()}
    if name not in modules:
        raise InvalidConfiguration(
            f"invalid container options: reactor.{sys.platform}: no Twisted reactor is named "
            f"{name!r} (known: {', '.join(sorted(modules))})",
            key=f"reactor.{sys.platform}",
        )
    installed = sys.modules.get("twisted.internet.reactor")
    if installed is None or type(installed).__module__ == modules[name]:
        return []
    return [ConfigWarning(("reactor", sys.platform), (
        f"has no effect: {name!r} cannot be installed, this process already runs "
        f"{type(installed).__name__} (installed before the options were read)"))]

"""``container check CONFIG [CONFIG...]``: validate node configuration files, start nothing.

A file is OK when :func:`~container.node.config.load_node_config` finds no problem and the
node could also plan it (:func:`~container.node.plan.build_plan` refuses what ``container
run`` would refuse after validation: a realm named like the management realm, no router to
carry it, ...). Exit codes: 0 all valid, 1 some invalid, 2 some unreadable.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Sequence
from pathlib import Path

from container.errors import ConfigFileUnreadable, ExitCode, NodeConfigError, NodePlanError
from container.node.config import NodeConfig, config_warnings, load_node_config
from container.node.plan import build_plan
from container.node.realm import Secrets

__all__ = ["check_main"]


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
    """Check one file, print what a person needs to fix it, and say how it went."""
    try:
        config = load_node_config(file)
    except ConfigFileUnreadable as error:
        print(error)
        return ExitCode.USAGE
    except NodeConfigError as error:
        for problem in error.problems:
            print(problem)
        print(f"{file}: invalid ({_count(len(error.problems), 'problem')})")
        return ExitCode.FAILED
    refused = _plan_problem(config)
    if refused is not None:
        print(f"{file}: {refused}")
        print(f"{file}: invalid (1 problem)")
        return ExitCode.FAILED
    for warning in config_warnings(config):
        print(f"{file}: warning: {warning}")
    print(f"{file}: OK ({_summary(config)})")
    return ExitCode.OK


def _plan_problem(config: NodeConfig) -> str | None:
    """What ``container run`` would refuse after validation, or None. The plan is made with
    stand-in secrets and a run directory that is never created: nothing is written."""
    run_dir = Path(tempfile.gettempdir()) / "container-check" / "run"
    secrets = Secrets.fixed("check", [worker.id for worker in config.containers])
    try:
        build_plan(config, run_dir, secrets)
    except NodePlanError as error:
        return str(error)
    return None


def _summary(config: NodeConfig) -> str:
    """What the node would run; proxies, guests and components inside routers are named only
    when there are some, so the line of a plain router-and-containers node reads as it always
    did."""
    proxies = sum(worker.type == "proxy" for worker in config.routers)
    embedded = sum(len(worker.config.get("components") or ()) for worker in config.routers)
    parts = [
        _count(len(config.routers) - proxies, "router"),
        _count(embedded, "router component") if embedded else "",
        _count(proxies, "proxy", "proxies") if proxies else "",
        _count(len(config.containers), "container"),
        _count(len(config.guests), "guest") if config.guests else "",
        _count(config.component_count, "component"),
    ]
    return ", ".join(part for part in parts if part)


def _count(number: int, noun: str, plural: str = "") -> str:
    return f"{number} {noun if number == 1 else plural or noun + 's'}"

"""``container run CONFIG``: one command brings up a whole node.

Before anything runs, :func:`main` validates the configuration (nothing starts if it is
invalid), takes the node's lock (a second node of the same file is refused), creates the
private run directory, draws this run's secrets, plans the node, and binds every router's
listeners (a port in use is reported before anything runs). Then it hands a
:class:`~container.node.controller.Node` to the reactor it was given.

SIGTERM, SIGINT or SIGHUP stop the node in order; a second signal kills what is left. A
signal that arrives before the reactor runs is remembered and acted on as soon as there is
something to stop, instead of the default handler killing the node half-way through its
start. What ``container ctl --config CONFIG`` needs is in the run directory's ``ctl.json``
(:mod:`container.node.rundir`), removed on exit.

:func:`main` does not run the reactor: it returns an exit code when there is nothing to
run, or the Deferred that fires with the exit code once the node has stopped, and
:mod:`container.cli` runs the global reactor until then.
"""

from __future__ import annotations

import argparse
import secrets
import signal
import socket
import sys
import time
from typing import Any, cast

from twisted.internet.defer import Deferred

from container.errors import (
    ConfigFileUnreadable,
    ExitCode,
    InvalidConfiguration,
    NodeConfigError,
    NodePlanError,
)
from container.node.config import NodeConfig, config_warnings, load_node_config
from container.node.controller import Node
from container.node.guest import guest_launches
from container.node.output import NodeOutput
from container.node.plan import NodePlan, build_plan
from container.node.readiness import NodeSettings
from container.node.realm import Secrets
from container.node.rundir import (
    lock_node,
    management_socket,
    prepare_run_dir,
    prepare_socket_dir,
    remove_node_files,
    remove_run_dir,
    run_dir_for,
)
from container.router.listeners import MANAGEMENT_FD_NAME, bind_listeners, close_listeners

__all__ = ["STOP_SIGNALS", "draw_secrets", "main"]

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

Sockets = dict[str, dict[str, socket.socket]]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="container run",
        description="Run a node from a configuration file (Crossbar.io's format): routers, "
                    "container workers and their components; stop with Ctrl-C or SIGTERM.",
    )
    parser.add_argument("config", metavar="CONFIG", help="node configuration file (JSON)")
    parser.add_argument("--log-format", choices=("text", "json"), default="text",
                        help="lifecycle events as readable lines (default) or JSON lines")
    parser.add_argument("--loglevel", default="info",
                        choices=("critical", "error", "warn", "info", "debug", "trace"),
                        help="log level of the container workers (default info)")
    parser.add_argument("--router-loglevel", default="warn",
                        choices=("none", "critical", "error", "warn", "info", "debug", "trace"),
                        help="log level of the routers (default warn)")
    parser.add_argument("--start-timeout", type=float, default=60.0, metavar="SECONDS",
                        help="give up if the configuration is not up after this long "
                             "(default 60)")
    parser.add_argument("--no-progress", action="store_true",
                        help="plain lines even on a terminal")
    return parser


class _EarlySignals:
    """SIGTERM, SIGINT or SIGHUP before the reactor runs: remembered, and acted on (a clean
    stop, exit 0) as soon as there is something to stop, instead of the default handler
    killing the node half-way through its start."""

    def __init__(self) -> None:
        self.received: int | None = None
        for signum in STOP_SIGNALS:
            signal.signal(signum, self)

    def __call__(self, signum: int, frame: Any) -> None:
        self.received = self.received or signum


def main(argv: list[str], reactor: Any) -> int | Deferred[int]:
    """``container run CONFIG``: 1 at once if the node cannot be brought up (2 on bad
    arguments, 0 for a signal before the start); otherwise the node runs on ``reactor`` and
    the Deferred returned fires with 0 after a clean stop, 1 after a failure."""
    launched = time.monotonic()
    early = _EarlySignals()
    args = _parser().parse_args(argv)
    settings = NodeSettings(start_timeout=args.start_timeout, launched=launched)
    output = NodeOutput(json_lines=args.log_format == "json",
                        progress=False if args.no_progress else None)
    plan = _plan(args, output)
    if plan is None:
        return ExitCode.FAILED
    try:
        guests = guest_launches(plan.config)
    except InvalidConfiguration as error:
        remove_node_files(plan)
        output.error(str(error))
        return ExitCode.FAILED
    sockets = _bind(plan, output)
    if sockets is None:
        remove_node_files(plan)
        return ExitCode.FAILED
    if early.received is not None:
        close_listeners(sockets)
        remove_node_files(plan)
        name = signal.Signals(early.received).name
        output.node_event("stopped", f"received {name} before the start: exit status 0",
                          code=int(ExitCode.OK))
        return ExitCode.OK
    return _serve(reactor, Node(reactor, plan, output, settings, sockets, guests), early)


def _plan(args: argparse.Namespace, output: NodeOutput) -> NodePlan | None:
    """Validate, lock and plan; on any problem print it and return None before starting
    anything (and leave no file behind)."""
    config = _valid_config(args.config, output)
    if config is None:
        return None
    for warning in config_warnings(config):
        print(f"container run: warning: {warning}", file=sys.stderr)
    run_dir = run_dir_for(config)
    try:
        lock_node(config.path, run_dir)  # held until the process ends
    except (NodePlanError, OSError) as error:  # another node runs it: leave its files alone
        output.error(str(error))
        return None
    socket_path, socket_dir = management_socket(run_dir)
    try:
        prepare_run_dir(run_dir)
        plan = build_plan(config, run_dir, draw_secrets(config), socket=socket_path,
                          socket_dir=socket_dir, loglevel=args.loglevel,
                          router_loglevel=args.router_loglevel)
        if plan.management.socket_dir is not None:
            prepare_socket_dir(plan.management.socket_dir)
    except (NodePlanError, OSError) as error:
        remove_run_dir(run_dir)
        output.error(str(error))
        return None
    return plan


def _valid_config(file: str, output: NodeOutput) -> NodeConfig | None:
    """The configuration, or None after printing every problem of it."""
    try:
        config = load_node_config(file, crossbar=False)
        if not config.routers and config.management is not None:
            # no router child of ours will run Crossbar.io's checker: run it here
            config = load_node_config(file)
    except NodeConfigError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        output.error(f"{file}: invalid configuration ({len(error.problems)} problem(s)); "
                     "nothing was started")
        return None
    except ConfigFileUnreadable as error:
        output.error(str(error))
        return None
    return config


def draw_secrets(config: NodeConfig) -> Secrets:
    """This run's fresh secrets for the embedded management realm (a new role name and a
    ticket for every principal), so nothing of a previous run gets in."""

    def token() -> str:
        return secrets.token_urlsafe(32)

    workers = {worker.id: token() for worker in config.containers}
    return Secrets(role=secrets.token_hex(8), node=token(), ctl=token(), workers=workers)


def _bind(plan: NodePlan, output: NodeOutput) -> Sockets | None:
    """Bind every router's listeners now: a port in use is reported before anything runs,
    ``port: 0`` gets its real port, and the routers' restarts reuse the same sockets."""
    bound: Sockets = {}
    for router in plan.routers:
        try:
            bound[router.id] = bind_listeners(router.config, str(plan.config.config_dir))
            if router.management_config is not None:
                [management] = bind_listeners(router.management_config, "/").values()
                bound[router.id][MANAGEMENT_FD_NAME] = management
        except InvalidConfiguration as error:
            close_listeners(bound)
            output.error(f"{router.type} '{router.id}': {error}")
            return None
    return bound


def _log_warnings() -> None:
    """Twisted's and autobahn's warnings and errors (an unhandled failure, a protocol error)
    go to stderr; stdout stays ours (no redirection of standard I/O)."""
    from twisted.logger import (
        FilteringLogObserver,
        ILogFilterPredicate,
        ILogObserver,
        LogLevel,
        LogLevelFilterPredicate,
        globalLogBeginner,
        textFileLogObserver,
    )

    # casts: the classes implement these zope interfaces, which mypy sees only with a plugin
    text = cast(ILogObserver, textFileLogObserver(sys.stderr))
    warnings = cast(ILogFilterPredicate, LogLevelFilterPredicate(LogLevel.warn))
    observer = cast(ILogObserver, FilteringLogObserver(text, [warnings]))
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)


def _serve(reactor: Any, node: Node, early: _EarlySignals) -> Deferred[int]:
    """Start ``node`` once ``reactor`` runs, with our signal handlers installed after
    Twisted's own (it keeps SIGCHLD for the children); the node's ``done`` is returned."""
    _log_warnings()

    def on_signal(signum: int, frame: Any) -> None:
        reactor.callFromThread(node.signalled, signum)

    def install_signals() -> None:
        for signum in STOP_SIGNALS:
            signal.signal(signum, on_signal)
        if early.received is not None:
            node.signalled(early.received)

    reactor.callWhenRunning(install_signals)
    reactor.callWhenRunning(node.start)
    return node.done


"""``container ctl``: call the management API of running container workers and follow their events.

This module parses the command line and runs one command on the reactor it is given
(``container.cli`` passes it in). Where the realm is and which workers are meant is in
:mod:`~container.ctl.target`, the commands in :mod:`~container.ctl.commands` and
:mod:`~container.ctl.watch`, and how results read in :mod:`~container.ctl.output`.

Exit codes: 0 done, 1 the API refused (one ``error: URI: message`` line) or the management
realm could not be reached, 2 usage errors, 128+N interrupted by signal N (``watch`` exits 0).
"""

from __future__ import annotations

import argparse
import signal
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from container.ctl.commands import prepare_command, run
from container.ctl.output import Output, describe_error
from container.ctl.target import Target, add_connection_options, resolve_target
from container.ctl.watch import watch
from container.deferreds import share
from container.errors import CtlError, ExitCode

# given the Deferred that fires (with the signal number) on SIGINT/SIGTERM: the exit code
Work = Callable[[Deferred[int]], Deferred[int]]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="container ctl",
        description="Call the management API of container workers and follow their events. "
                    "Give --config CONFIG (a node started with `container run CONFIG`) or "
                    "--management URL; the options may also follow the command.",
        epilog="Exit codes: 0 done, 1 the API refused or the management realm is unreachable, "
               "2 usage.",
    )
    add_connection_options(parser, after_command=False)
    common = argparse.ArgumentParser(add_help=False)
    add_connection_options(common, after_command=True)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("list", parents=[common],
                        help="every worker and component: state, uptime, restarts, last error")
    commands.add_parser("status", parents=[common], help="each worker's status and policies")
    start = commands.add_parser("start", parents=[common],
                                help="start a component from a JSON file holding its config")
    _component_arguments(start)
    start.add_argument("file", metavar="COMPONENT_CONFIG_FILE")
    start.add_argument("--reload", action="store_true",
                       help="reload changed user modules before starting")
    _component_arguments(commands.add_parser("stop", parents=[common], help="stop a component"))
    restart = commands.add_parser("restart", parents=[common],
                                  help="restart a component with the same configuration")
    _component_arguments(restart)
    restart.add_argument("--reload", action="store_true",
                         help="reload changed user modules before starting again")
    shutdown = commands.add_parser("shutdown", parents=[common],
                                   help="stop every component of a worker; the worker exits")
    shutdown.add_argument("worker", metavar="WORKER")
    watch_parser = commands.add_parser(
        "watch", parents=[common],
        help="print lifecycle events as they happen, until Ctrl-C or SIGTERM")
    watch_parser.add_argument(
        "--reconnect-for", type=float, default=60.0, metavar="SECONDS",
        help="when the management connection is lost, try to join again for this long "
             "(default 60; 0 exits at once)")
    return parser


def _component_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("worker", metavar="WORKER")
    parser.add_argument("component_id", metavar="ID")


def main(rest: list[str], reactor: Any) -> int | Deferred[int]:
    """``container ctl ARGS...``: the exit code, or a Deferred of it once the command has
    run on ``reactor`` (which the caller runs).

    Usage errors and local files (a component file, the node's ctl file) are dealt with
    before the reactor starts, so they need no connection.
    """
    parser = build_parser()
    try:
        arguments = parser.parse_args(rest)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else ExitCode.USAGE
    out = Output(as_json=arguments.json)
    try:
        target = resolve_target(parser, arguments)
        work = _work(arguments, reactor, target, out)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else ExitCode.USAGE
    except CtlError as error:
        out.error(str(error))
        return error.exit_code
    return _serve(reactor, work, out)


def _work(arguments: argparse.Namespace, reactor: Any, target: Target, out: Output) -> Work:
    if arguments.command == "watch":
        reconnect_for = float(arguments.reconnect_for)
        return lambda until: Deferred.fromCoroutine(
            watch(reactor, target, out, until, reconnect_for))
    command = prepare_command(arguments)
    return lambda until: _interruptible(
        Deferred.fromCoroutine(run(reactor, target, command, out)), until, out)


def _interruptible(work: Deferred[int], until: Deferred[int], out: Output) -> Deferred[int]:
    """``work``'s exit code, or 128+signal if ``until`` fires first (cancelling ``work``)."""

    def crashed(failure: Failure) -> int:
        if not isinstance(failure.value, defer.CancelledError):  # cancelled: interrupted
            out.error(describe_error(_error(failure)))
        return ExitCode.FAILED

    async def race() -> int:
        which, value = await defer.race([work.addErrback(crashed), share(until)])
        if which == 1:
            out.note("interrupted")
            return 128 + int(value)
        return int(value)

    return Deferred.fromCoroutine(race())


def _serve(reactor: Any, work: Work, out: Output) -> Deferred[int]:
    """The exit code of ``work``, started once ``reactor`` runs. SIGINT and SIGTERM fire its
    ``until``, also over the reactor's own handlers (which would just stop it)."""
    done: Deferred[int] = Deferred()
    interrupted: Deferred[int] = Deferred()

    def interrupt(signum: int) -> None:
        if not interrupted.called:
            interrupted.callback(signum)

    def on_signal(signum: int, frame: Any) -> None:
        reactor.callFromThread(interrupt, signum)

    def crashed(failure: Failure) -> int:  # a bug: said as one line, as any other failure
        out.error(describe_error(_error(failure)))
        return ExitCode.FAILED

    def install_signals() -> None:
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    def begin() -> None:
        install_signals()  # again: the reactor has just set its own
        work(interrupted).addErrback(crashed).chainDeferred(done)

    install_signals()  # a signal before the reactor runs is acted on once it does
    reactor.callWhenRunning(begin)
    return done


def _error(failure: Failure) -> BaseException:
    return failure.value or Exception(failure.getErrorMessage())

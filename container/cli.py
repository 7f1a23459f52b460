"""The ``container`` command: argument parsing and logging set-up.

This is the only module that touches the global reactor. Subcommands import what they need
when they run, so ``container worker`` never imports Crossbar.io and ``container check``
starts no reactor at all.
"""

from __future__ import annotations

import argparse
import gc
import os
import signal
import sys
from typing import TYPE_CHECKING, Any

from container.errors import ExitCode

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred


def _worker_parser(commands: Any) -> None:
    worker = commands.add_parser(
        "worker",
        help="run one container worker process (normally spawned by `container run`)",
        description="Join a management realm and host WAMP components managed through it.",
    )
    worker.add_argument("--management", required=True, metavar="URL",
                        help="management router: ws://HOST:PORT/PATH, wss://..., "
                             "rs://HOST:PORT (RawSocket over TCP) or unix:/PATH (RawSocket)")
    worker.add_argument("--realm", default="crossbar", help="management realm (default crossbar)")
    worker.add_argument("--id", required=True, dest="worker_id", help="worker id")
    worker.add_argument("--prefix", default="",
                        help="URI prefix of the management API (default crossbar.worker.ID)")
    worker.add_argument("--options", default=None, metavar="JSON",
                        help="the container worker's `options` object, as in a node config")
    worker.add_argument("--options-file", default=None, metavar="PATH",
                        help="read the `options` object from this JSON file instead (keeps "
                             "secrets such as env.vars off the command line)")
    worker.add_argument("--authid", default=None, help="authenticate to the management realm as")
    worker.add_argument("--authmethod", choices=("ticket", "wampcra"), default="ticket")
    worker.add_argument("--secret-env", default="CONTAINER_MANAGEMENT_SECRET", metavar="VAR",
                        help="environment variable holding the secret (default "
                             "CONTAINER_MANAGEMENT_SECRET)")
    worker.add_argument("--secret-file", default=None, metavar="PATH",
                        help="file holding the secret (first line)")
    worker.add_argument("--state-file", default=None, metavar="PATH",
                        help="checkpoint the component set here and resume it on start")
    worker.add_argument("--serializer", choices=("cbor", "msgpack", "json"), default="cbor")
    worker.add_argument("--loglevel", default="info",
                        choices=("critical", "error", "warn", "info", "debug", "trace"))


PASS_THROUGH = {
    "router": "run an embedded Crossbar.io router from a router worker configuration",
    "check": "validate node configuration files",
    "run": "run a node from a configuration file",
    "ctl": "talk to a running node's management API",
}


def _other_parsers(commands: Any) -> None:
    """Subcommands that parse their own arguments (their modules load only when used)."""
    for name, summary in PASS_THROUGH.items():
        parser = commands.add_parser(name, help=summary, add_help=False)
        parser.add_argument("rest", nargs=argparse.REMAINDER)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="container", description="wamp-container: host and manage WAMP components."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    _worker_parser(commands)
    _other_parsers(commands)
    return parser


def _read_secret(arguments: argparse.Namespace) -> str | None:
    if arguments.secret_file:
        with open(arguments.secret_file, encoding="utf-8") as handle:
            return handle.readline().rstrip("\n")
    return os.environ.get(arguments.secret_env)


def run_worker(arguments: argparse.Namespace) -> int:
    import txaio

    from container.errors import InvalidConfiguration
    from container.management import Credentials
    from container.worker.os_options import apply_process_options
    from container.worker.process import settings_from_arguments

    txaio.use_twisted()
    credentials = None
    if arguments.authid:
        secret = _read_secret(arguments)
        if secret is None:
            print(f"container worker: error: --authid given but no secret in --secret-file or "
                  f"${arguments.secret_env}", file=sys.stderr)
            return ExitCode.USAGE
        credentials = Credentials(arguments.authid, arguments.authmethod, secret)
    try:
        settings = settings_from_arguments(
            arguments.worker_id, arguments.management, arguments.realm, arguments.prefix,
            _options_text(arguments), credentials, arguments.state_file, arguments.serializer,
        )
    except InvalidConfiguration as error:
        print(f"container worker: error: {error}", file=sys.stderr)
        return ExitCode.USAGE
    if settings.state_file is not None:
        from container.errors import CheckpointError
        from container.worker.checkpoint import check_writable

        try:
            check_writable(settings.state_file)
        except CheckpointError as error:
            print(f"container worker: error: --state-file {settings.state_file}: {error}",
                  file=sys.stderr)
            return ExitCode.USAGE
    try:
        apply_process_options(settings.options)
    except (InvalidConfiguration, OSError, ImportError) as error:
        print(f"container worker: error: cannot apply the worker options: {error}",
              file=sys.stderr)
        return ExitCode.USAGE
    txaio.start_logging(out=sys.stderr, level=arguments.loglevel)
    return _serve_worker(settings)


def _options_text(arguments: argparse.Namespace) -> str | None:
    """The options JSON, from ``--options-file`` or ``--options``."""
    from container.errors import InvalidConfiguration

    if arguments.options_file is None:
        options: str | None = arguments.options
        return options
    try:
        with open(arguments.options_file, encoding="utf-8") as file:
            return file.read()
    except OSError as error:
        raise InvalidConfiguration(
            f"--options-file {arguments.options_file}: cannot read: {error.strerror}") from None


def _serve_worker(settings: Any) -> int:
    from twisted.internet import reactor as global_reactor

    from container.worker.process import Worker

    reactor: Any = global_reactor  # the one place that runs it
    worker = Worker(reactor, settings)
    _freeze_startup_objects()

    def on_signal(signum: int, frame: Any) -> None:
        reactor.callFromThread(_shut_down_worker, worker, signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    worker.done.addBoth(lambda _: reactor.callLater(0, reactor.stop))
    reactor.callWhenRunning(worker.start)
    reactor.run(installSignalHandlers=False)
    return worker.exit_code if worker.exit_code is not None else ExitCode.OK


def _shut_down_worker(worker: Any, signal_name: str) -> None:
    """A signal asked the worker to stop: shut it down, and log it if that fails (nobody
    else waits for this shutdown)."""
    import txaio
    from twisted.internet.defer import Deferred

    from container.deferreds import log_failure

    shutting_down = Deferred.fromCoroutine(worker.shutdown("signal"))
    log_failure(shutting_down, txaio.make_logger(),
                "worker {worker}: shutting down on {signal}",
                worker=worker.settings.worker_id, signal=signal_name)


def _freeze_startup_objects() -> None:
    """Move everything imported so far out of the garbage collector's reach.

    The worker imports Twisted, autobahn and its serializers: a great many long-lived
    objects that every full collection would traverse again while components start (what
    that cost is in docs/benchmarks.md).
    """
    gc.collect()
    gc.freeze()


def _run_until_done(reactor: Any, outcome: int | Deferred[int]) -> int:
    """Run the global reactor until ``outcome`` fires with the exit code (an int: there is
    nothing to run)."""
    from container.errors import ExitCode

    if isinstance(outcome, int):
        return outcome
    codes: list[int] = []
    outcome.addCallback(codes.append)
    outcome.addBoth(lambda _: reactor.callLater(0, reactor.stop))
    reactor.run()
    return codes[0] if codes else ExitCode.FAILED


def _dispatch(command: str, rest: list[str]) -> int:
    if command == "router":
        from twisted.internet import reactor

        from container.router.main import main as router_main

        return _run_until_done(reactor, router_main(rest, reactor))
    if command == "check":
        from container.node.check import check_main

        return check_main(rest)
    if command == "run":
        from twisted.internet import reactor

        from container.node.main import main as node_main

        return _run_until_done(reactor, node_main(rest, reactor))
    from twisted.internet import reactor

    from container.ctl.main import main as ctl_main

    return _run_until_done(reactor, ctl_main(rest, reactor))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in PASS_THROUGH:
        return _dispatch(argv[0], argv[1:])
    arguments = build_parser().parse_args(argv)
    return run_worker(arguments)


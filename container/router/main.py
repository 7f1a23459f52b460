"""``python -m container.router WORKER.json``: one Crossbar.io router or proxy worker process.

``WORKER.json`` holds one worker item of a node configuration (``"type": "router"`` or
``"proxy"``), with its transport ids set. The process imports Crossbar.io, brings the worker
up with :class:`~container.router.host.WorkerHost`, and prints one JSON line to stdout when
every transport listens::

    {"event": "ready", "pid": 1234, "transports": [{"id": ..., "type": ..., "endpoint": ...}]}

It then serves until SIGTERM, which makes the worker leave (its transports close, its
embedded components leave their realms) and the process exit 0. SIGINT is ignored, as by
Crossbar.io's own workers: the node stops its children in order. A configuration the worker
refuses ends the process with status 2 and one line ``container router: error: ...`` on
stderr, naming what Crossbar.io said.

``--listen-fd ID=FD`` hands the worker a socket the node bound already
(:mod:`container.router.listeners`): Crossbar.io's endpoint factory is wrapped so that the
transport with that endpoint adopts the socket instead of binding one.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import os
import signal
import socket
import sys
from collections.abc import Iterator, Mapping
from typing import Any, TextIO

import txaio
from twisted.internet.defer import Deferred, DeferredList, succeed

from container.router.listeners import MANAGEMENT_FD_NAME, bindable, endpoint_key

__all__ = ["EXIT_CANNOT_SERVE", "main"]

#: Exit status when the worker cannot be brought up as configured.
EXIT_CANNOT_SERVE = 2
#: How long a SIGTERM'd worker may take to leave before the process exits anyway.
STOP_TIMEOUT = 10.0

txaio.use_twisted()
log = txaio.make_logger()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="container router",
        description="Run one Crossbar.io router or proxy worker from its configuration; print "
                    "one JSON 'ready' line when it listens; stop on SIGTERM.",
    )
    parser.add_argument("config", help="JSON file holding one router or proxy worker item")
    parser.add_argument("--cbdir", help="node directory: relative paths, the node key "
                                        "(default: the folder of CONFIG)")
    parser.add_argument("--key-dir", help="where the node key is read or generated "
                                          "(default: the node directory)")
    parser.add_argument("--node-id", default="node", help="the node's id (default 'node')")
    parser.add_argument(
        "--loglevel", default=os.environ.get("CONTAINER_ROUTER_LOGLEVEL", "warn"),
        choices=["none", "critical", "error", "warn", "info", "debug", "trace"],
        help="log level on stderr (default: warn, or $CONTAINER_ROUTER_LOGLEVEL)",
    )
    parser.add_argument("--check-node", metavar="NODE_CONFIG",
                        help="first check this node configuration with Crossbar.io's checker; "
                             "if it is refused, print an 'invalid' line and exit 2")
    parser.add_argument("--management", metavar="MANAGEMENT.json",
                        help="also host the node's management router from this worker item, "
                             "beside the first one (its node key in the folder of that file)")
    parser.add_argument("--listen-fd", action="append", default=[], metavar="ID=FD",
                        help="serve transport ID on the inherited listening socket FD")
    return parser


def main(argv: list[str] | None, reactor: Any) -> int | Deferred[int]:
    """Serve until SIGTERM: 0 after a clean stop, 2 when the worker cannot be brought up.

    Returns the exit code at once when nothing can be served, else a Deferred of it that
    fires once the reactor (run by the CLI) may stop."""
    args = _parser().parse_args(argv)
    err = sys.stderr
    try:
        workers = [_load(args.config)]
        if args.management:
            workers.append(_load(args.management))
        sockets = _inherited_sockets(args.listen_fd)
    except ValueError as error:
        return _fail(str(error), err)
    out = sys.stdout  # txaio's log beginner replaces sys.stdout: keep the real one
    txaio.start_logging(out=err, level="critical" if args.loglevel == "none" else args.loglevel)
    cbdir = os.path.abspath(args.cbdir or os.path.dirname(os.path.abspath(args.config)))
    _import_crossbar()
    if args.check_node and not _node_config_valid(args.check_node, out, err):
        return EXIT_CANNOT_SERVE
    management_socket = sockets.pop(MANAGEMENT_FD_NAME, None)
    _adopt_sockets(workers[0], sockets, cbdir)
    if args.management and management_socket is not None:
        _adopt_sockets(workers[1], {"management": management_socket}, cbdir)
    # the imported heap is permanent: keep the cyclic collector off it
    gc.freeze()
    done: Deferred[int] = Deferred()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    reactor.callWhenRunning(_run, reactor, workers, args, cbdir, out, err, done)
    return done


def _run(
    reactor: Any,
    workers: list[dict[str, Any]],
    args: argparse.Namespace,
    cbdir: str,
    out: TextIO,
    err: TextIO,
    done: Deferred[int],
) -> None:
    from container.router.host import WorkerHost

    key_dirs = [args.key_dir, os.path.dirname(os.path.abspath(args.management or "."))]
    try:
        hosts = [WorkerHost(reactor, worker, node_id=args.node_id, cbdir=cbdir,
                            key_dir=key_dir, loglevel=args.loglevel)
                 for worker, key_dir in zip(workers, key_dirs, strict=False)]
    except Exception as error:  # the node key could not be read or written, ...
        done.callback(_fail(f"cannot set up the worker: {error}", err))
        return

    def ready(_: Any) -> None:
        _stop_on_sigterm(reactor, hosts, done)
        transports = [transport for host in hosts for transport in host.listening()]
        line = {"event": "ready", "pid": os.getpid(), "transports": transports}
        out.write(json.dumps(line) + "\n")
        out.flush()

    def failed(failure: Any) -> None:
        done.callback(_fail(_reason(failure.value, last_failure), err))

    last_failure = _LastFailure()
    starts = [Deferred.fromCoroutine(host.start()) for host in hosts]
    started = DeferredList(starts, fireOnOneErrback=True, consumeErrors=True)
    started.addCallbacks(ready, lambda failure: failed(failure.value.subFailure))


def _node_config_valid(path: str, out: TextIO, err: TextIO) -> bool:
    """Crossbar.io's verdict on the node configuration, before anything is served: problems
    go to stdout as one ``invalid`` line (key paths; the node turns them into positions)."""
    from container.router.check import crossbar_findings

    try:
        with open(path, encoding="utf-8-sig") as file:
            document = json.load(file)
    except (OSError, ValueError) as error:
        _fail(f"{path}: cannot read the node configuration: {error}", err)
        return False
    findings = crossbar_findings(document)
    if findings:
        problems = [{"path": list(key_path), "message": message} for key_path, message in findings]
        out.write(json.dumps({"event": "invalid", "problems": problems}) + "\n")
        out.flush()
    return not findings


def _stop_on_sigterm(reactor: Any, hosts: list[Any], done: Deferred[int]) -> None:
    """SIGTERM: the workers leave (bounded), then ``done`` fires with 0. Installed after the
    workers joined, replacing the handler Crossbar.io's worker installs there."""

    async def leave_all() -> None:
        await DeferredList([Deferred.fromCoroutine(host.stop()) for host in hosts],
                           consumeErrors=True)

    def stop() -> None:
        reactor.callLater(STOP_TIMEOUT, _exit_now)
        left = Deferred.fromCoroutine(leave_all())
        left.addErrback(lambda f: log.warn("worker stop: {err}", err=f.getErrorMessage()))
        left.addBoth(lambda _: None if done.called else done.callback(0))

    signal.signal(signal.SIGTERM, lambda signum, frame: reactor.callFromThread(stop))


def _exit_now() -> None:
    log.warn("the worker did not stop within {t} s: exiting", t=STOP_TIMEOUT)
    os._exit(0)


class _LastFailure:
    """Remembers the last failure Crossbar.io logged: some of its errors (``cannot_listen``)
    carry the log format ``{log_failure}`` as their message instead of the cause."""

    def __init__(self) -> None:
        from twisted.logger import globalLogPublisher

        self.text = ""
        globalLogPublisher.addObserver(self)  # type: ignore[arg-type]  # a callable observer

    def __call__(self, event: dict[str, Any]) -> None:
        failure = event.get("log_failure")
        if failure is not None:
            self.text = failure.getErrorMessage()


def _reason(error: BaseException, last: _LastFailure) -> str:
    """What Crossbar.io said, without Python's wrapping."""
    from autobahn.wamp.exception import ApplicationError

    if isinstance(error, ApplicationError):
        message = str(error.args[0]) if error.args else ""
        message = message.replace("{log_failure}", last.text or "see the log")
        return f"{error.error}: {message}" if message else str(error.error)
    return str(error) or type(error).__name__


def _load(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as file:
            worker = json.load(file)
    except OSError as error:
        raise ValueError(f"{path}: cannot read: {error.strerror}") from None
    except json.JSONDecodeError as error:
        where = f"{path}:{error.lineno}:{error.colno}"
        raise ValueError(f"{where}: invalid JSON: {error.msg}") from None
    if not isinstance(worker, dict) or worker.get("type") not in ("router", "proxy"):
        raise ValueError(f"{path}: not a router or proxy worker item")
    worker.setdefault("id", "worker001")
    return worker


def _inherited_sockets(specs: list[str]) -> dict[str, socket.socket]:
    """``--listen-fd ID=FD`` values -> sockets (family and type are read from the fd)."""
    sockets: dict[str, socket.socket] = {}
    for item in specs:
        transport_id, _, fd = item.partition("=")
        if not transport_id or not fd.isdigit():
            raise ValueError(f"--listen-fd {item!r}: expected ID=FD")
        try:
            sockets[transport_id] = socket.socket(fileno=int(fd))
        except OSError as error:
            raise ValueError(f"--listen-fd {item!r}: {error.strerror}") from None
    return sockets


def _adopt_sockets(
    worker: Mapping[str, Any], sockets: Mapping[str, socket.socket], cbdir: str
) -> None:
    """Make Crossbar.io's listening-endpoint factory hand out the inherited sockets.

    Each socket is taken once, by the transport whose endpoint it was bound for; a transport
    started again later (through the management API) binds afresh.
    """
    if not sockets:
        return
    from crossbar.common.twisted import endpoint as crossbar_endpoint

    waiting: dict[tuple[str, Any], socket.socket] = {}
    for transport in worker.get("transports", []):
        sock = sockets.get(str(transport.get("id")))
        if sock is not None:
            waiting[endpoint_key(transport["endpoint"], cbdir)] = sock
    original = crossbar_endpoint.create_listening_endpoint_from_config

    def create(config: Any, base: Any, reactor: Any, logger: Any) -> Any:
        key = endpoint_key(config, base) if bindable(config) else None
        sock = waiting.pop(key, None) if key is not None else None
        if sock is None:
            return original(config, base, reactor, logger)
        return _AdoptedEndpoint(reactor, sock)

    crossbar_endpoint.create_listening_endpoint_from_config = create


class _AdoptedEndpoint:
    """A stream server endpoint serving a socket that is already listening."""

    def __init__(self, reactor: Any, sock: socket.socket) -> None:
        self.reactor = reactor
        self.sock = sock

    def listen(self, factory: Any) -> Deferred[Any]:
        port = self.reactor.adoptStreamPort(self.sock.fileno(), self.sock.family, factory)
        self.sock.close()  # Twisted holds its own duplicate of the descriptor
        return succeed(port)


@contextlib.contextmanager
def _quiet_numpy_abi_notice() -> Iterator[None]:
    """Keep bjdata's "compiled using NumPy 1.x" notice (printed when autobahn's optional
    UBJSON serializer is imported) out of stderr; pass anything else through."""
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            yield
    finally:
        text = captured.getvalue()
        if text and "compiled using NumPy 1.x" not in text:
            sys.stderr.write(text)


def _import_crossbar() -> None:
    """Import Crossbar.io's personality (and with it every worker and web service class) with
    the cyclic collector paused: the import allocates a large, permanent heap."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        with _quiet_numpy_abi_notice():
            import autobahn.wamp.serializer  # noqa: F401
            import crossbar.personality  # noqa: F401
    finally:
        if enabled:
            gc.enable()


def _fail(message: str, err: TextIO) -> int:
    err.write(f"container router: error: {message}\n")
    err.flush()
    return EXIT_CANNOT_SERVE

"""Which management realm and which workers ``container ctl`` talks to, and joining it.

Two ways to say where the management realm is:

- ``--config CONFIG``: the node running that configuration wrote everything ctl needs
  (address, realm, credentials, its workers) to ``<config dir>/.container-run/<stem>/ctl.json``;
- ``--management URL --realm REALM`` with optional credentials: any management realm; the
  workers are named with ``--worker`` or discovered through the WAMP meta API.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autobahn.wamp.exception import ApplicationError
from twisted.internet import defer

from container.ctl.output import error_message
from container.errors import CtlError, InvalidConfiguration
from container.files import process_exists
from container.management import (
    CTL_FILE,
    DEFAULT_SECRET_ENV,
    RUN_FOLDER,
    WORKER_PREFIX_ROOT,
    Credentials,
    ManagementAddress,
    parse_management_url,
    worker_prefix,
)
from container.management.client import ManagementClient, connect_management

DEFAULT_REALM = "crossbar"

# a worker's management API, found through the meta API by one of its procedures
_WORKER_PROCEDURE = re.compile(
    rf"^{re.escape(WORKER_PREFIX_ROOT)}(?P<id>.+)\.get_components$")


@dataclass(frozen=True)
class WorkerRef:
    """A container worker: its id and the URI prefix of its management API."""

    id: str
    prefix: str

    @classmethod
    def default(cls, worker_id: str) -> WorkerRef:
        return cls(worker_id, worker_prefix(worker_id))


@dataclass(frozen=True)
class Target:
    """Where the management realm is, how to join it, and which workers to talk to.

    ``workers`` is ``None`` when they are to be discovered through the meta API; ``chosen``
    tells whether the user named them (``--worker``) rather than a ctl file listing them.
    """

    address: ManagementAddress
    realm: str
    credentials: Credentials | None
    workers: tuple[WorkerRef, ...] | None = None
    chosen: bool = False

    def worker(self, worker_id: str) -> WorkerRef:
        """The worker with this id: as listed (custom prefixes included), else the default."""
        for worker in self.workers or ():
            if worker.id == worker_id:
                return worker
        return WorkerRef.default(worker_id)

    def watch_prefixes(self) -> list[str]:
        """Topic prefixes that cover the chosen workers (or every worker, and later ones)."""
        if self.chosen and self.workers:
            prefixes = [f"{worker.prefix}." for worker in self.workers]
        else:
            prefixes = [WORKER_PREFIX_ROOT, *(f"{w.prefix}." for w in self.workers or ())]
        unique: list[str] = []
        for prefix in sorted(set(prefixes), key=len):
            if not any(prefix.startswith(shorter) for shorter in unique):
                unique.append(prefix)
        return unique


# -- the node's ctl file -----------------------------------------------------------------------


def ctl_file_path(config: str | os.PathLike[str]) -> Path:
    """``<config dir>/.container-run/<config file stem>/ctl.json``, as the node writes it."""
    path = Path(config).absolute()
    return path.parent / RUN_FOLDER / path.stem / CTL_FILE


def read_ctl_file(config: str | os.PathLike[str], only: Sequence[str] = ()) -> Target:
    """The target described by the ctl file of the node running ``config``.

    ``only`` keeps just these worker ids. Raises :class:`CtlError` when no node runs the
    configuration (no file, or the node process it names is gone) or the file is unusable.
    """
    file = ctl_file_path(config)
    data = _read_json_object(file, config)
    pid = data.get("node_pid")
    if isinstance(pid, int) and not process_exists(pid):
        raise CtlError(
            f"no node is running {config} ({file} is stale: node process {pid} is gone)"
        )
    try:
        target = _target_from(data)
    except (KeyError, TypeError, InvalidConfiguration) as error:
        detail = f"missing key {error}" if isinstance(error, KeyError) else str(error)
        raise CtlError(f"{file}: not a valid ctl file: {detail}") from None
    if not only:
        return target
    known = {worker.id: worker for worker in target.workers or ()}
    workers = tuple(known.get(worker_id) or WorkerRef.default(worker_id) for worker_id in only)
    return Target(target.address, target.realm, target.credentials, workers, chosen=True)


def _read_json_object(file: Path, config: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CtlError(f"no node is running {config} (no {file})") from None
    except OSError as error:
        raise CtlError(f"cannot read {file}: {error.strerror or error}") from None
    try:
        data = json.loads(text)
    except ValueError as error:
        raise CtlError(f"{file}: not a valid ctl file: {error}") from None
    if not isinstance(data, dict):
        raise CtlError(f"{file}: not a valid ctl file: expected a JSON object")
    return data


def _target_from(data: dict[str, Any]) -> Target:
    address = parse_management_url(str(data["management"]))
    credentials = None
    if data.get("authid"):
        credentials = Credentials(
            str(data["authid"]), str(data.get("authmethod", "ticket")), str(data["secret"])
        )
    workers = tuple(
        WorkerRef(str(entry["id"]), str(entry.get("prefix") or worker_prefix(entry["id"])))
        for entry in data.get("workers", [])
    )
    return Target(address, str(data.get("realm") or DEFAULT_REALM), credentials, workers)


# -- the command line --------------------------------------------------------------------------


def add_connection_options(parser: argparse.ArgumentParser, after_command: bool) -> None:
    """The options saying where and to whom to talk.

    They are accepted after the command too (``container ctl list --config node.json``);
    there they default to "not given", so they never overwrite the ones before the command.
    """

    def add(*names: str, help: str, **kwargs: Any) -> None:
        if after_command:
            kwargs["default"] = argparse.SUPPRESS
        parser.add_argument(*names, help=help, **kwargs)

    add("--config", metavar="CONFIG", help="talk to the node running this node configuration")
    add("--management", metavar="URL", help="or to this management router: ws://HOST:PORT/PATH, "
        "wss://..., rs://HOST:PORT (RawSocket over TCP) or unix:/PATH (RawSocket)")
    add("--realm", help=f"management realm (with --management; default {DEFAULT_REALM})")
    add("--authid", help="authenticate as (with --management; default anonymous)")
    add("--authmethod", choices=("ticket", "wampcra"), help="with --authid (default ticket)")
    add("--secret-env", metavar="VAR",
        help=f"environment variable holding the secret (default {DEFAULT_SECRET_ENV})")
    add("--secret-file", metavar="FILE", help="file holding the secret (first line)")
    add("--worker", action="append", metavar="ID",
        dest="workers_after" if after_command else "workers",
        help="only this worker (repeatable; default: every worker, found through the WAMP "
             "meta API or listed by the node)")
    add("--prefix", help="URI prefix of the one --worker's API (default crossbar.worker.ID)")
    add("--json", action="store_true", help="print JSON for machines (lines for watch)")


def resolve_target(parser: argparse.ArgumentParser, arguments: argparse.Namespace) -> Target:
    """The target from the arguments: usage errors exit 2, a missing node is a CtlError."""
    workers = [*(arguments.workers or []), *getattr(arguments, "workers_after", [])]
    if (arguments.config is None) == (arguments.management is None):
        parser.error("give one of --config CONFIG or --management URL")
    if arguments.prefix is not None and len(workers) != 1:
        parser.error("--prefix needs exactly one --worker ID")
    if arguments.secret_env is not None and arguments.secret_file is not None:
        parser.error("--secret-env and --secret-file: give one of them")
    if arguments.config is not None:
        target = _from_config(parser, arguments, workers)
    else:
        try:
            address = parse_management_url(arguments.management)
        except InvalidConfiguration as error:
            parser.error(str(error))
        chosen = tuple(WorkerRef.default(worker_id) for worker_id in workers)
        target = Target(address, arguments.realm or DEFAULT_REALM,
                        _credentials(parser, arguments), chosen or None, chosen=bool(chosen))
    if arguments.prefix is not None:
        worker = WorkerRef(workers[0], arguments.prefix)
        target = Target(target.address, target.realm, target.credentials, (worker,), True)
    return target


def _from_config(
    parser: argparse.ArgumentParser, arguments: argparse.Namespace, workers: Sequence[str]
) -> Target:
    given = [name for name, value in (
        ("--realm", arguments.realm), ("--authid", arguments.authid),
        ("--authmethod", arguments.authmethod), ("--secret-env", arguments.secret_env),
        ("--secret-file", arguments.secret_file)) if value is not None]
    if given:
        parser.error(f"{', '.join(given)}: not with --config (the node's ctl file says "
                     "how to connect); use --management for that")
    return read_ctl_file(arguments.config, workers)


def _credentials(parser: argparse.ArgumentParser,
                 arguments: argparse.Namespace) -> Credentials | None:
    """Credentials from ``--authid`` and a secret read from a variable or a file (never from
    the command line, where other users of the machine could read it)."""
    if arguments.authid is None:
        if arguments.authmethod or arguments.secret_file or arguments.secret_env:
            parser.error("--authmethod, --secret-env and --secret-file need --authid")
        return None
    secret: str | None
    if arguments.secret_file is not None:
        try:
            with open(arguments.secret_file, encoding="utf-8") as handle:
                secret = handle.readline().rstrip("\r\n")
        except OSError as error:
            parser.error(f"--secret-file {arguments.secret_file}: {error.strerror or error}")
    else:
        variable = arguments.secret_env or DEFAULT_SECRET_ENV
        secret = os.environ.get(variable)
        if secret is None:
            parser.error(f"--authid {arguments.authid}: no secret in ${variable} "
                         "(set it, or use --secret-env VAR or --secret-file FILE)")
    return Credentials(arguments.authid, arguments.authmethod or "ticket", secret or "")


# -- on the realm ------------------------------------------------------------------------------


async def join_realm(reactor: Any, target: Target) -> ManagementClient:
    """Join the target's management realm once; fails with a :class:`CtlError` or a
    ``ContainerError`` that reads as one line."""
    try:
        return await connect_management(reactor, target.address, target.realm,
                                        target.credentials)
    except defer.TimeoutError:
        raise CtlError(f"cannot join the management realm '{target.realm}' at "
                       f"{target.address.describe()}: no answer in time") from None


async def discover_workers(client: Any) -> list[WorkerRef]:
    """Every container worker on the realm, by its ``crossbar.worker.ID.get_components``."""
    try:
        listing = await client.call("wamp.registration.list")
    except ApplicationError as error:
        raise CtlError(
            f"cannot discover the workers through the WAMP meta API ({error.error}: "
            f"{error_message(error)}); name them with --worker ID"
        ) from None
    ids = list(listing.get("exact", [])) if isinstance(listing, dict) else []
    lookups = [client.call("wamp.registration.get", registration) for registration in ids]
    results = await defer.DeferredList(lookups, consumeErrors=True)
    workers = []
    for ok, info in results:
        # a registration may be gone by the time we ask about it: skip it
        if ok and isinstance(info, dict):
            match = _WORKER_PROCEDURE.match(str(info.get("uri", "")))
            if match:
                workers.append(WorkerRef.default(match["id"]))
    return sorted(set(workers), key=lambda worker: worker.id)


async def call_worker(
    client: Any, worker: WorkerRef, procedure: str, *args: Any, **kwargs: Any
) -> Any:
    """``PREFIX.procedure``; a worker that is not there becomes a :class:`CtlError`."""
    try:
        return await client.worker_call(worker.prefix, procedure, *args, **kwargs)
    except ApplicationError as error:
        if error.error == "wamp.error.no_such_procedure":
            realm = getattr(getattr(client, "config", None), "realm", None) or "?"
            raise CtlError(
                f"wamp.error.no_such_procedure: no worker '{worker.id}' on management realm "
                f"'{realm}' ({worker.prefix}.{procedure} is not registered)"
            ) from None
        raise

"""One Crossbar.io native worker (router or proxy) and the little of a node it needs, in-process.

Under ``crossbar start`` a router worker is a process of its own that joins its node
controller's management router over stdio; the node then configures it by calling its
procedures. Here the same happens inside one process, with Crossbar.io's own pieces:

* the node-management router is Crossbar.io's ``RouterFactory``/``RouterSessionFactory`` with
  realm ``crossbar``, the node-wide ``controller`` role and the worker's own role, made by
  Crossbar.io's ``Node`` methods (``_add_global_roles``, ``_add_worker_role``);
* the worker is the personality's worker class (``RouterController``, ``ProxyController``),
  attached to that router as ``crossbar start`` would attach it, and it publishes
  ``on_worker_ready`` when it has registered its procedures;
* the configuration is driven by Crossbar.io's ``Node._configure_native_worker_<type>``, the
  very code ``crossbar start`` runs, so order, generated ids and defaults are its own.

What is ours is :class:`NodeControl`: the four ``crossbar.*`` procedures a worker calls on its
node controller (the node's public key, signing with it for rlinks and cryptosign proxies, and
the status the ``nodeinfo`` web service shows), answered from the node key that Crossbar.io's
``Node.load_keys`` reads from (or generates into) the node directory, as ``crossbar start``
does. Crossbar.io's own ``NodeController`` would also take over the process's signals and
spawn workers; we need neither.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import sys
from collections.abc import Iterator, Mapping
from typing import Any

import txaio
from autobahn.twisted.wamp import ApplicationSession
from autobahn.wamp.types import CallDetails, Challenge, ComponentConfig, RegisterOptions
from twisted.internet.defer import Deferred

from container.management import worker_prefix

__all__ = ["CONTROL_REALM", "NodeControl", "WorkerHost"]

txaio.use_twisted()
log = txaio.make_logger()

#: The realm of the in-process node-management router (Crossbar.io's name for it).
CONTROL_REALM = "crossbar"
_DETAILS = RegisterOptions(details_arg="details")
#: How long the worker may take to join the node-management realm and register its API.
READY_TIMEOUT = 30.0


class NodeControl(ApplicationSession):
    """The node controller's procedures that a native worker calls, from the node key."""

    def __init__(self, node: Any, workers: int) -> None:
        super().__init__(ComponentConfig(CONTROL_REALM))
        self._node = node
        self._workers = workers
        self.joined: Deferred[None] = Deferred()

    async def onJoin(self, details: Any) -> None:
        for name in ("get_public_key", "sign", "sign_challenge", "get_status"):
            await self.register(getattr(self, name), f"crossbar.{name}", options=_DETAILS)
        self.joined.callback(None)

    def get_public_key(self, details: CallDetails | None = None) -> str:
        return str(self._node.secmod[1].public_key(binary=False))

    def sign(self, data: bytes, details: CallDetails | None = None) -> Any:
        return self._node.secmod[1].sign(data)

    def sign_challenge(
        self,
        method: str,
        extra: dict[str, Any],
        channel_id: bytes,
        channel_id_type: str,
        details: CallDetails | None = None,
    ) -> Any:
        return self._node.secmod[1].sign_challenge(
            Challenge(method, extra), channel_id, channel_id_type
        )

    def get_status(self, details: CallDetails | None = None) -> dict[str, Any]:
        import crossbar

        return {
            "title": f"{self._node.personality.TITLE} {crossbar.__version__}",
            "started": None,
            "controller_pid": os.getppid(),
            "running_workers": self._workers,
            "workers_by_type": {},
            "directory": self._node._cbdir,
            "pubkey": self.get_public_key(),
        }


class WorkerHost:
    """A router or proxy worker of Crossbar.io's, configured from its worker configuration."""

    def __init__(
        self,
        reactor: Any,
        worker: Mapping[str, Any],
        *,
        node_id: str,
        cbdir: str,
        key_dir: str | None = None,
        loglevel: str = "warn",
    ) -> None:
        from crossbar.personality import Personality
        from crossbar.router.router import RouterFactory
        from crossbar.router.session import RouterSessionFactory

        self.reactor = reactor
        self.config = dict(worker)
        self.worker_id = str(worker["id"])
        self.worker_type = str(worker["type"])
        self.personality = Personality
        self.node = Personality.Node(Personality, cbdir=cbdir, reactor=reactor)
        self.node._node_id = node_id
        with _exclusively(key_dir or cbdir):  # the node's routers start at once
            self.node.load_keys(key_dir or cbdir)
        self.node._router_factory = RouterFactory(node_id, None, None)
        self.node._router_session_factory = RouterSessionFactory(self.node._router_factory)
        self.loglevel = loglevel
        self.session: Any = None

    async def start(self) -> None:
        """Bring the worker up and configure it; raises what its procedures raised."""
        secmod = self.node.secmod
        if not secmod.is_open:
            await secmod.open()
        if secmod.is_locked:
            await secmod.unlock()
        router = self._start_control_realm()
        control = NodeControl(self.node, workers=1)
        self.node._controller = control
        factory = self.node._router_session_factory
        factory.add(control, router, authid="nodecontroller", authrole="controller")
        await control.joined
        ready: Deferred[Any] = Deferred()
        topic = f"{worker_prefix(self.worker_id)}.on_worker_ready"
        await control.subscribe(lambda *args, **kwargs: _fire(ready, None), topic)
        self.session = self._worker_session()
        self.session.on("leave", lambda session, details: _fire(ready, RuntimeError(
            f"the {self.worker_type} worker left: {details.message or details.reason}")))
        role = worker_prefix(self.worker_id)
        self.node._add_worker_role(role, self.config.get("options", {}))
        factory.add(self.session, router, authid=self.worker_id, authrole=role)
        ready.addTimeout(READY_TIMEOUT, self.reactor)
        await ready
        configure = getattr(self.node, f"_configure_native_worker_{self.worker_type}")
        logname = f"{self.worker_type} {self.worker_id}"
        await configure(logname, self.worker_id, self.config)

    def _start_control_realm(self) -> Any:
        from crossbar.router.service import RouterServiceAgent
        from crossbar.worker.types import RouterRealm

        realm = RouterRealm(None, None, {"name": CONTROL_REALM})
        router = self.node._router_factory.start_realm(realm)
        self.node._add_global_roles()
        realm.session = RouterServiceAgent(ComponentConfig(CONTROL_REALM), router)
        self.node._router_session_factory.add(
            realm.session, router, authid="serviceagent", authrole="trusted"
        )
        return router

    def _worker_session(self) -> Any:
        options = self.config.get("options", {})
        klass = self.personality.native_workers[self.worker_type]["worker_class"]
        extra = argparse.Namespace(
            cbdir=self.node._cbdir,
            realm=CONTROL_REALM,
            personality="crossbar.personality.Personality",
            klass=f"{klass.__module__}.{klass.__name__}",
            node=self.node._node_id,
            worker=self.worker_id,
            extra=None,
            title=options.get("title"),
            expose_controller=bool(options.get("expose_controller", False)),
            expose_shared=bool(options.get("expose_shared", False)),
            shutdown=None,
            restart=None,
            loglevel=self.loglevel,
            reactor=None,
        )
        for entry in options.get("pythonpath", []):
            path = os.path.abspath(os.path.join(self.node._cbdir, entry))
            if path not in sys.path:
                sys.path.insert(0, path)
        config = ComponentConfig(realm=CONTROL_REALM, extra=extra)
        return klass(config=config, reactor=self.reactor, personality=self.personality)

    def listening(self) -> list[dict[str, Any]]:
        """Where each started transport listens, for the child's ``ready`` line."""
        report = []
        for transport_id, transport in sorted(self.session.transports.items()):
            port = getattr(transport, "port", None) or getattr(transport, "_port", None)
            config = getattr(transport, "_config", None) or getattr(transport, "config", {})
            if port is None:
                continue
            report.append({
                "id": transport_id,
                "type": config.get("type"),
                "endpoint": _endpoint_report(config.get("endpoint", {}), port.getHost()),
            })
        return report

    async def stop(self) -> None:
        """Leave the node-management realm: the worker stops its transports and realms."""
        if self.session is not None and self.session.is_attached():
            await self.session.leave()


def _endpoint_report(endpoint: Mapping[str, Any], address: Any) -> dict[str, Any]:
    if hasattr(address, "port"):
        interface = str(endpoint.get("interface", "")).strip()
        host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(interface, interface)
        return {"type": "tcp", "host": host, "port": address.port}
    name = address.name
    return {"type": "unix", "path": os.fsdecode(name) if isinstance(name, bytes) else str(name)}


@contextlib.contextmanager
def _exclusively(directory: str) -> Iterator[None]:
    """Hold an exclusive lock on a directory: the first router of a node generates the node
    key there (as ``crossbar start`` does), the others wait and read it."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _fire(deferred: Deferred[Any], outcome: Any) -> None:
    """Fire once: a result, or an exception as the failure."""
    if deferred.called:
        return
    if isinstance(outcome, BaseException):
        deferred.errback(outcome)
    else:
        deferred.callback(outcome)

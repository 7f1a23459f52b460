"""The embedded router: Crossbar.io's own router classes, run from a router worker config.

The node controller and the tests start this as a child process,
``python -m container.router CONFIG.json`` (or ``container router CONFIG.json``); the node may
also call :func:`start_router` in-process. The config is one router worker in Crossbar.io's
node-config format, restricted to what this module can serve:

* ``realms[].roles[].permissions[]`` (static roles: ``uri``, ``match`` prefix/exact/wildcard,
  ``allow``, ``disclose``, ``cache``);
* ``transports[]`` of type ``websocket`` (any request path), ``rawsocket`` and ``universal``
  (RawSocket plus WebSocket services keyed by the first path component, e.g. ``"ws"``);
* endpoints ``tcp`` (``port``, 0 = pick a free port; ``interface``, default all interfaces as in
  Crossbar.io; ``backlog``, default 1024; ``version`` 4 or 6) and ``unix`` (``path``, relative
  paths resolved against the config file's directory; ``backlog``);
* transport ``auth``: ``anonymous``, ``ticket`` and ``wampcra``, all ``"type": "static"``.
  Without ``auth`` a transport admits anonymous sessions with role ``"anonymous"``.

Anything else is refused up front with an :class:`~container.errors.InvalidConfiguration`
whose message starts with the key path, e.g. ``transports[1].endpoint.type: 'udp' is not
supported``, so a config is never half served.

Start-up cost is dominated by ``import crossbar``: its package ``__init__`` imports web3 and the
eth_* stack, about 60% of the ~1.2 s the router classes take to import. We therefore
validate the config before importing crossbar (bad configs fail in milliseconds), import only
the router modules, and pause the cyclic garbage collector during that import. A node that
must not wait for that can bind the listeners itself first (:func:`bind_listeners`, a few
milliseconds, real ports known at once) and hand them to the router (``--listen-fd ID=FD``):
clients that connect early wait in the accept queue instead of being refused.

Facts about Crossbar.io's router classes this module depends on:

* a realm's router is removed from the ``RouterFactory`` when its last session detaches, so
  every realm gets a :class:`RouterServiceAgent` (the WAMP meta API) attached as ``trusted``,
  which also keeps the realm alive;
* pending authentications ask the factory's ``_worker`` (a "realm container") ``has_realm``,
  ``has_role`` and ``get_service_session``; Crossbar.io's own tests plug a small object in there
  and so do we (:class:`_RealmContainer`);
* Crossbar.io exempts the role ``anonymous`` from the "role exists on the realm" check, so an
  anonymous client could join a realm that has no ``anonymous`` role (and then be denied every
  action). :func:`_role_checking_session_class` closes that: the join is refused with
  ``wamp.error.no_such_role``;
* the caller (publisher) is disclosed when the caller's role permission says
  ``disclose.caller`` (``disclose.publisher``) for that URI, and always for URIs starting with
  ``wamp.`` or ``crossbar.`` whatever the permissions say.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import gc
import io
import json
import os
import socket
import stat
import sys
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, TextIO

import txaio
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort
from twisted.protocols.policies import WrappingFactory

from container.errors import InvalidConfiguration

txaio.use_twisted()

__all__ = (
    "DEFAULT_BACKLOG",
    "RouterSpec",
    "RunningRouter",
    "bind_listeners",
    "main",
    "parse_router_config",
    "start_router",
)

log = txaio.make_logger()

#: Accept-queue depth when a config gives none. Crossbar.io's default of 50 overflows when
#: hundreds of clients connect at once (the kernel then drops SYNs and clients stall for 1-3 s).
DEFAULT_BACKLOG = 1024

#: Exit status of ``python -m container.router`` when the config cannot be served.
EXIT_CANNOT_SERVE = 2

_SERIALIZERS = frozenset({"cbor", "msgpack", "json", "ubjson", "flatbuffers"})
_MATCH_POLICIES = ("prefix", "exact", "wildcard")
_ACTIONS = ("call", "register", "publish", "subscribe")
_RESERVED_ROLES = ("trusted",)
# sun_path is 108 bytes on Linux, including the terminating NUL
_UNIX_PATH_MAX = 107


# ---------------------------------------------------------------------------------------------
# configuration: plain values, validated without importing crossbar
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EndpointSpec:
    """Where a transport listens: a TCP port (0 = any free one) or a unix socket path."""

    type: str
    port: int = 0
    interface: str = ""
    version: int = 4
    path: str = ""
    backlog: int = DEFAULT_BACKLOG


@dataclass(frozen=True)
class TransportSpec:
    """One listening transport.

    ``rawsocket`` is the RawSocket sub-config (or None); ``websocket`` maps a first path
    component to a WebSocket sub-config. A plain ``websocket`` transport has the single key
    ``None``: it answers on any path, as Crossbar.io does.
    """

    id: str
    type: str
    endpoint: EndpointSpec
    rawsocket: dict[str, Any] | None
    websocket: dict[str | None, dict[str, Any]]


@dataclass(frozen=True)
class RealmSpec:
    """A realm and its static roles (role name -> Crossbar.io role config)."""

    name: str
    roles: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class RouterSpec:
    """A validated router worker config."""

    id: str
    realms: list[RealmSpec]
    transports: list[TransportSpec]


class _Path:
    """A key path such as ``transports[1].endpoint`` for error messages."""

    def __init__(self, text: str = "") -> None:
        self.text = text

    def key(self, name: str) -> _Path:
        return _Path(f"{self.text}.{name}" if self.text else name)

    def index(self, i: int) -> _Path:
        return _Path(f"{self.text}[{i}]")

    def error(self, message: str) -> InvalidConfiguration:
        where = self.text or "router config"
        return InvalidConfiguration(f"{where}: {message}", path=self.text)


def _obj(value: Any, at: _Path, allowed: tuple[str, ...]) -> Mapping[str, Any]:
    """Check that ``value`` is an object with only keys we know how to serve."""
    if not isinstance(value, Mapping):
        raise at.error(f"must be an object, not {type(value).__name__}")
    for k in value:
        if k not in allowed:
            raise at.key(str(k)).error(
                f"is not supported by the embedded router (allowed here: {', '.join(allowed)})"
            )
    return value


def _map(value: Any, at: _Path) -> Mapping[str, Any]:
    """Check that ``value`` is an object with free-form keys (paths, authids, options)."""
    if not isinstance(value, Mapping):
        raise at.error(f"must be an object, not {type(value).__name__}")
    return value


def _list(value: Any, at: _Path) -> list[Any]:
    if not isinstance(value, list):
        raise at.error(f"must be a list, not {type(value).__name__}")
    return value


def _str(value: Any, at: _Path, *, empty: bool = False) -> str:
    if not isinstance(value, str) or (not empty and not value):
        raise at.error(f"must be a {'string' if empty else 'non-empty string'}, not {value!r}")
    return value


def _int(value: Any, at: _Path, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise at.error(f"must be an integer from {lo} to {hi}, not {value!r}")
    return value


def _bool(value: Any, at: _Path) -> bool:
    if not isinstance(value, bool):
        raise at.error(f"must be true or false, not {value!r}")
    return value


def _choice(value: Any, at: _Path, choices: tuple[Any, ...]) -> Any:
    if value not in choices:
        supported = ", ".join(repr(c) for c in choices)
        raise at.error(f"{value!r} is not supported (supported: {supported})")
    return value


def parse_router_config(config: Any) -> RouterSpec:
    """Validate a router worker config and return it as plain values.

    Raises :class:`InvalidConfiguration` naming the key path of the first thing that cannot be
    served. Nothing here imports crossbar, so a bad config fails fast.
    """
    root = _Path()
    cfg = _obj(config, root, ("type", "id", "options", "realms", "transports"))
    if "type" in cfg:
        _choice(cfg["type"], root.key("type"), ("router",))
    worker_id = _str(cfg.get("id", "router"), root.key("id"))
    if "options" in cfg:  # process options (title, env, pythonpath) mean nothing in-process
        _obj(cfg["options"], root.key("options"), ("title", "env", "pythonpath"))
    realms = [
        _parse_realm(r, root.key("realms").index(i))
        for i, r in enumerate(_list(cfg.get("realms", []), root.key("realms")))
    ]
    _unique([r.name for r in realms], root.key("realms"), "realm name")
    transports = [
        _parse_transport(t, root.key("transports").index(i), i)
        for i, t in enumerate(_list(cfg.get("transports", []), root.key("transports")))
    ]
    _unique([t.id for t in transports], root.key("transports"), "transport id")
    return RouterSpec(worker_id, realms, transports)


def _unique(names: list[str], at: _Path, what: str) -> None:
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            raise at.index(i).error(f"duplicate {what} {name!r}")
        seen.add(name)


def _parse_realm(value: Any, at: _Path) -> RealmSpec:
    realm = _obj(value, at, ("name", "roles"))
    if "name" not in realm:
        raise at.key("name").error("is required")
    name = _str(realm["name"], at.key("name"))
    roles: dict[str, dict[str, Any]] = {}
    for i, r in enumerate(_list(realm.get("roles", []), at.key("roles"))):
        role_at = at.key("roles").index(i)
        role = _obj(r, role_at, ("name", "permissions"))
        if "name" not in role:
            raise role_at.key("name").error("is required")
        role_name = _str(role["name"], role_at.key("name"))
        if role_name in _RESERVED_ROLES:
            raise role_at.key("name").error(f"{role_name!r} is built into every realm")
        if role_name in roles:
            raise role_at.key("name").error(f"duplicate role {role_name!r}")
        perms = _list(role.get("permissions", []), role_at.key("permissions"))
        for j, p in enumerate(perms):
            _check_permission(p, role_at.key("permissions").index(j))
        roles[role_name] = {"name": role_name, "permissions": copy.deepcopy(perms)}
    return RealmSpec(name, roles)


def _check_permission(value: Any, at: _Path) -> None:
    perm = _obj(value, at, ("uri", "match", "allow", "disclose", "cache"))
    if "uri" not in perm:
        raise at.key("uri").error("is required")
    _str(perm["uri"], at.key("uri"), empty=True)
    if "match" in perm:
        _choice(perm["match"], at.key("match"), _MATCH_POLICIES)
    for k, v in _obj(perm.get("allow", {}), at.key("allow"), _ACTIONS).items():
        _bool(v, at.key("allow").key(k))
    for k, v in _obj(perm.get("disclose", {}), at.key("disclose"), ("caller", "publisher")).items():
        _bool(v, at.key("disclose").key(k))
    if "cache" in perm:
        _bool(perm["cache"], at.key("cache"))


_TRANSPORT_KEYS = {
    "websocket": ("id", "type", "endpoint", "url", "serializers", "auth", "options", "debug"),
    "rawsocket": (
        "id",
        "type",
        "endpoint",
        "serializers",
        "auth",
        "options",
        "max_message_size",
        "debug",
    ),
    "universal": ("id", "type", "endpoint", "rawsocket", "websocket"),
}
_WEBSOCKET_SERVICE_KEYS = ("type", "url", "serializers", "auth", "options", "debug")
_RAWSOCKET_SERVICE_KEYS = ("serializers", "auth", "options", "max_message_size", "debug")


def _parse_transport(value: Any, at: _Path, index: int) -> TransportSpec:
    if not isinstance(value, Mapping):
        raise at.error(f"must be an object, not {type(value).__name__}")
    kind = _choice(value.get("type"), at.key("type"), tuple(_TRANSPORT_KEYS))
    t = _obj(value, at, _TRANSPORT_KEYS[kind])
    tid = _str(t.get("id", f"transport{index}"), at.key("id"))
    if "endpoint" not in t:
        raise at.key("endpoint").error("is required")
    endpoint = _parse_endpoint(t["endpoint"], at.key("endpoint"))
    if kind == "websocket":
        return TransportSpec(tid, kind, endpoint, None, {None: _websocket_service(t, at)})
    if kind == "rawsocket":
        return TransportSpec(tid, kind, endpoint, _rawsocket_service(t, at), {})
    rawsocket = None
    if "rawsocket" in t:
        raw = _obj(t["rawsocket"], at.key("rawsocket"), _RAWSOCKET_SERVICE_KEYS)
        rawsocket = _rawsocket_service(raw, at.key("rawsocket"))
    websocket: dict[str | None, dict[str, Any]] = {}
    for path, svc in _map(t.get("websocket", {}), at.key("websocket")).items():
        svc_at = at.key("websocket").key(str(path))
        _obj(svc, svc_at, _WEBSOCKET_SERVICE_KEYS)
        if "type" in svc:
            _choice(svc["type"], svc_at.key("type"), ("websocket",))
        first = str(path).strip("/")
        if "/" in first:
            raise svc_at.error("a WebSocket path must be a single path component, e.g. 'ws'")
        if first in websocket:
            raise svc_at.error(f"path {first!r} is given twice")
        websocket[first] = _websocket_service(svc, svc_at)
    if rawsocket is None and not websocket:
        raise at.error("a universal transport needs 'rawsocket' or 'websocket' (or both)")
    return TransportSpec(tid, kind, endpoint, rawsocket, websocket)


def _websocket_service(svc: Mapping[str, Any], at: _Path) -> dict[str, Any]:
    """The sub-config Crossbar.io's WebSocket factory reads (a deep copy: it mutates it)."""
    out: dict[str, Any] = {}
    _copy_serializers(svc, at, out)
    _copy_auth(svc, at, out)
    if "url" in svc:
        out["url"] = _str(svc["url"], at.key("url"))
    if "options" in svc:
        out["options"] = copy.deepcopy(dict(_map(svc["options"], at.key("options"))))
    return out


def _rawsocket_service(svc: Mapping[str, Any], at: _Path) -> dict[str, Any]:
    """The sub-config Crossbar.io's RawSocket factory reads.

    ``max_message_size`` is accepted at the top (our schema) and under ``options`` (Crossbar.io).
    """
    out: dict[str, Any] = {}
    _copy_serializers(svc, at, out)
    _copy_auth(svc, at, out)
    options = dict(_obj(svc.get("options", {}), at.key("options"), ("max_message_size",)))
    if "max_message_size" in svc:
        options["max_message_size"] = svc["max_message_size"]
    if "max_message_size" in options:
        size_at = at.key("max_message_size")
        options["max_message_size"] = _int(options["max_message_size"], size_at, 512, 2**24)
        out["options"] = options
    return out


def _copy_serializers(svc: Mapping[str, Any], at: _Path, out: dict[str, Any]) -> None:
    if "serializers" not in svc:
        return
    sers = _list(svc["serializers"], at.key("serializers"))
    if not sers:
        raise at.key("serializers").error("must name at least one serializer")
    for i, s in enumerate(sers):
        _choice(s, at.key("serializers").index(i), tuple(sorted(_SERIALIZERS)))
    out["serializers"] = list(sers)


def _copy_auth(svc: Mapping[str, Any], at: _Path, out: dict[str, Any]) -> None:
    if "auth" not in svc:
        return
    auth_at = at.key("auth")
    auth = _obj(svc["auth"], auth_at, ("anonymous", "ticket", "wampcra"))
    if not auth:
        raise auth_at.error("must configure at least one of anonymous, ticket, wampcra")
    checks: dict[str, Callable[[Mapping[str, Any], _Path], None]] = {
        "anonymous": _check_anonymous,
        "ticket": _check_ticket,
        "wampcra": _check_wampcra,
    }
    for method, method_cfg in auth.items():
        checks[method](method_cfg, auth_at.key(method))
    out["auth"] = copy.deepcopy(dict(auth))


def _check_static(cfg: Any, at: _Path, keys: tuple[str, ...]) -> Mapping[str, Any]:
    method = _obj(cfg, at, ("type", *keys))
    _choice(method.get("type"), at.key("type"), ("static",))
    return method


def _check_anonymous(cfg: Mapping[str, Any], at: _Path) -> None:
    method = _check_static(cfg, at, ("role", "authid"))
    for k in ("role", "authid"):
        if k in method:
            _str(method[k], at.key(k))


def _check_ticket(cfg: Mapping[str, Any], at: _Path) -> None:
    method = _check_static(cfg, at, ("principals",))
    for authid, p in _map(method.get("principals", {}), at.key("principals")).items():
        p_at = at.key("principals").key(authid)
        principal = _obj(p, p_at, ("ticket", "role", "realm"))
        for k in ("ticket", "role"):
            if k not in principal:
                raise p_at.key(k).error("is required")
        _str(principal["ticket"], p_at.key("ticket"), empty=True)
        _str(principal["role"], p_at.key("role"))
        if "realm" in principal:
            _str(principal["realm"], p_at.key("realm"))


def _check_wampcra(cfg: Mapping[str, Any], at: _Path) -> None:
    method = _check_static(cfg, at, ("users",))
    for authid, u in _map(method.get("users", {}), at.key("users")).items():
        u_at = at.key("users").key(authid)
        user = _obj(u, u_at, ("secret", "role", "realm", "salt", "iterations", "keylen"))
        for k in ("secret", "role"):
            if k not in user:
                raise u_at.key(k).error("is required")
        _str(user["secret"], u_at.key("secret"), empty=True)
        _str(user["role"], u_at.key("role"))
        if "realm" in user:
            _str(user["realm"], u_at.key("realm"))
        if "salt" in user:
            _str(user["salt"], u_at.key("salt"))
        for k in ("iterations", "keylen"):
            if k in user:
                _int(user[k], u_at.key(k), 1, 10**7)


def _parse_endpoint(value: Any, at: _Path) -> EndpointSpec:
    if not isinstance(value, Mapping):
        raise at.error(f"must be an object, not {type(value).__name__}")
    kind = _choice(value.get("type"), at.key("type"), ("tcp", "unix"))
    if kind == "tcp":
        ep = _obj(value, at, ("type", "port", "interface", "backlog", "version"))
        if "port" not in ep:
            raise at.key("port").error("is required (0 picks a free port)")
        return EndpointSpec(
            type="tcp",
            port=_int(ep["port"], at.key("port"), 0, 65535),
            interface=_str(ep.get("interface", ""), at.key("interface"), empty=True).strip(),
            version=_choice(ep.get("version", 4), at.key("version"), (4, 6)),
            backlog=_int(ep.get("backlog", DEFAULT_BACKLOG), at.key("backlog"), 1, 65535),
        )
    ep = _obj(value, at, ("type", "path", "backlog"))
    if "path" not in ep:
        raise at.key("path").error("is required")
    return EndpointSpec(
        type="unix",
        path=_str(ep["path"], at.key("path")),
        backlog=_int(ep.get("backlog", DEFAULT_BACKLOG), at.key("backlog"), 1, 65535),
    )


# ---------------------------------------------------------------------------------------------
# crossbar: imported lazily, once
# ---------------------------------------------------------------------------------------------

_crossbar: SimpleNamespace | None = None


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while importing crossbar: the import allocates a large, permanent
    heap that the collector would otherwise traverse again and again (~10-15% of the time)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@contextlib.contextmanager
def _quiet_numpy_abi_notice() -> Iterator[None]:
    """Keep bjdata's "compiled using NumPy 1.x" notice (printed, not warned, when autobahn's
    optional UBJSON serializer is imported) out of our stderr; pass anything else through."""
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            yield
    finally:
        text = captured.getvalue()
        if text and "compiled using NumPy 1.x" not in text:
            sys.stderr.write(text)


def _import_crossbar() -> SimpleNamespace:
    """Import the Crossbar.io router classes we use (and nothing else of crossbar)."""
    global _crossbar
    if _crossbar is not None:
        return _crossbar
    started = time.perf_counter()
    with _gc_paused():
        with _quiet_numpy_abi_notice():
            import autobahn.wamp.serializer  # noqa: F401
        from autobahn.wamp.exception import ApplicationError
        from autobahn.wamp.types import Accept, ComponentConfig, Deny
        from crossbar.router.protocol import (
            WampRawSocketServerFactory,
            WampWebSocketServerFactory,
        )
        from crossbar.router.router import RouterFactory
        from crossbar.router.service import RouterServiceAgent
        from crossbar.router.session import RouterSession, RouterSessionFactory
        from crossbar.router.unisocket import UniSocketServerFactory
        from crossbar.worker.types import RouterRealm
    _crossbar = SimpleNamespace(
        Accept=Accept,
        ApplicationError=ApplicationError,
        ComponentConfig=ComponentConfig,
        Deny=Deny,
        RouterFactory=RouterFactory,
        RouterRealm=RouterRealm,
        RouterServiceAgent=RouterServiceAgent,
        RouterSession=RouterSession,
        RouterSessionFactory=RouterSessionFactory,
        UniSocketServerFactory=UniSocketServerFactory,
        WampRawSocketServerFactory=WampRawSocketServerFactory,
        WampWebSocketServerFactory=WampWebSocketServerFactory,
    )
    secs = f"{time.perf_counter() - started:.2f}"
    log.info("imported Crossbar.io router classes in {secs} s", secs=secs)
    return _crossbar


class _Personality:
    """What Crossbar.io's session asks of the node "personality": extra auth methods (none).

    Crossbar.io's own ``Personality`` class would import its whole web service stack."""

    EXTRA_AUTH_METHODS: dict[str, Any] = {}


class _RealmContainer:
    """Answers the questions Crossbar.io's pending authentications ask the router worker.

    Plugged in as ``RouterFactory._worker`` (as Crossbar.io's own router tests do) because its
    constructor only accepts a real ``RouterController`` there."""

    personality = _Personality

    def __init__(self, router_factory: Any) -> None:
        self._routers = router_factory

    def has_realm(self, realm: str) -> bool:
        return realm in self._routers

    def has_role(self, realm: str, authrole: str) -> bool:
        return realm in self._routers and self._routers[realm].has_role(authrole or "trusted")

    def get_service_session(self, realm: str, authrole: str) -> Deferred[Any]:
        router = self._routers.get(realm)
        return succeed(router._realm.session if router is not None else None)


def _role_checking_session_class(cb: SimpleNamespace) -> type:
    """Crossbar.io's ``RouterSession``, refusing a join whose authrole is not on the realm.

    Crossbar.io checks the role for every authmethod except when the role is ``anonymous``;
    we check the final ``Accept`` of HELLO (anonymous) and AUTHENTICATE (ticket, wampcra)."""

    class RoleCheckingRouterSession(cb.RouterSession):  # type: ignore[misc, name-defined]
        def onHello(self, realm: str, details: Any) -> Any:
            return self._refuse_unknown_role(super().onHello(realm, details))

        def onAuthenticate(self, signature: str, extra: Any) -> Any:
            return self._refuse_unknown_role(super().onAuthenticate(signature, extra))

        def _refuse_unknown_role(self, outcome: Any) -> Any:
            if isinstance(outcome, Deferred):
                return outcome.addCallback(self._check_accept)
            return self._check_accept(outcome)

        def _check_accept(self, outcome: Any) -> Any:
            if not isinstance(outcome, cb.Accept):
                return outcome
            router = self._router_factory.get(outcome.realm)
            if router is None:
                return cb.Deny(
                    cb.ApplicationError.NO_SUCH_REALM,
                    message=f'no realm "{outcome.realm}" exists on this router',
                )
            if not router.has_role(outcome.authrole):
                return cb.Deny(
                    cb.ApplicationError.NO_SUCH_ROLE,
                    message=f'realm "{outcome.realm}" has no role "{outcome.authrole}"',
                )
            return outcome

    return RoleCheckingRouterSession


# ---------------------------------------------------------------------------------------------
# the running router
# ---------------------------------------------------------------------------------------------


class _ConnectionTracker(WrappingFactory):
    """Wraps a transport factory to know its open connections, so stop() can drop them all and
    tell when they are gone."""

    noisy = False

    def __init__(self, wrapped: Any) -> None:
        super().__init__(wrapped)
        self._waiters: list[Deferred[None]] = []

    def unregisterProtocol(self, p: Any) -> None:
        super().unregisterProtocol(p)
        if not self.protocols:
            waiters, self._waiters = self._waiters, []
            for d in waiters:
                d.callback(None)

    def drop_all(self) -> Deferred[None]:
        """Abort every open connection; fires when the last one is closed."""
        if not self.protocols:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiters.append(d)
        for wrapper in list(self.protocols):
            transport = wrapper.transport
            if transport is not None:
                transport.abortConnection()
        return d


@dataclass
class _Listener:
    spec: TransportSpec
    port: IListeningPort
    tracker: _ConnectionTracker
    report: dict[str, Any]


@dataclass
class RunningRouter:
    """A started router: its listeners and Crossbar.io's factories.

    ``listening`` has one entry per transport, in config order::

        {"id": "app", "type": "universal", "websocket_paths": ["ws"], "rawsocket": true,
         "endpoint": {"type": "tcp", "host": "127.0.0.1", "port": 40123}}
        {"id": "mgmt", "type": "rawsocket", "rawsocket": true, "websocket_paths": [],
         "endpoint": {"type": "unix", "path": "/abs/path/mgmt.sock"}}

    ``host`` is the interface bound, or the loopback address when bound to all interfaces.
    ``websocket_paths`` lists the first path components a universal transport serves WebSocket
    on (``""`` = the root); a plain websocket transport reports ``[""]`` and answers any path.
    """

    spec: RouterSpec
    router_factory: Any
    session_factory: Any
    listeners: list[_Listener] = field(default_factory=list)
    _stopping: Deferred[None] | None = None

    @property
    def listening(self) -> list[dict[str, Any]]:
        return [copy.deepcopy(listener.report) for listener in self.listeners]

    @property
    def realms(self) -> list[str]:
        return [r.name for r in self.spec.realms]

    def attach_session(
        self, session: Any, realm: str, authrole: str = "trusted", authid: str | None = None
    ) -> None:
        """Run an ``ApplicationSession`` inside the router (no transport), e.g. for an in-process
        node controller. It joins ``realm`` at once with the given (trusted) role."""
        router = self.router_factory.get(realm)
        if router is None:
            raise InvalidConfiguration(f"no realm {realm!r} on this router", path="realms")
        self.session_factory.add(session, router, authid=authid, authrole=authrole)

    def stop(self) -> Deferred[None]:
        """Close every listener (removing unix socket files), then drop open connections.

        Idempotent: every call returns a new Deferred that fires when all of it is done."""
        if self._stopping is None:
            self._stopping = Deferred.fromCoroutine(self._stop())
        done: Deferred[None] = Deferred()

        def relay(result: None) -> None:
            done.callback(None)
            return result

        self._stopping.addCallback(relay)
        return done

    async def _stop(self) -> None:
        """Stop accepting first, then abort what is open; neither step raises."""
        closing = [maybeDeferred(lst.port.stopListening) for lst in self.listeners]
        await DeferredList(closing, consumeErrors=True)
        await DeferredList([lst.tracker.drop_all() for lst in self.listeners], consumeErrors=True)
        log.info("router {id} stopped", id=self.spec.id)


def bind_listeners(config: Any, *, base_dir: str | None = None) -> dict[str, socket.socket]:
    """Bind and listen on every transport's endpoint now, without importing crossbar.

    Socket activation, for a node that wants the real addresses at once (port 0 resolved, no
    free-port race) so it can start clients while the router spends ~1.3 s importing
    Crossbar.io: hand the sockets to ``start_router(..., sockets=...)``, or pass their fds to
    ``python -m container.router CONFIG --listen-fd ID=FD`` (``Popen(pass_fds=...)``) and close
    them in the parent. Connections made meanwhile wait in the accept queue (``backlog``) and
    are served once the router is up. Raises :class:`InvalidConfiguration` naming the endpoint
    that cannot be bound; nothing stays bound then (a unix socket file does stay until the
    router that adopts it stops).
    """
    spec = parse_router_config(config)
    bound: dict[str, socket.socket] = {}
    try:
        for i, t in enumerate(spec.transports):
            bound[t.id] = _bind(t.endpoint, base_dir, _Path().key("transports").index(i))
    except BaseException:
        for sock in bound.values():
            sock.close()
        raise
    return bound


def _bind(ep: EndpointSpec, base_dir: str | None, at: _Path) -> socket.socket:
    if ep.type == "tcp":
        family = socket.AF_INET6 if ep.version == 6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        # as Twisted's listenTCP does: a restarted router can take its port back at once
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        address: Any = (ep.interface or ("::" if ep.version == 6 else "0.0.0.0"), ep.port)
    else:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        address = _unix_path(ep.path, base_dir, at.key("endpoint").key("path"))
    try:
        sock.bind(address)
        sock.listen(ep.backlog)
        sock.setblocking(False)
    except OSError as e:
        sock.close()
        raise at.key("endpoint").error(f"cannot listen on {_where(ep)}: {e.strerror}") from e
    return sock


def _check_adopted(spec: RouterSpec, sockets: Mapping[str, socket.socket]) -> None:
    """Each pre-bound socket must belong to a transport and match its endpoint type."""
    ids = {t.id: (i, t) for i, t in enumerate(spec.transports)}
    for tid, sock in sockets.items():
        if tid not in ids:
            raise InvalidConfiguration(f"listening socket for unknown transport {tid!r}", path="")
        i, t = ids[tid]
        want_unix = t.endpoint.type == "unix"
        if (sock.family == socket.AF_UNIX) != want_unix or sock.type != socket.SOCK_STREAM:
            at = _Path().key("transports").index(i).key("endpoint")
            raise at.error(f"the listening socket given for it is not a {t.endpoint.type} socket")


async def start_router(
    reactor: Any,
    config: Mapping[str, Any],
    *,
    base_dir: str | None = None,
    node_id: str = "node",
    sockets: Mapping[str, socket.socket] | None = None,
) -> RunningRouter:
    """Start realms and listeners for a router worker config (a coroutine: await it, or wrap it
    in ``Deferred.fromCoroutine``).

    ``base_dir`` resolves relative unix socket paths (default: the working directory).
    ``sockets`` maps transport ids to listening sockets made by :func:`bind_listeners`; those
    transports serve on them instead of binding (the router takes them over and closes them).
    Raises :class:`InvalidConfiguration` (naming the key path) when the config cannot be
    served, including when a listener cannot bind; nothing is left listening then.

    Note: Crossbar.io's broker and dealer schedule on the global reactor whatever ``reactor``
    is passed; ``reactor`` is used for the listeners.
    """
    spec = parse_router_config(config)
    adopted = dict(sockets or {})
    try:
        _check_adopted(spec, adopted)
        return await _start(reactor, spec, base_dir, node_id, adopted)
    finally:
        for sock in adopted.values():  # Twisted has its own duplicate of those it adopted
            sock.close()


async def _start(
    reactor: Any,
    spec: RouterSpec,
    base_dir: str | None,
    node_id: str,
    adopted: Mapping[str, socket.socket],
) -> RunningRouter:
    cb = _import_crossbar()
    router_factory = cb.RouterFactory(node_id, spec.id, None)
    router_factory._worker = _RealmContainer(router_factory)
    session_factory = cb.RouterSessionFactory(router_factory)
    session_factory.session = _role_checking_session_class(cb)
    for realm in spec.realms:
        _start_realm(cb, router_factory, session_factory, realm, spec.id)
    running = RunningRouter(spec, router_factory, session_factory)
    try:
        for i, transport in enumerate(spec.transports):
            sock = adopted.get(transport.id)
            listener = _listen(reactor, cb, session_factory, transport, i, base_dir, sock)
            running.listeners.append(listener)
    except BaseException:
        await running.stop()
        raise
    log.info("router {id} listening: {listening}", id=spec.id, listening=running.listening)
    return running


def _start_realm(
    cb: SimpleNamespace, routers: Any, sessions: Any, realm: RealmSpec, wid: str
) -> None:
    """Start a realm, its roles and its service agent (which also keeps the realm alive)."""
    rlm = cb.RouterRealm(None, realm.name, {"name": realm.name})
    rlm.router = routers.start_realm(rlm)
    for role in realm.roles.values():
        routers.add_role(realm.name, copy.deepcopy(role))
    rlm.session = cb.RouterServiceAgent(cb.ComponentConfig(realm.name, {}), rlm.router)
    authid = f"routerworker-{wid}-realm-{realm.name}-serviceagent"
    sessions.add(rlm.session, rlm.router, authid=authid, authrole="trusted")


def _listen(
    reactor: Any,
    cb: SimpleNamespace,
    sessions: Any,
    transport: TransportSpec,
    index: int,
    base_dir: str | None,
    sock: socket.socket | None,
) -> _Listener:
    at = _Path().key("transports").index(index)
    factory = _transport_factory(cb, sessions, transport, at)
    tracker = _ConnectionTracker(factory)
    ep = transport.endpoint
    try:
        if sock is not None:
            port = reactor.adoptStreamPort(sock.fileno(), sock.family, tracker)
            endpoint = _endpoint_report(ep, port.getHost())
        elif ep.type == "tcp":
            interface = ep.interface or ("::" if ep.version == 6 else "")
            port = reactor.listenTCP(ep.port, tracker, backlog=ep.backlog, interface=interface)
            endpoint = {"type": "tcp", "host": _connect_host(ep), "port": port.getHost().port}
        else:
            path = _unix_path(ep.path, base_dir, at.key("endpoint").key("path"))
            port = reactor.listenUNIX(path, tracker, backlog=ep.backlog)
            endpoint = {"type": "unix", "path": path}
    except CannotListenError as e:
        raise at.key("endpoint").error(f"cannot listen on {_where(ep)}: {e.socketError}") from e
    report = {
        "id": transport.id,
        "type": transport.type,
        "endpoint": endpoint,
        "rawsocket": transport.rawsocket is not None,
        "websocket_paths": sorted(p or "" for p in transport.websocket),
    }
    return _Listener(transport, port, tracker, report)


def _where(ep: EndpointSpec) -> str:
    return f"tcp {ep.interface or '*'}:{ep.port}" if ep.type == "tcp" else f"unix {ep.path}"


def _endpoint_report(ep: EndpointSpec, address: Any) -> dict[str, Any]:
    """The ready-line endpoint of a listener, from the address it is bound to."""
    if ep.type == "tcp":
        return {"type": "tcp", "host": _connect_host(ep), "port": address.port}
    return {"type": "unix", "path": os.fsdecode(address.name)}


def _connect_host(ep: EndpointSpec) -> str:
    """The address a local client should use to reach a TCP listener."""
    if ep.interface in ("", "0.0.0.0"):
        return "127.0.0.1"
    if ep.interface == "::":
        return "::1"
    return ep.interface


def _unix_path(path: str, base_dir: str | None, at: _Path) -> str:
    """Absolute socket path; a stale socket file (nobody listening) is removed first."""
    full = os.path.abspath(os.path.join(base_dir or os.getcwd(), os.path.expandvars(path)))
    size = len(full.encode())
    if size > _UNIX_PATH_MAX:
        raise at.error(f"{full!r} is too long for a unix socket ({size} > {_UNIX_PATH_MAX} bytes)")
    if not os.path.isdir(os.path.dirname(full)):
        raise at.error(f"directory {os.path.dirname(full)!r} does not exist")
    if os.path.lexists(full):
        if not stat.S_ISSOCK(os.lstat(full).st_mode):
            raise at.error(f"{full!r} exists and is not a socket")
        if _someone_listens(full):
            raise at.error(f"{full!r} is in use by another process")
        os.unlink(full)
    return full


def _someone_listens(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(path)
        except OSError:
            return False
        return True


def _transport_factory(cb: SimpleNamespace, sessions: Any, t: TransportSpec, at: _Path) -> Any:
    """Crossbar.io's factory for one transport (deep-copied sub-configs: its factories and
    authenticators write into them)."""
    try:
        if t.type == "rawsocket":
            return _rawsocket_factory(cb, sessions, t.rawsocket or {})
        if t.type == "websocket":
            return _websocket_factory(cb, sessions, t.websocket[None])
        return cb.UniSocketServerFactory(
            websocket_factory_map={
                path or "": _websocket_factory(cb, sessions, svc)
                for path, svc in t.websocket.items()
            },
            rawsocket_factory=(
                _rawsocket_factory(cb, sessions, t.rawsocket) if t.rawsocket is not None else None
            ),
        )
    except InvalidConfiguration:
        raise
    except Exception as e:  # Crossbar.io raises bare Exceptions for options it cannot honour
        raise at.error(f"Crossbar.io cannot serve this transport: {e}") from e


def _rawsocket_factory(cb: SimpleNamespace, sessions: Any, cfg: dict[str, Any]) -> Any:
    factory = cb.WampRawSocketServerFactory(sessions, copy.deepcopy(cfg))
    factory.noisy = False
    return factory


def _websocket_factory(cb: SimpleNamespace, sessions: Any, cfg: dict[str, Any]) -> Any:
    factory = cb.WampWebSocketServerFactory(sessions, ".", copy.deepcopy(cfg), None)
    factory.noisy = False
    return factory


# ---------------------------------------------------------------------------------------------
# the command line: python -m container.router CONFIG.json
# ---------------------------------------------------------------------------------------------

#: How long a SIGTERM/SIGINT shutdown may take before the process exits anyway.
STOP_TIMEOUT = 10.0


def _argument_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="container router",
        description="Run Crossbar.io's router for one router worker config; print one JSON "
        "'ready' line to stdout when listening; stop on SIGTERM/SIGINT.",
    )
    p.add_argument("config", help="JSON file holding one router worker (Crossbar.io format)")
    p.add_argument(
        "--loglevel",
        default=os.environ.get("CONTAINER_ROUTER_LOGLEVEL", "warn"),
        choices=["none", "critical", "error", "warn", "info", "debug", "trace"],
        help="log level on stderr (default: warn, or $CONTAINER_ROUTER_LOGLEVEL)",
    )
    p.add_argument(
        "--listen-fd",
        action="append",
        default=[],
        metavar="ID=FD",
        help="serve transport ID on the inherited listening socket FD (see bind_listeners)",
    )
    return p


def _inherited_sockets(specs: list[str]) -> dict[str, socket.socket]:
    """``--listen-fd ID=FD`` values -> sockets (family and type are read from the fd)."""
    sockets: dict[str, socket.socket] = {}
    for item in specs:
        tid, _, fd = item.partition("=")
        if not tid or not fd.isdigit():
            raise InvalidConfiguration(f"--listen-fd {item!r}: expected ID=FD", path="")
        try:
            sockets[tid] = socket.socket(fileno=int(fd))
        except OSError as e:
            raise InvalidConfiguration(f"--listen-fd {item!r}: {e.strerror}", path="") from e
    return sockets


def _load_config(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except OSError as e:
        raise InvalidConfiguration(f"{path}: cannot read: {e.strerror}", path="") from e
    except json.JSONDecodeError as e:
        where = f"{path}:{e.lineno}:{e.colno}"
        raise InvalidConfiguration(f"{where}: invalid JSON: {e.msg}", path="") from e


def _fail(message: str, err: TextIO | None = None) -> int:
    """Report a config that cannot be served in one line; return the exit status."""
    err = err or sys.stderr
    err.write(f"container router: error: {message}\n")
    err.flush()
    return EXIT_CANNOT_SERVE


@dataclass(frozen=True)
class _Streams:
    """The process's real stdout (for the ready line) and stderr (for logs and the error)."""

    out: TextIO
    err: TextIO


def main(argv: list[str] | None = None) -> int:
    """Run the router until SIGTERM/SIGINT; 0 after a clean stop, 2 if the config cannot be
    served (with one line on stderr)."""
    args = _argument_parser().parse_args(argv)
    try:
        config = _load_config(args.config)
        spec = parse_router_config(config)
        sockets = _inherited_sockets(args.listen_fd)
        _check_adopted(spec, sockets)
    except InvalidConfiguration as e:  # fail before the slow crossbar import
        return _fail(str(e))
    # Twisted's log beginner (under txaio) replaces sys.stdout/sys.stderr with log writers;
    # keep the real streams for the ready line and the one-line error.
    streams = _Streams(out=sys.stdout, err=sys.stderr)
    txaio.start_logging(out=streams.err, level=args.loglevel)
    _import_crossbar()
    # The imported heap (millions of objects) is permanent: keep the collector off it. This
    # also makes the exit after SIGTERM ~0.6 s faster (no final traversal of that heap).
    gc.freeze()
    from twisted.internet import reactor

    outcome: dict[str, Any] = {"status": 0}
    base_dir = os.path.dirname(os.path.abspath(args.config))
    start = functools.partial(start_router, reactor, config, base_dir=base_dir, sockets=sockets)
    reactor.callWhenRunning(_run, reactor, start, streams, outcome)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]
    return int(outcome["status"])


def _run(
    reactor: Any,
    start: Callable[[], Coroutine[Any, Any, RunningRouter]],
    streams: _Streams,
    outcome: dict[str, Any],
) -> None:
    d = Deferred.fromCoroutine(start())

    def ready(running: RunningRouter) -> None:
        reactor.addSystemEventTrigger("before", "shutdown", _bounded_stop, reactor, running)
        line = {"event": "ready", "pid": os.getpid(), "transports": running.listening}
        streams.out.write(json.dumps(line) + "\n")
        streams.out.flush()

    def failed(failure: Any) -> None:
        if failure.check(InvalidConfiguration):
            outcome["status"] = _fail(str(failure.value), streams.err)
        else:
            log.failure("router failed to start", failure=failure)
            message = f"router failed to start: {failure.getErrorMessage()}"
            outcome["status"] = _fail(message, streams.err)
        reactor.stop()

    d.addCallbacks(ready, failed)


def _bounded_stop(reactor: Any, running: RunningRouter) -> Deferred[None]:
    d = running.stop()
    d.addTimeout(STOP_TIMEOUT, reactor)
    d.addErrback(lambda f: log.warn("router stop did not finish: {err}", err=f.getErrorMessage()))
    return d


if __name__ == "__main__":
    sys.exit(main())

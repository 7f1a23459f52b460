"""The node's own session on the management realm, kept joined for as long as the node runs.

The node needs one session to call every worker's API and to follow every lifecycle event
(a prefix subscription on ``crossbar.worker.``). The router that carries the realm may not
listen yet (the node starts it in parallel with everything else) or may be restarted
later, so the link reconnects with a short backoff and can be *kicked* to try at once when
the node learns that the router is listening. A realm that refuses our credentials is not
retried: that is a configuration error to report.

This module imports autobahn (a few hundred milliseconds), so the node imports it only
after its child processes are already starting.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import txaio
from autobahn.wamp.exception import ApplicationError
from twisted.internet.defer import Deferred

from container.errors import AlreadyRunning, ShuttingDown, StartCancelled
from container.events import WORKER_TOPIC_PREFIX
from container.management import REFUSALS, Credentials, parse_management_url
from container.management.client import ManagementClient, connect_management
from container.node.plan import Principal
from container.policy import Backoff

txaio.use_twisted()

#: Reconnect quickly: the router is local (or the operator is waiting on it).
LINK_BACKOFF = Backoff(first=0.0, initial=0.05, max=1.0, multiplier=1.6, jitter=0.1)


#: Errors meaning "the callee went away meanwhile", not "the call was wrong".
GONE = frozenset({"wamp.error.no_such_procedure", "wamp.error.canceled", "wamp.error.timeout",
                  "wamp.close.transport_lost"})


class NotJoined(Exception):
    """The node is not on the management realm right now (the router is down)."""


def start_outcome(error: BaseException) -> str:
    """What a failed ``start_component`` of a configured component means to the node.

    ``started``: it already runs (resumed from a checkpoint, or an earlier call got through);
    ``dropped``: somebody stopped it or the worker is shutting down, so it is no longer ours
    to start; ``retry``: the worker or the router went away, try again once it is back;
    ``fatal``: the configuration cannot be brought up (bad class, onJoin raised, ...).
    """
    if not isinstance(error, ApplicationError):
        return "retry"
    if error.error == AlreadyRunning.uri:
        return "started"
    if error.error in (StartCancelled.uri, ShuttingDown.uri):
        return "dropped"
    if error.error in GONE:
        return "retry"
    return "fatal"


def error_text(error: BaseException) -> str:
    """One line for a person: the URI and the message of an API error."""
    if isinstance(error, ApplicationError):
        message = error.args[0] if error.args else ""
        return f"{error.error}: {message}" if message else error.error
    return str(error) or type(error).__name__


class ManagementLink:
    """A management session that rejoins after losing the router, following every event."""

    def __init__(
        self,
        reactor: Any,
        url: str,
        realm: str,
        principal: Principal | None,
        on_event: Callable[[str, Any], None],
        on_joined: Callable[[], None],
        on_refused: Callable[[str], None],
        backoff: Backoff = LINK_BACKOFF,
        join_timeout: float = 10.0,
    ) -> None:
        self.reactor = reactor
        self.address = parse_management_url(url)
        self.realm = realm
        self.credentials = (
            Credentials(principal.authid, principal.method, principal.secret)
            if principal is not None else None
        )
        self.session: ManagementClient | None = None
        self._on_event = on_event
        self._on_joined = on_joined
        self._on_refused = on_refused
        self._backoff = backoff
        self._join_timeout = join_timeout
        self._attempt = 0
        self._timer: Any = None
        self._connecting = False
        self._closing = False

    # -- joining ------------------------------------------------------------------------------

    def start(self) -> None:
        """Join now, and keep joined until :meth:`close`."""
        self.kick()

    def kick(self) -> None:
        """Try at once (the router just said it listens), unless joined or already trying."""
        if self._closing or self.session is not None or self._connecting:
            return
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        Deferred.fromCoroutine(self._join())

    def _retry_later(self) -> None:
        if self._closing or (self._timer is not None and self._timer.active()):
            return
        self._attempt += 1
        self._timer = self.reactor.callLater(self._backoff.delay(self._attempt), self.kick)

    async def _join(self) -> None:
        self._connecting = True
        try:
            session = await connect_management(
                self.reactor, self.address, self.realm, self.credentials, self._join_timeout
            )
            await session.follow(WORKER_TOPIC_PREFIX, self._on_event)
        except Exception as error:  # CannotConnect, a refusal, a lost connection
            self._failed(error)
            return
        finally:
            self._connecting = False
        if self._closing:
            await session.close(2.0)
            return
        self._attempt = 0
        self.session = session
        session.closed.addBoth(self._lost, session)
        self._on_joined()

    def _failed(self, error: BaseException) -> None:
        text = str(error)
        if any(reason in text for reason in REFUSALS):
            self._on_refused(text)
        else:
            self._retry_later()

    def _lost(self, result: Any, session: ManagementClient) -> None:
        if self.session is session:
            self.session = None
            self._retry_later()

    # -- using it -----------------------------------------------------------------------------

    async def call(self, prefix: str, procedure: str, *args: Any, **kwargs: Any) -> Any:
        session = self.session
        if session is None or not session.is_attached():
            raise NotJoined("not joined to the management realm")
        return await session.worker_call(prefix, procedure, *args, **kwargs)

    async def close(self) -> None:
        self._closing = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        session, self.session = self.session, None
        if session is not None:
            await session.close(2.0)

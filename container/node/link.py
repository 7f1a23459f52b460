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

from container.errors import AlreadyRunning, NotJoined, ShuttingDown, StartCancelled
from container.management import WORKER_PREFIX_ROOT, Credentials, parse_management_url
from container.management.client import Join, ManagementClient, ReconnectingSession, joiner
from container.node.realm import Principal
from container.policy import Backoff

txaio.use_twisted()

#: Reconnect quickly: the router is local (or the operator is waiting on it).
LINK_BACKOFF = Backoff(first=0.0, initial=0.05, max=1.0, multiplier=1.6, jitter=0.1)

#: How long the node waits for its session to leave when it stops.
CLOSE_TIMEOUT = 2.0

#: Errors meaning "the callee went away meanwhile", not "the call was wrong".
GONE = frozenset({"wamp.error.no_such_procedure", "wamp.error.canceled", "wamp.error.timeout",
                  "wamp.close.transport_lost"})


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
        return f"{error.error}: {message}" if message else str(error.error)
    return str(error) or type(error).__name__


class ManagementLink:
    """A management session that rejoins after losing the router, following every event.

    ``join`` makes one join attempt (by default :func:`~container.management.client.joiner`
    on ``url``): tests give a fake whose Deferreds they fire.
    """

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
        join: Join | None = None,
    ) -> None:
        if join is None:
            credentials = (
                Credentials(principal.authid, principal.method, principal.secret)
                if principal is not None else None
            )
            join = joiner(reactor, parse_management_url(url), realm, credentials, join_timeout)
        self._on_event = on_event
        self._kept = ReconnectingSession(
            reactor, join, backoff.delay,
            prepare=self._follow,
            on_joined=lambda session: on_joined(),
            on_given_up=lambda error: on_refused(str(error)),
            close_timeout=CLOSE_TIMEOUT,
        )

    @property
    def session(self) -> ManagementClient | None:
        """The joined session, or None while the router is away."""
        return self._kept.session

    def start(self) -> None:
        """Join now, and keep joined until :meth:`close`."""
        self._kept.start()

    def kick(self) -> None:
        """Try at once (the router just said it listens), unless joined or already trying."""
        self._kept.kick()

    async def call(self, prefix: str, procedure: str, *args: Any, **kwargs: Any) -> Any:
        session = self.session
        if session is None or not session.is_attached():
            raise NotJoined("not joined to the management realm")
        return await session.worker_call(prefix, procedure, *args, **kwargs)

    async def close(self) -> None:
        """Stop rejoining and leave; returns once the session is gone."""
        await self._kept.stop()

    async def _follow(self, session: ManagementClient) -> None:
        """Part of joining: a session that misses events is of no use to the node."""
        await session.follow(WORKER_PREFIX_ROOT, self._on_event)

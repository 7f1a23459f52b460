"""``container ctl watch``: one line per lifecycle event until Ctrl-C or SIGTERM.

When the management connection is lost (the router restarted, say), watch joins again with
the same address and credentials, backing off (0.5 s, 1 s, 2 s, then every 4 s), for at
most ``--reconnect-for`` seconds, and goes on watching; events published while it was away
are not shown. The session is kept by :class:`~container.management.client.
ReconnectingSession`; this module decides what the person watching is told.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred

from container.ctl.output import Output, describe_error, format_event
from container.ctl.target import Target, join_realm
from container.deferreds import share
from container.errors import ContainerError, CtlError, ExitCode
from container.management.client import Join, ManagementClient, ReconnectingSession
from container.policy import Backoff

# the worker's own backoff shape: 0.5 s, 1 s, 2 s, then every 4 s until the deadline
RECONNECT_BACKOFF = Backoff(first=0.5, initial=1.0, max=4.0, jitter=0.0)

LOST = "lost the connection to the management realm"


async def watch(
    reactor: Any, target: Target, out: Output, until: Deferred[Any],
    reconnect_for: float = 60.0, now: Callable[[], datetime] = datetime.now,
    join: Join | None = None,
) -> int:
    """``watch``: one line per lifecycle event under the target's prefixes until ``until``
    fires (Ctrl-C / SIGTERM: exit 0). Exits 1 when the first join fails, or when the
    connection is lost and not back within ``reconnect_for`` seconds (0: at once)."""
    if join is None:
        join = lambda: Deferred.fromCoroutine(join_realm(reactor, target))  # noqa: E731
    watching = _Watch(reactor, join, target.watch_prefixes(), out, reconnect_for, now)
    watching.start()
    try:
        which, code = await defer.race([share(until), share(watching.ended)])
        return ExitCode.OK if which == 0 else int(code)
    finally:
        await watching.stop()


class _Watch:
    """The watch's session and what it says about it; ``ended`` fires with the exit code
    once the watch cannot go on."""

    def __init__(
        self, clock: Any, join: Join, prefixes: Sequence[str], out: Output,
        reconnect_for: float, now: Callable[[], datetime],
    ) -> None:
        self.ended: Deferred[int] = Deferred()
        self._clock = clock
        self._prefixes = prefixes
        self._where = ", ".join(f"{prefix}*" for prefix in prefixes)
        self._out = out
        self._reconnect_for = reconnect_for
        self._now = now
        self._joined_once = False
        self._deadline: Any = None  # the clock's IDelayedCall
        self._kept = ReconnectingSession(
            clock, join, RECONNECT_BACKOFF.delay, prepare=self._follow,
            on_joined=self._joined, on_lost=self._lost, final=self._final,
            on_given_up=lambda error: self._end(describe_error(error)),
        )

    def start(self) -> None:
        self._kept.start()

    async def stop(self) -> None:
        self._cancel_deadline()
        await self._kept.stop()

    async def _follow(self, session: ManagementClient) -> None:
        for prefix in self._prefixes:
            await session.follow(prefix, self._print)

    def _print(self, topic: str, payload: Any) -> None:
        moment = self._now().astimezone()
        if self._out.as_json:
            self._out.json({"time": moment.isoformat(timespec="milliseconds"), "topic": topic,
                            "event": topic.rsplit(".", 1)[-1], "payload": payload})
        else:
            text, style = format_event(topic, payload)
            self._out.line(f"{moment:%H:%M:%S} {text}", style)

    def _joined(self, session: ManagementClient) -> None:
        self._cancel_deadline()
        self._out.note(f"reconnected: watching {self._where} again (events while away were "
                       "missed)" if self._joined_once else
                       f"watching {self._where} (Ctrl-C to stop)")
        self._joined_once = True

    def _lost(self, session: ManagementClient) -> None:
        if self._reconnect_for <= 0:
            self._end(LOST)
            return
        self._out.note(f"{LOST}; reconnecting for up to {self._reconnect_for:g} s")
        self._deadline = self._clock.callLater(
            self._reconnect_for, self._end,
            f"{LOST} and could not join it again within {self._reconnect_for:g} s")

    def _final(self, error: BaseException) -> bool:
        """Before the first join every failure ends the watch (the address or credentials
        are wrong); after it, only one that is not about reaching the realm."""
        return not self._joined_once or not isinstance(error, ContainerError | CtlError)

    def _end(self, message: str) -> None:
        self._cancel_deadline()
        if not self.ended.called:
            self._out.error(message)
            self.ended.callback(ExitCode.FAILED)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

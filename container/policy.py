"""Restart and shutdown policies, restart backoff and restart intensity: plain values, no I/O.

The vocabulary is Erlang/OTP's: ``restart-always`` is *permanent*, ``restart-failed`` is
*transient*, ``restart-never`` is *temporary*; a restart limit is OTP's restart intensity
(at most N restarts in T seconds). Only exits the container did not cause count: a stop
somebody asked for is never restarted and never triggers an automatic shutdown.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class StopReason(StrEnum):
    """Why a component's session ended."""

    REQUESTED = "requested"  # stop_component, restart_component or shutdown asked for it
    LEFT = "left"  # the component left its realm cleanly by itself
    FAILED = "failed"  # it crashed: onJoin raised, left with an error, the router killed it
    LOST = "lost"  # its transport went away, or the router could not be reached

    @property
    def is_failure(self) -> bool:
        return self in (StopReason.FAILED, StopReason.LOST)


class RestartPolicy(StrEnum):
    """When a component that ended by itself is started again."""

    NEVER = "restart-never"
    ALWAYS = "restart-always"
    FAILED = "restart-failed"

    @classmethod
    def parse(cls, value: str) -> RestartPolicy:
        """Accept Crossbar.io's spelling ``restart-on-failed`` as ``restart-failed``."""
        return cls.FAILED if value == "restart-on-failed" else cls(value)

    def should_restart(self, reason: StopReason) -> bool:
        if reason is StopReason.REQUESTED:
            return False
        if self is RestartPolicy.ALWAYS:
            return True
        return self is RestartPolicy.FAILED and reason.is_failure


class ShutdownPolicy(StrEnum):
    """When the worker shuts itself down."""

    MANUAL = "shutdown-manual"
    ON_LAST_STOPPED = "shutdown-on-last-component-stopped"
    ON_ANY_STOPPED = "shutdown-on-any-component-stopped"
    ON_ANY_FAILED = "shutdown-on-any-component-failed"

    def should_shutdown(self, reason: StopReason, remaining: int) -> bool:
        """Decide after a component ended for good (it will not be restarted).

        ``remaining`` counts the components still starting, running or waiting to restart.
        Requested stops never trigger a shutdown: the operator caused them.
        """
        if reason is StopReason.REQUESTED or self is ShutdownPolicy.MANUAL:
            return False
        if self is ShutdownPolicy.ON_ANY_FAILED:
            return reason.is_failure
        if self is ShutdownPolicy.ON_ANY_STOPPED:
            return True
        return remaining == 0


@dataclass(frozen=True)
class Backoff:
    """Delay before restart attempt ``n`` (1-based) after a component ended.

    The first attempt waits ``first`` seconds (0 by default, so a single crash costs no
    latency); attempt n >= 2 waits ``initial * multiplier ** (n - 2)``, capped at ``max``,
    spread by +/- ``jitter`` (a fraction) so many components do not reconnect in step. The
    attempt count resets once a component has run for ``stable_after`` seconds.
    """

    first: float = 0.0
    initial: float = 0.1
    max: float = 5.0
    multiplier: float = 2.0
    jitter: float = 0.1
    stable_after: float = 10.0

    def delay(self, attempt: int, uniform: Callable[[], float] = random.random) -> float:
        if attempt <= 1:
            base = self.first
        else:
            base = min(self.max, self.initial * self.multiplier ** min(attempt - 2, 64))
        spread = base * self.jitter * (2.0 * uniform() - 1.0)
        return max(0.0, base + spread)

    def as_json(self) -> dict[str, float]:
        return {
            "first": self.first,
            "initial": self.initial,
            "max": self.max,
            "multiplier": self.multiplier,
            "jitter": self.jitter,
            "stable_after": self.stable_after,
        }


@dataclass(frozen=True)
class RestartLimit:
    """At most ``max_restarts`` restarts within any ``period`` seconds (OTP intensity)."""

    max_restarts: int
    period: float

    def as_json(self) -> dict[str, Any]:
        return {"max_restarts": self.max_restarts, "period": self.period}


@dataclass(slots=True)
class RestartWindow:
    """The restart times of one component inside the sliding window of its limit.

    The deque is made at the first restart: every hosted component has a window, most
    never restart, and even an empty deque is large next to a component's own record
    (docs/benchmarks.md).
    """

    limit: RestartLimit | None
    times: deque[float] | None = None

    def allow(self, now: float) -> bool:
        """Record a restart at ``now`` if the limit allows it; False means give up."""
        if self.limit is None:
            return True
        if self.times is None:
            self.times = deque()
        while self.times and now - self.times[0] >= self.limit.period:
            self.times.popleft()
        if len(self.times) >= self.limit.max_restarts:
            return False
        self.times.append(now)
        return True

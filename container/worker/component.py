"""A hosted component: its record, its state machine, and its tagged logger.

One object per component holds everything the container knows about it (spec, state,
timestamps, restart counters, last error, why it stopped); :meth:`HostedComponent.set_state`
is the only place the state changes, and it refuses edges the machine does not have.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import txaio
from twisted.internet.defer import Deferred

from container.config import ComponentSpec
from container.policy import RestartWindow, StopReason
from container.worker.session import SessionRun


class ComponentState(StrEnum):
    STARTING = "starting"  # connecting and joining; not yet ready
    RUNNING = "running"  # joined; onJoin finished, it said it is ready, or the grace passed
    STOPPING = "stopping"  # a requested stop is under way
    RESTARTING = "restarting"  # ended by itself; waiting out the backoff delay
    STOPPED = "stopped"  # ended cleanly and will not be restarted
    FAILED = "failed"  # ended by a failure (or was given up) and will not be restarted


_EDGES: dict[ComponentState, frozenset[ComponentState]] = {
    ComponentState.STARTING: frozenset(
        {ComponentState.RUNNING, ComponentState.STOPPING, ComponentState.RESTARTING,
         ComponentState.STOPPED, ComponentState.FAILED}
    ),
    ComponentState.RUNNING: frozenset(
        {ComponentState.STOPPING, ComponentState.RESTARTING, ComponentState.STOPPED,
         ComponentState.FAILED}
    ),
    ComponentState.STOPPING: frozenset({ComponentState.STOPPED, ComponentState.FAILED}),
    ComponentState.RESTARTING: frozenset(
        {ComponentState.STARTING, ComponentState.STOPPING, ComponentState.FAILED}
    ),
    ComponentState.STOPPED: frozenset({ComponentState.STARTING, ComponentState.STOPPING}),
    ComponentState.FAILED: frozenset({ComponentState.STARTING, ComponentState.STOPPING}),
}

ACTIVE_STATES = frozenset(
    {ComponentState.STARTING, ComponentState.RUNNING, ComponentState.RESTARTING}
)


# the states in which the component has a session of its own
_SESSION_STATES = frozenset(
    {ComponentState.STARTING, ComponentState.RUNNING, ComponentState.STOPPING}
)

_COMPONENT_LOG = txaio.make_logger()


class TaggedLogger:
    """A txaio logger that starts every line with ``[component ID]``."""

    __slots__ = ("_log", "_tag")

    def __init__(self, tag: str) -> None:
        self._log = _COMPONENT_LOG  # one for all: a txaio logger is ~1.5 KiB of partials
        self._tag = tag

    def _emit(self, level: str, text: str, **fields: Any) -> None:
        getattr(self._log, level)("[component {component_id}] " + text,
                                  component_id=self._tag, **fields)

    def critical(self, text: str, **fields: Any) -> None:
        self._emit("critical", text, **fields)

    def error(self, text: str, **fields: Any) -> None:
        self._emit("error", text, **fields)

    def warn(self, text: str, **fields: Any) -> None:
        self._emit("warn", text, **fields)

    def info(self, text: str, **fields: Any) -> None:
        self._emit("info", text, **fields)

    def debug(self, text: str, **fields: Any) -> None:
        self._emit("debug", text, **fields)

    def failure(self, text: str, failure: Any = None, **fields: Any) -> None:
        self._log.failure("[component {component_id}] " + text, failure=failure,
                          component_id=self._tag, **fields)


class IllegalTransition(RuntimeError):
    """A programming error: the state machine has no such edge."""


StateListener = Callable[["HostedComponent", ComponentState, ComponentState], None]


# the keys of an ``auth`` method whose values are secrets (ticket, WAMP-CRA, SCRAM, cryptosign)
SECRET_KEYS = frozenset({"ticket", "secret", "password", "privkey", "private_key"})
REDACTED = "***"


def shown_config(raw: Any) -> Any:
    """The configuration as the API and the events show it: every ``auth`` secret replaced
    by ``***``. The component itself keeps using the real one."""
    auth = raw.get("auth") if isinstance(raw, dict) else None
    if not isinstance(auth, dict):
        return raw
    shown = {
        method: {key: REDACTED if key in SECRET_KEYS else value
                 for key, value in settings.items()} if isinstance(settings, dict) else settings
        for method, settings in auth.items()
    }
    return {**raw, "auth": shown}


def _utc_text(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


class HostedComponent:
    """Everything the container knows about one component."""

    # one record per hosted component, thousands per worker: no per-instance dict
    __slots__ = (
        "_now",
        "_on_transition",
        "attempt",
        "gave_up",
        "id",
        "last_error",
        "log",
        "next_restart_at",
        "pending_restart",
        "ready_by",
        "realm",
        "restart_delay",
        "restarts",
        "run",
        "running_since",
        "session_id",
        "spec",
        "started_wall",
        "state",
        "stop_caller",
        "stop_message",
        "stop_reason",
        "stopping",
        "window",
    )

    def __init__(
        self,
        component_id: str,
        spec: ComponentSpec,
        window: RestartWindow,
        now: Callable[[], float],
        on_transition: StateListener,
    ) -> None:
        self.id = component_id
        self.spec = spec
        self.state = ComponentState.STARTING
        self.window = window
        self.log = TaggedLogger(component_id)
        self.run: SessionRun | None = None
        self.pending_restart: Any = None  # IDelayedCall of the next restart attempt
        self.next_restart_at: float | None = None
        self.restart_delay: float | None = None  # as scheduled, for the restart event
        self.started_wall: datetime | None = None
        self.running_since: float | None = None
        self.restarts = 0
        self.attempt = 0
        self.last_error: str | None = None
        self.stop_reason: StopReason | None = None
        self.session_id: int | None = None
        self.realm: str | None = None
        self.ready_by: str | None = None  # how the current session became ready
        self.gave_up = False
        self.stopping: Deferred[Any] | None = None  # the requested stop under way
        self.stop_caller: Any = None
        self.stop_message: str | None = None  # how the last session ended, in words
        self._now = now
        self._on_transition = on_transition

    def set_state(self, new_state: ComponentState) -> None:
        """The one place the state changes; tells the listener (which publishes events)."""
        old_state = self.state
        if new_state is old_state:
            return
        if new_state not in _EDGES[old_state]:
            raise IllegalTransition(f"component {self.id}: {old_state} -> {new_state}")
        self.state = new_state
        self.log.debug("{old} -> {new}", old=old_state.value, new=new_state.value)
        self._on_transition(self, old_state, new_state)

    def mark_running(self, session_id: int, realm: str, ready_by: str | None = None) -> None:
        self.session_id = session_id
        self.realm = realm
        self.ready_by = ready_by
        self.running_since = self._now()
        self.started_wall = datetime.now(UTC)
        self.set_state(ComponentState.RUNNING)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    def uptime(self) -> float:
        if self.running_since is None or self.state is not ComponentState.RUNNING:
            return 0.0
        return max(0.0, self._now() - self.running_since)

    def phase(self) -> str | None:
        """Where the current session is (connecting, joining, onjoin_running, joined), or
        None when there is none."""
        run = self.run
        if run is None or self.state not in _SESSION_STATES:
            return None
        return getattr(run, "phase", None)

    def next_restart_in(self) -> float | None:
        if self.next_restart_at is None:
            return None
        return max(0.0, self.next_restart_at - self._now())

    def record(self) -> dict[str, Any]:
        """The component as ``get_component`` returns it."""
        return {
            "id": self.id,
            "state": self.state.value,
            "config": shown_config(self.spec.raw),
            "started": _utc_text(self.started_wall),
            "uptime": self.uptime(),
            "restarts": self.restarts,
            "attempt": self.attempt,
            "last_error": self.last_error,
            "stop_reason": self.stop_reason.value if self.stop_reason else None,
            "next_restart_in": self.next_restart_in(),
            "session": self.session_id,
            "realm": self.realm,
            "phase": self.phase(),
            "ready_by": self.ready_by if self.state is ComponentState.RUNNING else None,
        }

    def started_info(self) -> dict[str, Any]:
        """What ``start_component`` returns once the component is ready."""
        return {
            "id": self.id,
            "config": shown_config(self.spec.raw),
            "started": _utc_text(self.started_wall),
            "session": self.session_id,
            "realm": self.realm,
            "state": self.state.value,
            "phase": self.phase(),
            "ready_by": self.ready_by,
        }

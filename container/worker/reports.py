"""What the outside sees of a component: its record, the start answer, its lifecycle events.

``get_component`` returns :func:`record`, ``start_component`` :func:`started_info`; the
lifecycle events are published from one listener (:class:`LifecycleEvents`), which hears
every state change of every record. Secrets of a configuration's ``auth`` never leave the
worker (:func:`shown_config`). The payloads are listed in ``docs/management-api.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from container.policy import StopReason
from container.worker.component import ACTIVE_STATES, ComponentState, HostedComponent

Emit = Callable[[str, dict[str, Any]], None]

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


def record(component: HostedComponent) -> dict[str, Any]:
    """The component as ``get_component`` returns it."""
    return {
        "id": component.id,
        "state": component.state.value,
        "config": shown_config(component.spec.raw),
        "started": _utc_text(component.started_wall),
        "uptime": component.uptime(),
        "restarts": component.restarts,
        "attempt": component.attempt,
        "last_error": component.last_error,
        "stop_reason": component.stop_reason.value if component.stop_reason else None,
        "next_restart_in": component.next_restart_in(),
        "session": component.session_id,
        "realm": component.realm,
        "phase": component.phase(),
        "ready_by": component.ready_by if component.state is ComponentState.RUNNING else None,
    }


def started_info(component: HostedComponent) -> dict[str, Any]:
    """What ``start_component`` returns once the component is ready (``on_component_start``
    says the same, and more)."""
    return {
        "id": component.id,
        "config": shown_config(component.spec.raw),
        "started": _utc_text(component.started_wall),
        "session": component.session_id,
        "realm": component.realm,
        "state": component.state.value,
        "phase": component.phase(),
        "ready_by": component.ready_by,
        "reloaded": list(component.reloaded),
    }


def start_event(component: HostedComponent) -> dict[str, Any]:
    return {**started_info(component), "restarts": component.restarts,
            "attempt": component.attempt}


def stop_event(component: HostedComponent, will_restart: bool) -> dict[str, Any]:
    reason = component.stop_reason or StopReason.REQUESTED
    return {
        "id": component.id,
        "reason": reason.value,
        "message": component.last_error if reason.is_failure else component.stop_message,
        "state": component.state.value,
        "will_restart": will_restart,
        "restart_in": component.next_restart_in() if will_restart else None,
        "attempt": component.attempt,
        "restarts": component.restarts,
        "gave_up": component.gave_up,
        "caller": component.stop_caller if reason is StopReason.REQUESTED else None,
    }


def restart_event(component: HostedComponent) -> dict[str, Any]:
    reason = component.stop_reason or StopReason.FAILED
    return {"id": component.id, "cause": reason.value, "attempt": component.attempt,
            "delay": component.restart_delay, "caller": None}


class LifecycleEvents:
    """The one listener of every component's transitions: publishes its lifecycle events,
    and says when the set of active components changed (the checkpoint follows it)."""

    def __init__(self, emit: Emit, on_change: Callable[[], None]) -> None:
        self._emit = emit
        self._on_change = on_change

    def transitioned(
        self, component: HostedComponent, old: ComponentState, new: ComponentState
    ) -> None:
        if new is ComponentState.RUNNING:
            self._emit("on_component_start", start_event(component))
        elif new is ComponentState.RESTARTING:
            self._emit("on_component_stop", stop_event(component, will_restart=True))
            self._emit("on_component_restart", restart_event(component))
        elif new in (ComponentState.STOPPED, ComponentState.FAILED):
            self._emit("on_component_stop", stop_event(component, will_restart=False))
        if (old in ACTIVE_STATES) != (new in ACTIVE_STATES):
            self._on_change()

    def restart_requested(self, component_id: str, cause: str, caller: Any) -> None:
        """A restart somebody asked for (or a reload caused): announced between its stop
        and its start."""
        self._emit("on_component_restart", {"id": component_id, "cause": cause, "attempt": 0,
                                            "delay": 0.0, "caller": caller})

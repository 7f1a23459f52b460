"""How a lifecycle event reads, for the node's output and for ``ctl watch`` alike.

A lifecycle event published by a worker on ``crossbar.worker.<ID>.<event>`` is described
as an action and its details, e.g. ``started`` / ``session 123456 on realm1`` or
``stopped`` / ``failed: boom; restart in 0.41 s``.
"""

from __future__ import annotations

import json
from typing import Any

from container.management import WORKER_PREFIX_ROOT as WORKER_TOPIC_PREFIX


def split_topic(topic: str) -> tuple[str, str] | None:
    """``crossbar.worker.w1.on_component_start`` -> ``("w1", "on_component_start")``.

    Worker ids cannot contain dots (they are part of URIs), so the event is after the last.
    """
    if not topic.startswith(WORKER_TOPIC_PREFIX):
        return None
    worker, _, event = topic[len(WORKER_TOPIC_PREFIX):].rpartition(".")
    return (worker, event) if worker and event else None


def _seconds(value: Any) -> str:
    return f"{value:.2f} s" if isinstance(value, int | float) else "?"


def describe_worker_event(event: str, data: dict[str, Any]) -> tuple[str, str]:
    """(what happened, details) for a worker's lifecycle event, in a few words."""
    if event == "on_component_start":
        details = f"session {data.get('session')} on {data.get('realm')}"
        if data.get("restarts"):
            details += f" (restart #{data['restarts']})"
        return "started", details
    if event == "on_component_stop":
        return "stopped", _stop_details(data)
    if event == "on_component_restart":
        return "restarting", (f"{data.get('cause')}, attempt {data.get('attempt')}, "
                              f"in {_seconds(data.get('delay'))}")
    if event == "on_worker_ready":
        again = " (reconnected)" if data.get("reconnected") else ""
        return "worker ready", f"pid {data.get('pid')}{again}"
    if event == "on_shutdown":
        stopped = ", ".join(data.get("stopped") or []) or "no components"
        return "worker shutdown", (f"exit {data.get('exit_code')}, {data.get('reason')}"
                                   f"{': ' + data['why'] if data.get('why') else ''}; "
                                   f"stopped {stopped}")
    return event, json.dumps(data, default=str)[:200]


def _stop_details(data: dict[str, Any]) -> str:
    text = str(data.get("reason"))
    if data.get("message"):
        text += f": {data['message']}"
    if data.get("will_restart"):
        text += f"; restart in {_seconds(data.get('restart_in'))}"
    elif data.get("gave_up"):
        text += "; gave up (restart limit reached)"
    return text

"""How a lifecycle event reads: one wording for the node's output and for ``ctl watch``.

A worker publishes its lifecycle events on ``crossbar.worker.<ID>.<event>``. Each is worded
once here, as what happened and its details (:class:`EventWords`); the two readers only lay
the words out differently::

    node:       12:00:04.002  w1  crashy  failed  boom; restarting in 0.4s, attempt 2
    ctl watch:  12:00:04 w1/crashy failed (boom; restarting in 0.4s, attempt 2)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from container.management import WORKER_PREFIX_ROOT

__all__ = [
    "EventWords",
    "describe_worker_event",
    "event_line",
    "format_duration",
    "split_topic",
    "worker_event_words",
]

#: An unknown event shows its payload, cut to this many characters.
PAYLOAD_SHOWN = 200


@dataclass(frozen=True)
class EventWords:
    """A lifecycle event in words.

    ``what`` says what happened (``started``, ``failed``, ``ready``); ``details`` the rest, or
    "". ``about_worker`` tells an event of the worker itself from one of a component;
    ``style`` is a rich style for terminals, which plain outputs ignore.
    """

    what: str
    details: str = ""
    style: str | None = None
    about_worker: bool = False


def split_topic(topic: str) -> tuple[str, str] | None:
    """``crossbar.worker.w1.on_component_start`` -> ``("w1", "on_component_start")``.

    Worker ids cannot contain dots (they are part of URIs), so the event is after the last.
    """
    if not topic.startswith(WORKER_PREFIX_ROOT):
        return None
    worker, _, event = topic[len(WORKER_PREFIX_ROOT):].rpartition(".")
    return (worker, event) if worker and event else None


def describe_worker_event(event: str, data: Mapping[str, Any]) -> tuple[str, str]:
    """(what happened, details): the node's columns, beside the worker and component."""
    words = worker_event_words(event, data)
    return (f"worker {words.what}" if words.about_worker else words.what), words.details


def event_line(worker: str, event: str, data: Mapping[str, Any]) -> tuple[str, str | None]:
    """One line naming its subject (``w1/alpha started (...)``), and its style."""
    words = worker_event_words(event, data)
    subject = f"worker {worker}" if words.about_worker else f"{worker}/{data.get('id')}"
    details = f" ({words.details})" if words.details else ""
    return f"{subject} {words.what}{details}", words.style


def worker_event_words(event: str, data: Mapping[str, Any]) -> EventWords:
    """The words for a worker's lifecycle event (``on_component_start``, ...)."""
    if event == "on_component_start":
        details = f"realm {data.get('realm')}, session {data.get('session')}"
        if data.get("restarts"):
            details += f", restart #{data['restarts']}"
        return EventWords("started", details, "green")
    if event == "on_component_stop":
        return _stop_words(data)
    if event == "on_component_restart":
        return _restart_words(data)
    if event == "on_worker_ready":
        components = _plural(len(data.get("components") or []), "component")
        details = f"pid {data.get('pid')}, {components}"
        if data.get("reconnected"):
            details += ", reconnected"
        return EventWords("ready", details, "cyan", about_worker=True)
    if event == "on_shutdown":
        return _shutdown_words(data)
    payload = json.dumps(dict(data), default=str, sort_keys=True)[:PAYLOAD_SHOWN]
    return EventWords(event, payload, about_worker=True)


def _stop_words(data: Mapping[str, Any]) -> EventWords:
    """A stop reads by its reason: a requested stop is no failure, a lost one a warning."""
    reason = data.get("reason")
    what, style, details = {
        "requested": ("stopped", None, ["requested"]),
        "left": ("stopped", None, ["left by itself"]),
        "lost": ("lost its connection", "yellow", []),
    }.get(str(reason), ("failed", "red", []))
    if data.get("message") and reason != "requested":
        details.append(_one_line(str(data["message"])))
    if data.get("will_restart"):
        details.append(f"restarting in {format_duration(data.get('restart_in'))}, "
                       f"attempt {data.get('attempt')}")
    elif data.get("gave_up"):
        details.append("gave up restarting it")
        style = "bold red"
    return EventWords(what, "; ".join(details), style)


def _restart_words(data: Mapping[str, Any]) -> EventWords:
    cause = data.get("cause")
    if cause == "requested":
        return EventWords("restarting", "requested", "yellow")
    after = "was lost" if cause == "lost" else cause
    return EventWords("restarting", f"after it {after}, attempt {data.get('attempt')}, in "
                                    f"{format_duration(data.get('delay'))}", "yellow")


def _shutdown_words(data: Mapping[str, Any]) -> EventWords:
    why = f": {data['why']}" if data.get("why") else ""
    stopped = _plural(len(data.get("stopped") or []), "component")
    return EventWords(
        "shut down",
        f"{data.get('reason')}{why}; exit code {data.get('exit_code')}, stopped {stopped}",
        "bold" if data.get("exit_code") == 0 else "bold red",
        about_worker=True,
    )


def format_duration(seconds: float | None) -> str:
    """A duration at a glance: ``0.4s``, ``1m01s``, ``3h02m``, ``1d01h``; None is ``-``."""
    if seconds is None:
        return "-"
    value = max(0.0, float(seconds))
    if value < 60:
        return f"{value:.1f}s"
    minutes, secs = divmod(int(value), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def _plural(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _one_line(text: str) -> str:
    return " ".join(text.split())

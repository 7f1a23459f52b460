"""How a session run ended, and how its failures are worded: pure functions of the facts.

A :class:`~container.worker.run.SessionRun` collects the facts as they happen (a stop was
requested, the component left by itself, the router closed the session, the join code
crashed); these functions turn them into the stop reason the restart policy acts on and
the error a caller of ``start_component`` reads. Kept apart so the run keeps only the
sequence of events, and so the wording lives in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import CloseDetails

from container.components import ComponentSpec
from container.errors import CannotConnect, ComponentStartFailed, ContainerError, StartCancelled
from container.policy import StopReason
from container.transports import TransportSpec

# a router that closes a session for these reasons is going away: the session was lost
SHUTDOWN_REASONS = ("wamp.close.system_shutdown",)

# where a session run is (``SessionRun.phase``, shown by get_component)
CONNECTING = "connecting"  # establishing the transport
JOINING = "joining"  # transport open, HELLO sent, not welcomed yet
ONJOIN_RUNNING = "onjoin_running"  # joined; its join handlers / onJoin still running
JOINED = "joined"  # joined; onJoin finished

# how a run became ready (``SessionRun.ready_by``)
READY_BY_ONJOIN = "onjoin"  # onJoin (and every join handler) finished
READY_BY_GRACE = "grace"  # onJoin still running after the ready grace period
READY_BY_CALL = "ready_call"  # the component called container.context.ready()
READY_BY_LEAVE = "left"  # it joined and left cleanly by itself before its join code finished

# a leave of the component's own: (reason URI, message)
OwnLeave = tuple[str, str]


@dataclass(frozen=True)
class SessionEnd:
    """How a session that was ready came to an end."""

    reason: StopReason
    message: str


def start_cancelled() -> StartCancelled:
    """The error of a start that a stop request cut short."""
    return StartCancelled("the start was cancelled by a stop request")


def describe_error(error: BaseException) -> str:
    """An exception in a caller's words: ``uri: message`` for a WAMP error (whose ``str`` is
    a repr of every field), ``Type: message`` for any other."""
    if isinstance(error, ApplicationError):
        text = " ".join(str(arg) for arg in error.args)
        return f"{error.error}: {text}" if text else str(error.error)
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def describe_exit(error: SystemExit) -> str:
    return f"SystemExit({error.code!r})" if error.code is not None else "SystemExit"


def leave_text(own_leave: OwnLeave | None, close: CloseDetails | None) -> str:
    """The reason and message of the leave: the component's own, else the router's."""
    reason: str | None
    if own_leave is not None:
        reason, message = own_leave
    elif close is not None:
        reason, message = close.reason, close.message or ""
    else:
        return "session closed"
    return f"{reason} {message}".strip()


def left_before_ready(
    stop_requested: bool, own_leave: OwnLeave | None, close: CloseDetails | None
) -> ContainerError:
    """The start's error when the session ended before it was ready."""
    if stop_requested:
        return start_cancelled()
    return ComponentStartFailed(
        f"component left before it was ready: {leave_text(own_leave, close)}", cause="left"
    )


def handshake_refused(transport: TransportSpec, why: str) -> CannotConnect:
    """The router closed the connection during the opening handshake (WebSocket/RawSocket):
    autobahn tells the session nothing, but it is a connect that failed."""
    return CannotConnect(
        f"cannot connect to {transport.describe()}: the router closed the connection during "
        f"the opening handshake{': ' + why if why else ''}",
        **transport.address(),
    )


def session_end(
    stop_requested: bool, crash: str | None, own_leave: OwnLeave | None,
    close: CloseDetails | None,
) -> SessionEnd:
    """Why a session that was ready ended: the stop reason the restart policy acts on."""
    if stop_requested:
        return SessionEnd(StopReason.REQUESTED, "stop requested")
    if crash is not None:
        return SessionEnd(StopReason.FAILED, crash)
    if own_leave is not None:
        reason, message = own_leave
        clean = reason.startswith("wamp.close.")
        text = f"component left: {reason} {message}".strip()
        return SessionEnd(StopReason.LEFT if clean else StopReason.FAILED, text)
    if close is not None and close.reason != CloseDetails.REASON_TRANSPORT_LOST:
        text = f"router closed the session: {close.reason} {close.message or ''}"
        lost = close.reason in SHUTDOWN_REASONS
        return SessionEnd(StopReason.LOST if lost else StopReason.FAILED, text.strip())
    return SessionEnd(StopReason.LOST, "transport to the router was lost")


def whereabouts(phase: str | None, spec: ComponentSpec) -> str:
    """Where a start that is taking too long is, truthfully."""
    where = spec.transport.describe()
    if phase == ONJOIN_RUNNING:
        return (f"joined realm '{spec.realm}' over {where}; its onJoin is still running and "
                "it did not say it is ready")
    if phase == JOINING:
        return f"joining realm '{spec.realm}' over {where}"
    return f"connecting to {where}"

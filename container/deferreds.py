"""Small helpers for Deferreds: shared outcomes, bounded waits, and background work that
must end in the log. The only place for such helpers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure


def share(deferred: Deferred[Any]) -> Deferred[Any]:
    """A new Deferred with the outcome of ``deferred``, which stays usable for other waiters.

    Awaiting a Deferred consumes its result; a stop or shutdown that several callers wait
    for hands each of them a copy instead. Cancelling a copy (a lost race, a timeout)
    leaves ``deferred`` and the other copies be.
    """
    copy: Deferred[Any] = Deferred()

    def relay(outcome: Any) -> Any:
        if copy.called:
            return None if isinstance(outcome, Failure) else outcome
        if isinstance(outcome, Failure):
            copy.errback(outcome)
            return None
        copy.callback(outcome)
        return outcome

    deferred.addBoth(relay)
    return copy


def wait_within(
    deferred: Deferred[Any], timeout: float, clock: Any, expired: Callable[[], None]
) -> Deferred[None]:
    """Fires (with None) once ``deferred`` has, or after ``timeout`` seconds on ``clock``
    at the latest, calling ``expired`` then; ``deferred`` is left to run.

    For a wait that must not hang: a stop, a shutdown. The outcome of ``deferred`` passes on
    unchanged, so whoever made it still handles its failure.
    """
    done: Deferred[None] = Deferred()

    def finished(outcome: Any) -> Any:
        if timer.active():
            timer.cancel()
        if not done.called:
            done.callback(None)
        return outcome

    def timed_out() -> None:
        if not done.called:
            expired()
            done.callback(None)

    timer = clock.callLater(timeout, timed_out)
    deferred.addBoth(finished)
    return done


def log_failure(deferred: Deferred[Any], log: Any, doing: str, **context: Any) -> Deferred[Any]:
    """Make the failure of work that nobody awaits end in the log, saying what failed.

    ``doing`` says what the work was doing (it may name ``context`` fields: which worker,
    which component); the failure is logged with its traceback. Without this, such an error
    ends as "Unhandled error in Deferred" on stderr when it is collected, or nowhere.
    """

    def logged(failure: Failure) -> None:
        log.failure(doing + " failed: {error}", failure=failure, error=failure.value, **context)

    return deferred.addErrback(logged)

"""Small helpers for Deferreds shared by several waiters."""

from __future__ import annotations

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

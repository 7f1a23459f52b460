"""The node's management link on a fake clock, with join attempts the test answers.

Each attempt of the fake connector is a Deferred the test fires with a fake session (the
join succeeded) or a failure (refused, unreachable); the test ends a session by firing its
``closed``. Every test ends by checking that no timer is left behind.
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher

from container.errors import CannotConnect, NotJoined
from container.node.link import ManagementLink
from container.policy import Backoff

# no jitter: the test knows every delay (0.5 s, then 1 s, 2 s, 2 s, ...)
BACKOFF = Backoff(first=0.5, initial=1.0, max=2.0, jitter=0.0)
REFUSED = CannotConnect("the management realm 'crossbar' refused to let us join: "
                        "wamp.error.not_authorized")


class FakeSession:
    """A joined session: records what the link asks of it; ``closed`` is the test's."""

    def __init__(self) -> None:
        self.closed: Deferred[None] = Deferred()
        self.followed: list[str] = []
        self.on_event: Any = None
        self.calls: list[tuple[Any, ...]] = []
        self.close_timeouts: list[float] = []

    def follow(self, prefix: str, on_event: Any) -> Deferred[None]:
        self.followed.append(prefix)
        self.on_event = on_event
        return succeed(None)

    def is_attached(self) -> bool:
        return not self.closed.called

    def worker_call(self, prefix: str, procedure: str, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((prefix, procedure, args, kwargs))
        return succeed({"ok": True})

    async def close(self, timeout: float = 5.0) -> None:
        self.close_timeouts.append(timeout)
        self.lose()

    def abort(self) -> None:
        self.lose()

    def lose(self) -> None:
        if not self.closed.called:
            self.closed.callback(None)


class FakeConnector:
    """``join()`` for the link: one Deferred per attempt, for the test to fire."""

    def __init__(self) -> None:
        self.attempts: list[Deferred[Any]] = []
        self.cancelled = 0

    def __call__(self) -> Deferred[Any]:
        def cancelled(_: Deferred[Any]) -> None:
            self.cancelled += 1

        attempt: Deferred[Any] = Deferred(cancelled)
        self.attempts.append(attempt)
        return attempt

    def join(self) -> FakeSession:
        """The latest attempt joins."""
        session = FakeSession()
        self.attempts[-1].callback(session)
        return session

    def fail(self, error: Exception) -> None:
        self.attempts[-1].errback(error)


class Harness:
    def __init__(self) -> None:
        self.clock = Clock()
        self.connector = FakeConnector()
        self.events: list[tuple[str, Any]] = []
        self.joined = 0
        self.refused: list[str] = []
        self.link = ManagementLink(
            self.clock, "rs://127.0.0.1:1", "crossbar", None,
            on_event=lambda topic, payload: self.events.append((topic, payload)),
            on_joined=lambda: self.count_join(), on_refused=self.refused.append,
            backoff=BACKOFF, join=self.connector,
        )

    def count_join(self) -> None:
        self.joined += 1

    def close(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self.link.close())


@pytest.fixture
def h() -> Harness:
    return Harness()


def test_a_joined_link_follows_every_worker_and_calls_through_its_session(h):
    h.link.start()
    assert len(h.connector.attempts) == 1  # at once, not after a delay
    session = h.connector.join()
    assert h.link.session is session
    assert session.followed == ["crossbar.worker."]
    assert h.joined == 1
    session.on_event("crossbar.worker.w1.on_worker_ready", {"pid": 1})
    assert h.events == [("crossbar.worker.w1.on_worker_ready", {"pid": 1})]
    answer = Deferred.fromCoroutine(h.link.call("crossbar.worker.w1", "get_status"))
    assert answer.result == {"ok": True}
    assert session.calls == [("crossbar.worker.w1", "get_status", (), {})]

    closed = h.close()
    assert closed.called and session.close_timeouts == [2.0]
    assert h.link.session is None
    assert h.clock.getDelayedCalls() == []


def test_a_refused_join_is_reported_once_and_never_retried(h):
    h.link.start()
    h.connector.fail(REFUSED)
    assert h.refused == [str(REFUSED)]
    assert h.clock.getDelayedCalls() == []  # no retry is waiting
    h.clock.advance(60)
    assert len(h.connector.attempts) == 1
    assert h.close().called
    assert h.joined == 0
    assert h.clock.getDelayedCalls() == []


def test_a_lost_session_is_joined_again_after_the_backoff(h):
    h.link.start()
    first = h.connector.join()
    first.lose()
    assert h.link.session is None
    assert h.refused == []
    h.clock.advance(0.4)
    assert len(h.connector.attempts) == 1  # the first delay is 0.5 s
    h.clock.advance(0.1)
    assert len(h.connector.attempts) == 2
    h.connector.fail(CannotConnect("connection refused"))  # the router is not back yet
    h.clock.advance(0.9)
    assert len(h.connector.attempts) == 2  # then 1 s
    h.clock.advance(0.1)
    assert len(h.connector.attempts) == 3
    second = h.connector.join()
    assert h.link.session is second
    assert second.followed == ["crossbar.worker."]
    assert h.joined == 2

    # joined again: the count starts over (0.5 s after the next loss)
    second.lose()
    h.clock.advance(0.5)
    assert len(h.connector.attempts) == 4
    h.connector.join()
    assert h.close().called
    assert h.clock.getDelayedCalls() == []


def test_a_kick_tries_at_once_instead_of_waiting(h):
    h.link.start()
    h.connector.fail(CannotConnect("connection refused"))
    assert len(h.clock.getDelayedCalls()) == 1
    h.link.kick()
    assert len(h.connector.attempts) == 2
    assert h.clock.getDelayedCalls() == []  # the retry timer went with it
    h.link.kick()  # already trying: nothing more
    assert len(h.connector.attempts) == 2
    h.connector.join()
    h.link.kick()  # joined: nothing
    assert len(h.connector.attempts) == 2
    assert h.close().called
    assert h.clock.getDelayedCalls() == []


def test_a_stop_while_waiting_to_rejoin_cancels_the_retry(h):
    h.link.start()
    h.connector.join().lose()
    assert len(h.clock.getDelayedCalls()) == 1
    closed = h.close()
    assert closed.called
    assert h.clock.getDelayedCalls() == []
    h.clock.advance(60)
    assert len(h.connector.attempts) == 1
    assert h.joined == 1


def test_a_stop_while_joining_cancels_the_join(h):
    h.link.start()
    closed = h.close()
    assert h.connector.cancelled == 1
    assert closed.called
    assert h.joined == 0 and h.refused == []
    assert h.clock.getDelayedCalls() == []


def test_a_stop_waits_until_the_session_is_gone(h):
    h.link.start()
    session = h.connector.join()
    leaving: Deferred[None] = Deferred()

    async def slow_close(timeout: float) -> None:
        await leaving  # leaving takes its time

    session.close = slow_close  # type: ignore[method-assign]
    closed = h.close()
    assert not closed.called
    session.lose()
    assert closed.called
    leaving.callback(None)
    assert h.clock.getDelayedCalls() == []


def test_calls_while_the_router_is_away_say_not_joined(h):
    h.link.start()
    answer = Deferred.fromCoroutine(h.link.call("crossbar.worker.w1", "get_status"))
    assert isinstance(answer.result.value, NotJoined)
    answer.addErrback(lambda failure: None)
    assert h.close().called
    assert h.clock.getDelayedCalls() == []


def test_a_failing_on_joined_callback_reaches_the_log_and_the_link_stays_joined():
    logged: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(logged.append)
    h = Harness()

    def broken() -> None:
        raise RuntimeError("boom")

    h.count_join = broken  # type: ignore[method-assign]
    try:
        h.link.start()
        session = h.connector.join()
    finally:
        globalLogPublisher.removeObserver(logged.append)
    failures = [event for event in logged if "log_failure" in event]
    assert [str(event["log_failure"].value) for event in failures] == ["boom"]
    assert "on_joined" in failures[0]["log_format"].format(**failures[0])
    assert h.link.session is session
    assert h.close().called
    assert h.clock.getDelayedCalls() == []

"""Test components that fail in the ways a real component can."""

from autobahn.twisted.wamp import ApplicationSession


class ConstructorRaises(ApplicationSession):
    def __init__(self, config=None):
        raise ValueError("bad constructor argument")


class JoinRaises(ApplicationSession):
    async def onJoin(self, details):
        raise RuntimeError("database unavailable")


class LeavesDuringJoin(ApplicationSession):
    def onJoin(self, details):
        self.leave("wamp.close.normal", "changed my mind")


class CrashesAfterJoin(ApplicationSession):
    """Joins fine, then drops its transport right away: a crash loop under restart."""

    def onJoin(self, details):
        from twisted.internet import reactor

        reactor.callLater(0, self._transport.transport.abortConnection)


class SlowJoin(ApplicationSession):
    """Never finishes onJoin (until the test stops it)."""

    def onJoin(self, details):
        from twisted.internet.defer import Deferred

        return Deferred()


class NeverJoins(ApplicationSession):
    """Connects and never asks to join its realm."""

    def onConnect(self):
        pass


class NotASession:
    pass


NOT_A_CLASS = 42


class LeaveRaises(ApplicationSession):
    """Its onLeave raises: the error must reach the log with the component's id."""

    def onLeave(self, details):
        raise RuntimeError("cleanup failed")
